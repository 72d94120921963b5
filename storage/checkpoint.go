package storage

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A checkpoint moves what the log holds into stash.db, so that the log can
// be removed. It does not replay the log: it writes, for every key changed
// in the segments it covers, the key's current state in memory (a stash,
// a tombstone, or a delete if the key is gone), read under the slot's
// lock. Memory may be
// ahead of those segments — changes logged in later segments, or not
// logged yet — and that is harmless: replay after a crash starts with the
// segments after the checkpoint and re-applies, in log order, everything
// newer, so each key ends at its last logged state (or at a newer,
// unacknowledged one if nothing later was logged).
//
// The checkpoint commits in one bbolt transaction the data, the sequence
// high-waters of the slots it touched and "walckpt", the highest segment
// it covers; only then are those segments removed. A crash in between
// leaves segments that Open recognises as covered and removes.

// metaWALCkpt is the meta key of the highest log segment moved into
// stash.db (uint64 BE).
var metaWALCkpt = []byte("walckpt")

// dirtySet is what the checkpoint that covers some log segments must write:
// the changes those segments hold, applied in this order — empty
// everything (flushAll), empty the slots in drops, then write the current
// state of every key in keys. keys is appended to as records are logged
// and may repeat a key (at most once per record); the checkpoint sorts it
// anyway, and drops the repeats then, which is much cheaper than a map.
type dirtySet struct {
	keys     []wkey
	drops    map[uint16]struct{}
	flushAll bool
	slots    [Slots / 64]uint64 // bit per slot whose sequence high-water may have risen
}

func newDirtySet() *dirtySet { return &dirtySet{} }

func (d *dirtySet) empty() bool {
	return len(d.keys) == 0 && len(d.drops) == 0 && !d.flushAll
}

func (d *dirtySet) markSlot(slot uint16) { d.slots[slot/64] |= 1 << (slot % 64) }

func (d *dirtySet) add(k wkey) {
	d.keys = append(d.keys, k)
	d.markSlot(k.slot)
}

// drop notes that slot was emptied. The slot's keys already in d stay:
// the checkpoint writes them as absent (or as rewritten since), which is
// harmless and cheaper than finding them.
func (d *dirtySet) drop(slot uint16) {
	if d.drops == nil {
		d.drops = make(map[uint16]struct{})
	}
	d.drops[slot] = struct{}{}
	d.markSlot(slot)
}

func (d *dirtySet) flush() {
	clear(d.keys)
	d.keys = d.keys[:0]
	d.drops = nil
	d.flushAll = true
	for i := range d.slots {
		d.slots[i] = ^uint64(0) // every slot's high-water is written
	}
}

// addBatch notes the changes of b, in the order a commit logs them.
func (d *dirtySet) addBatch(b *batch) {
	if b.flushAll {
		d.flush()
	}
	for slot := range b.drops {
		d.drop(slot)
	}
	for k := range b.writes {
		d.add(k)
	}
}

// mergeOlder folds into d the changes of old, which precede d's. Keys are
// always written from memory, and writing any key's current state is
// harmless, so the keys are a plain union; only the empties need care: a
// flush in d supersedes everything old emptied.
func (d *dirtySet) mergeOlder(old *dirtySet) {
	for i := range d.slots {
		d.slots[i] |= old.slots[i]
	}
	d.keys = append(d.keys, old.keys...)
	if d.flushAll {
		return
	}
	d.flushAll = old.flushAll
	for s := range old.drops {
		if d.drops == nil {
			d.drops = make(map[uint16]struct{})
		}
		d.drops[s] = struct{}{}
	}
}

// ckptJob is one checkpoint, handed by the committer to the checkpointer
// and back.
type ckptJob struct {
	d    *dirtySet
	segs []segment // the segments covered, removed once it commits
	upTo uint64    // highest segment covered
	err  error     // result
}

func (j *ckptJob) bytes() int64 {
	var n int64
	for _, s := range j.segs {
		n += s.size
	}
	return n
}

// memReader is the checkpointer's view of the in-memory index; *Store
// implements it.
type memReader interface {
	// readSlot calls fn, under slot's read lock, once for each of keys with
	// the entry held for it (nil when absent), and returns the slot's
	// sequence. fn must not block or keep e.
	readSlot(slot uint16, keys []string, fn func(i int, e *entry)) uint64
}

// checkpointer writes checkpoints into bbolt. Its fields are owned by the
// checkpointer goroutine.
type checkpointer struct {
	db      *bolt.DB
	mem     memReader
	walDir  string
	log     *slog.Logger
	hw      []uint64 // per slot: sequence high-water persisted in meta
	items   []citem
	keys    []string
	arena   []byte
	walSize *atomic.Int64 // bytes of log a crash would replay (batcher.walBytes)
	count   *atomic.Int64 // successful checkpoints
}

// run is the checkpointer goroutine: it takes jobs until jobs is closed
// and hands each back on results.
func (c *checkpointer) run(jobs <-chan *ckptJob, results chan<- *ckptJob, done chan<- struct{}) {
	defer close(done)
	for j := range jobs {
		j.err = c.checkpoint(j)
		results <- j
	}
}

// checkpoint writes j into bbolt and then removes its segments.
func (c *checkpointer) checkpoint(j *ckptJob) error {
	start := time.Now()
	keys := j.d.keys
	slices.SortFunc(keys, func(a, b wkey) int {
		if c := cmp.Compare(a.slot, b.slot); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	keys = slices.Compact(keys)
	j.d.keys = keys // a failed job is merged back into the next
	items := c.items[:0]
	for _, k := range keys {
		items = append(items, citem{k: k})
	}

	// Read the current state of each key, a slot at a time.
	type hwUpdate struct {
		slot uint16
		hw   uint64
	}
	var hws []hwUpdate
	seqOf := func(slot uint16, seq uint64) {
		if seq > c.hw[slot] {
			hws = append(hws, hwUpdate{slot, seq})
		}
	}
	size := 0
	marked := j.d.slots // slots whose sequence is still to be read
	for lo := 0; lo < len(items); {
		slot := items[lo].k.slot
		hi := lo
		keys := c.keys[:0]
		for ; hi < len(items) && items[hi].k.slot == slot; hi++ {
			keys = append(keys, items[hi].k.key)
		}
		group := items[lo:hi]
		seq := c.mem.readSlot(slot, keys, func(i int, e *entry) { group[i].w = wvalOf(e, 0) })
		clear(keys)
		c.keys = keys[:0]
		seqOf(slot, seq)
		marked[slot/64] &^= 1 << (slot % 64)
		for i := range group {
			size += recordKeyLen(group[i].k.key)
			if !group[i].w.del {
				size += recordValLen(group[i].w.val)
			}
		}
		lo = hi
	}
	for w, word := range marked {
		for ; word != 0; word &= word - 1 {
			slot := uint16(w*64 + bits.TrailingZeros64(word))
			seqOf(slot, c.mem.readSlot(slot, nil, nil))
		}
	}

	// One arena per checkpoint: bbolt keeps references to keys and values
	// until the transaction ends.
	arena := c.arena[:0]
	if cap(arena) < size {
		arena = make([]byte, 0, size)
	}
	for i := range items {
		it := &items[i]
		off := len(arena)
		arena = appendRecordKey(arena, it.k.slot, it.k.key)
		it.bk = arena[off:len(arena):len(arena)]
		if !it.w.del {
			off = len(arena)
			arena = appendRecordValue(arena, it.bk, it.w.kind, it.w.exp, Version{Epoch: it.w.epoch, Seq: it.w.seq}, it.w.val)
			it.bval = arena[off:len(arena):len(arena)]
		}
	}

	err := c.db.Update(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketData)
		if j.d.flushAll {
			if err := tx.DeleteBucket(bucketData); err != nil {
				return fmt.Errorf("flush all: %w", err)
			}
			var err error
			if data, err = tx.CreateBucket(bucketData); err != nil {
				return fmt.Errorf("flush all: %w", err)
			}
		}
		data.FillPercent = fillPercent
		for slot := range j.d.drops {
			if err := deleteSlot(data, slot); err != nil {
				return err
			}
		}
		for i := range items {
			it := &items[i]
			var err error
			if it.w.del {
				err = data.Delete(it.bk)
			} else {
				err = data.Put(it.bk, it.bval)
			}
			if err != nil {
				return fmt.Errorf("slot %d key %q: %w", it.k.slot, trunc(it.k.key), err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		buf := make([]byte, 8*(len(hws)+1))
		for i, u := range hws {
			v := buf[8*i : 8*i+8]
			binary.BigEndian.PutUint64(v, u.hw)
			if err := meta.Put(metaSlotKey(u.slot), v); err != nil {
				return fmt.Errorf("meta: %w", err)
			}
		}
		v := buf[8*len(hws):]
		binary.BigEndian.PutUint64(v, j.upTo)
		if err := meta.Put(metaWALCkpt, v); err != nil {
			return fmt.Errorf("meta: %w", err)
		}
		return nil
	})
	n := len(items)
	clear(items) // drop references to values
	c.items = items[:0]
	if cap(arena) <= 8<<20 {
		c.arena = arena[:0]
	} else {
		c.arena = nil
	}
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for _, u := range hws {
		c.hw[u.slot] = u.hw
	}

	// The segments are obsolete now: a crash would not replay them, and
	// one left behind is removed by the next Open.
	for _, s := range j.segs {
		c.walSize.Add(-s.size)
		path := filepath.Join(c.walDir, segmentName(s.seq))
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			c.log.Warn("storage: removing a checkpointed log segment", "path", path, "err", err)
		}
	}
	c.count.Add(1)
	c.log.Debug("storage: checkpoint", "keys", n, "drops", len(j.d.drops), "flush_all", j.d.flushAll,
		"segments", len(j.segs), "log_bytes", j.bytes(), "took", time.Since(start))
	return nil
}

// readSlot implements memReader.
func (s *Store) readSlot(slot uint16, keys []string, fn func(i int, e *entry)) uint64 {
	sl := &s.slots[slot]
	sl.mu.RLock()
	defer sl.mu.RUnlock()
	for i, k := range keys {
		var e *entry
		if j := sl.t.find(maphash.String(s.seed, k), k); j >= 0 {
			e = &sl.t.entries[j]
		}
		fn(i, e)
	}
	return sl.seq
}

package storage

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The batcher is the only writer of bbolt after Open. Writers enqueue
// changes while holding their slot's lock, so the order of enqueues for one
// key is the order in which they were applied in memory; pending writes are
// coalesced per key (the latest wins). One committer goroutine turns each
// batch into one bbolt transaction.
//
// A batch is committed:
//   - as soon as it is marked urgent (an FsyncAlways writer, Sync, DropSlot
//     or FlushAll waits for it) and the previous commit has finished — so
//     writers arriving during one fsync share the next;
//   - otherwise BatchInterval after its first write.

// wkey identifies a pending write.
type wkey struct {
	slot uint16
	key  string
}

// wval is a pending write: a put of the fields below, or a delete.
type wval struct {
	val   string
	exp   int64
	seq   uint64
	hw    uint64 // the slot's sequence high-water when the write was enqueued
	epoch uint32
	kind  Kind
	del   bool
}

// batch is the set of changes one commit carries. Fields other than done
// and err are guarded by batcher.mu while the batch is current and owned by
// the committer once it is taken.
type batch struct {
	writes   map[wkey]wval
	drops    map[uint16]struct{} // slots to empty before writes apply
	flushAll bool                // empty the stashes bucket before drops and writes
	first    time.Time           // when the batch became non-empty
	urgent   bool                // someone waits; commit without delay
	done     chan struct{}       // closed after the commit, successful or not
	err      error               // result of the commit; written before done is closed
}

func (b *batch) empty() bool { return len(b.writes) == 0 && len(b.drops) == 0 && !b.flushAll }

type batcher struct {
	db       *bolt.DB
	interval time.Duration
	log      *slog.Logger
	observe  func(time.Duration, int)

	mu       sync.Mutex // guards cur, inflight, spare and closed
	cur      *batch     // batch being filled
	inflight *batch     // batch being committed, or nil
	spare    map[wkey]wval
	closed   bool

	wake chan struct{} // capacity 1: a batch became non-empty or urgent
	stop chan struct{} // closed by close to stop the committer
	done chan struct{} // closed when the committer has exited
	err  error         // error of the final flush; written before done is closed

	commits, writes, failed atomic.Int64

	// Owned by the committer goroutine.
	hw    []uint64 // per slot: sequence high-water persisted in meta
	items []citem
	arena []byte
}

// citem is a pending write being committed, with its encoded key and value
// (slices of the commit's arena).
type citem struct {
	k    wkey
	w    wval
	bk   []byte
	bval []byte
}

func newBatcher(db *bolt.DB, cfg Config, hw []uint64) *batcher {
	bt := &batcher{
		db:       db,
		interval: cfg.BatchInterval,
		log:      cfg.Logger,
		observe:  cfg.ObserveFsync,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		hw:       hw,
	}
	bt.cur = bt.newBatch()
	go bt.run()
	return bt
}

// newBatch returns an empty batch. bt.mu is held or bt is not yet shared.
func (bt *batcher) newBatch() *batch {
	m := bt.spare
	bt.spare = nil
	if m == nil {
		m = make(map[wkey]wval)
	}
	return &batch{writes: m, done: make(chan struct{})}
}

func (bt *batcher) signal() {
	select {
	case bt.wake <- struct{}{}:
	default:
	}
}

// touch notes a change to cur and returns whether the committer must be
// woken. bt.mu is held.
func (bt *batcher) touch(urgent bool) bool {
	b := bt.cur
	wake := false
	if b.empty() {
		b.first = time.Now()
		wake = true
	}
	if urgent && !b.urgent {
		b.urgent = true
		wake = true
	}
	return wake
}

// enqueue adds a write to the current batch and returns that batch. The
// caller holds the lock of w's slot.
func (bt *batcher) enqueue(k wkey, w wval, urgent bool) (*batch, error) {
	bt.mu.Lock()
	if bt.closed {
		bt.mu.Unlock()
		return nil, ErrClosed
	}
	wake := bt.touch(urgent)
	b := bt.cur
	b.writes[k] = w
	bt.mu.Unlock()
	if wake {
		bt.signal()
	}
	return b, nil
}

// dropSlot records that slot is emptied: pending writes to it are
// superseded. The caller holds the slot's lock.
func (bt *batcher) dropSlot(slot uint16) (*batch, error) {
	bt.mu.Lock()
	if bt.closed {
		bt.mu.Unlock()
		return nil, ErrClosed
	}
	bt.touch(true)
	b := bt.cur
	for k := range b.writes {
		if k.slot == slot {
			delete(b.writes, k)
		}
	}
	if b.drops == nil {
		b.drops = make(map[uint16]struct{})
	}
	b.drops[slot] = struct{}{}
	bt.mu.Unlock()
	bt.signal()
	return b, nil
}

// flushAll records that everything is removed. The caller holds every
// slot's lock.
func (bt *batcher) flushAll() (*batch, error) {
	bt.mu.Lock()
	if bt.closed {
		bt.mu.Unlock()
		return nil, ErrClosed
	}
	bt.touch(true)
	b := bt.cur
	clear(b.writes)
	b.drops = nil
	b.flushAll = true
	bt.mu.Unlock()
	bt.signal()
	return b, nil
}

// syncPoint returns the batch whose commit makes every write enqueued so
// far durable (marking it urgent), or nil if nothing is pending.
func (bt *batcher) syncPoint() (*batch, error) {
	bt.mu.Lock()
	if bt.closed {
		bt.mu.Unlock()
		return nil, ErrClosed
	}
	var b *batch
	wake := false
	switch {
	case !bt.cur.empty():
		wake = bt.touch(true)
		b = bt.cur
	case bt.inflight != nil:
		b = bt.inflight
	}
	bt.mu.Unlock()
	if wake {
		bt.signal()
	}
	return b, nil
}

// pending returns the number of writes in the current batch.
func (bt *batcher) pending() int64 {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return int64(len(bt.cur.writes))
}

// wait blocks until b is committed or ctx is done.
func wait(ctx context.Context, b *batch) error {
	select {
	case <-b.done:
		return b.err
	default:
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return fmt.Errorf("storage: waiting for commit: %w", ctx.Err())
	}
}

// close refuses further writes, commits what is pending and stops the
// committer. Then it makes one more, empty, commit with the freelist
// written: commits skip the freelist (NoFreelistSync), which makes the next
// Open rebuild it by walking the whole file; after a clean close that Open
// reads it instead. It returns the first error.
func (bt *batcher) close() error {
	bt.mu.Lock()
	bt.closed = true
	bt.mu.Unlock()
	close(bt.stop)
	<-bt.done
	if bt.err != nil {
		return bt.err
	}
	bt.db.NoFreelistSync = false // the committer has exited: no commit runs
	if err := bt.db.Update(func(*bolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("storage: writing the freelist: %w", err)
	}
	return nil
}

// run is the committer goroutine.
func (bt *batcher) run() {
	defer close(bt.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var retryAt time.Time // after a failed commit, no retry before this
	backoff := time.Duration(0)
	for {
		bt.mu.Lock()
		b := bt.cur
		empty, urgent, first := b.empty(), b.urgent, b.first
		bt.mu.Unlock()

		if empty {
			select {
			case <-bt.wake:
				continue
			case <-bt.stop:
				bt.err = bt.flush()
				return
			}
		}
		var delay time.Duration
		switch {
		case backoff > 0:
			delay = time.Until(retryAt)
		case !urgent:
			delay = bt.interval - time.Since(first)
		}
		if delay > 0 {
			timer.Reset(delay)
			select {
			case <-timer.C:
			case <-bt.wake:
				timer.Stop()
				continue // re-evaluate: the batch may have become urgent
			case <-bt.stop:
				timer.Stop()
				bt.err = bt.flush()
				return
			}
		}
		if err := bt.flush(); err != nil {
			backoff = min(max(2*backoff, bt.interval, time.Millisecond), time.Second)
			retryAt = time.Now().Add(backoff)
		} else {
			backoff = 0
		}
	}
}

// flush commits the current batch, if any. Only the committer calls it.
func (bt *batcher) flush() error {
	bt.mu.Lock()
	b := bt.cur
	if b.empty() {
		bt.mu.Unlock()
		return nil
	}
	bt.cur = bt.newBatch()
	bt.inflight = b
	bt.mu.Unlock()

	start := time.Now()
	err := bt.commit(b)
	d := time.Since(start)
	n := len(b.writes)

	bt.mu.Lock()
	bt.inflight = nil
	if err != nil {
		bt.requeue(b)
	} else if n <= 1<<16 {
		clear(b.writes)
		bt.spare = b.writes
	}
	b.writes = nil
	bt.mu.Unlock()

	if err != nil {
		bt.failed.Add(1)
		bt.log.Error("storage: commit failed; writes stay in memory and will be retried", "writes", n, "err", err)
		b.err = fmt.Errorf("%w: %w", ErrCommit, err)
		bt.signal()
	} else {
		bt.commits.Add(1)
		bt.writes.Add(int64(n))
		if bt.observe != nil {
			bt.observe(d, n)
		}
	}
	close(b.done)
	return b.err
}

// requeue merges a failed batch into the current one, which holds only
// changes made after it. bt.mu is held.
func (bt *batcher) requeue(old *batch) {
	cur := bt.cur
	if cur.flushAll {
		return // supersedes everything old held
	}
	if cur.empty() {
		cur.first = time.Now()
	}
	cur.flushAll = old.flushAll
	for k, w := range old.writes {
		if _, dropped := cur.drops[k.slot]; dropped {
			continue
		}
		if _, newer := cur.writes[k]; newer {
			continue
		}
		cur.writes[k] = w
	}
	for s := range old.drops {
		if cur.drops == nil {
			cur.drops = make(map[uint16]struct{})
		}
		cur.drops[s] = struct{}{}
	}
}

// commit writes b in one bbolt transaction.
func (bt *batcher) commit(b *batch) error {
	items := bt.items[:0]
	size := 0
	for k, w := range b.writes {
		items = append(items, citem{k: k, w: w})
		size += recordKeyLen(k.key)
		if !w.del {
			size += recordValLen(w.val)
		}
	}
	slices.SortFunc(items, func(a, b citem) int {
		if c := cmp.Compare(a.k.slot, b.k.slot); c != 0 {
			return c
		}
		return strings.Compare(a.k.key, b.k.key)
	})
	// One arena per commit: bbolt keeps references to keys and values until
	// the transaction ends.
	arena := bt.arena[:0]
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

	type hwUpdate struct {
		slot uint16
		hw   uint64
	}
	var hws []hwUpdate
	for i := 0; i < len(items); {
		slot, hw := items[i].k.slot, uint64(0)
		for ; i < len(items) && items[i].k.slot == slot; i++ {
			hw = max(hw, items[i].w.hw)
		}
		if hw > bt.hw[slot] {
			hws = append(hws, hwUpdate{slot, hw})
		}
	}

	err := bt.db.Update(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketData)
		if b.flushAll {
			if err := tx.DeleteBucket(bucketData); err != nil {
				return fmt.Errorf("flush all: %w", err)
			}
			var err error
			if data, err = tx.CreateBucket(bucketData); err != nil {
				return fmt.Errorf("flush all: %w", err)
			}
		}
		data.FillPercent = fillPercent
		for slot := range b.drops {
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
		if len(hws) > 0 {
			meta := tx.Bucket(bucketMeta)
			buf := make([]byte, 8*len(hws))
			for i, u := range hws {
				v := buf[8*i : 8*i+8]
				binary.BigEndian.PutUint64(v, u.hw)
				if err := meta.Put(metaSlotKey(u.slot), v); err != nil {
					return fmt.Errorf("meta: %w", err)
				}
			}
		}
		return nil
	})
	if err == nil {
		for _, u := range hws {
			bt.hw[u.slot] = u.hw
		}
	}
	clear(items) // drop references to values
	bt.items = items[:0]
	if cap(arena) <= 8<<20 {
		bt.arena = arena[:0]
	} else {
		bt.arena = nil
	}
	return err
}

// fillPercent is how full bbolt packs the pages it splits. Its default,
// 0.5, leaves pages of 1 KiB values about half empty under random inserts;
// at 0.9 the file of 300k × 1 KiB stashes measured 17% smaller.
const fillPercent = 0.9

// deleteSlot removes every record of slot from the stashes bucket.
func deleteSlot(data *bolt.Bucket, slot uint16) error {
	prefix := appendRecordKey(nil, slot, "")
	var keys [][]byte
	c := data.Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(k) >= 2 && binary.BigEndian.Uint16(k) == slot; k, _ = c.Next() {
		keys = append(keys, slices.Clone(k))
	}
	for _, k := range keys {
		if err := data.Delete(k); err != nil {
			return fmt.Errorf("drop slot %d: %w", slot, err)
		}
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

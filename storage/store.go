package storage

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Slots is the number of slots keys are partitioned into (as Redis Cluster).
const Slots = 16384

// Op is what an Update callback asks the store to do.
type Op uint8

const (
	// OpKeep changes nothing.
	OpKeep Op = iota
	// OpPut stores the returned stash.
	OpPut
	// OpDelete removes the key, leaving a tombstone.
	OpDelete
)

// String returns "keep", "put" or "delete".
func (o Op) String() string {
	switch o {
	case OpKeep:
		return "keep"
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// slot is the in-memory state of one slot.
type slot struct {
	mu    sync.RWMutex // guards t, tombs and seq; held for writing while a change is applied and enqueued
	t     table
	tombs int    // tombstones in t
	seq   uint64 // highest sequence assigned or applied in this slot (never decreases)
	// minExp is a lower bound on the earliest non-zero exp in t, expiry or
	// tombstone removal (math.MaxInt64: none). Written under mu; read by
	// the reaper without it.
	minExp atomic.Int64
}

// Store is one node's storage engine: every stash in memory, organised by
// slot, made durable in bbolt by a group-commit batcher, with a reaper that
// turns expired stashes into tombstones and removes old tombstones. See the
// package documentation.
type Store struct {
	cfg     Config
	log     *slog.Logger
	seed    maphash.Seed // for the per-slot tables
	slots   []slot       // len Slots
	epoch   atomic.Uint32
	tombTTL int64 // cfg.TombstoneTTL in milliseconds
	fresh   bool  // Open found no data: memory only, or no stash.db yet

	db *bolt.DB // nil when memory only
	bt *batcher // nil when memory only

	stashes, bytes, tombstones, expired atomic.Int64

	// Set by Open before the Store is returned; read-only afterwards.
	loaded, corrupt        int64
	replayed, walDiscarded int64
	loadedIn               time.Duration

	closeMu sync.Mutex // serialises Close
	closed  atomic.Bool
	stop    chan struct{} // closed by Close: stops the reaper
	wg      sync.WaitGroup
}

// Open returns a Store configured by cfg. With cfg.Dir set it creates the
// directory, opens (or creates) Dir/stash.db, reloads every non-expired
// stash and replays the write-ahead log in Dir/wal over them before
// returning; corrupt records are logged, counted in Stats.Corrupt and
// moved to a quarantine bucket, and a torn log tail is cut off. Open starts
// the committer, checkpointer and reaper goroutines, which Close stops.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{
		cfg:   cfg,
		log:   cfg.Logger,
		seed:  maphash.MakeSeed(),
		slots: make([]slot, Slots),
		stop:  make(chan struct{}),

		tombTTL: max(cfg.TombstoneTTL.Milliseconds(), 1),
	}
	s.epoch.Store(1)
	for i := range s.slots {
		s.slots[i].minExp.Store(math.MaxInt64)
	}
	s.fresh = true
	if cfg.Dir != "" {
		if err := s.openDisk(); err != nil {
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.reaper()
	return s, nil
}

// Fresh reports whether Open found no earlier data: the store is memory
// only, or its directory held no stash.db. In a cluster, a node whose
// store is fresh although the cluster knows it has lost its data.
func (s *Store) Fresh() bool { return s.fresh }

// Close commits pending writes, checkpoints the whole log into stash.db
// (so that the next Open replays nothing), stops the goroutines and closes
// the files.
// It is safe to call more than once; later calls return nil. Afterwards
// every method returns ErrClosed (Get and Lookup report a miss, Scan,
// ScanSlot and ScanSlotAll visit nothing).
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Load() {
		return nil
	}
	s.closed.Store(true)
	close(s.stop)
	s.wg.Wait()
	if s.bt == nil {
		return nil
	}
	err := s.bt.close()
	if cerr := s.db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("storage: close: %w", cerr)
	}
	s.log.Info("storage: closed", "dir", s.cfg.Dir, "stashes", s.stashes.Load(), "err", err)
	return err
}

func (s *Store) nowMs() int64 { return s.cfg.Now().UnixMilli() }

// expiryTombstone returns when the tombstone left by a stash that expired
// at exp is to be removed: TombstoneTTL after the expiry, so that every
// replica, and every reload, agrees on it. At or before now there is no
// point in leaving one.
func (s *Store) expiryTombstone(exp int64) int64 { return exp + s.tombTTL }

func (s *Store) check(slot uint16) error {
	if slot >= Slots {
		return fmt.Errorf("%w: %d", ErrBadSlot, slot)
	}
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Get returns the stash stored under key in slot. An expired stash
// (ExpireAt != 0 && ExpireAt <= now) is reported missing even before the
// reaper removes it, and so is a tombstone. Get does not retain key (it may
// alias a buffer that is reused after the call); the returned Stash.Key is
// the store's own string.
func (s *Store) Get(slot uint16, key string) (Stash, bool) {
	if s.check(slot) != nil {
		return Stash{}, false
	}
	h := maphash.String(s.seed, key)
	now := s.nowMs()
	sl := &s.slots[slot]
	sl.mu.RLock()
	i := sl.t.find(h, key)
	if i < 0 {
		sl.mu.RUnlock()
		return Stash{}, false
	}
	e := sl.t.entries[i]
	sl.mu.RUnlock()
	if !e.live(now) {
		return Stash{}, false
	}
	return e.stash(), true
}

// Lookup returns what slot holds for key, whatever it is: a live stash, an
// expired one the reaper has not removed yet, or a tombstone (Deleted set,
// with the version of the delete). It reports false only when nothing is
// held. Replication uses it to compare versions with a peer. Like Get, it
// does not retain key.
func (s *Store) Lookup(slot uint16, key string) (Stash, bool) {
	if s.check(slot) != nil {
		return Stash{}, false
	}
	h := maphash.String(s.seed, key)
	sl := &s.slots[slot]
	sl.mu.RLock()
	defer sl.mu.RUnlock()
	i := sl.t.find(h, key)
	if i < 0 {
		return Stash{}, false
	}
	return sl.t.entries[i].stash(), true
}

// SetEpoch sets the epoch of versions assigned by Update (default 1).
func (s *Store) SetEpoch(e uint32) { s.epoch.Store(e) }

// Update reads, modifies and writes one key atomically. It calls fn once,
// under the slot's write lock, with the current live stash (ok=false when
// the key is absent, expired or a tombstone), and applies the Op fn
// returns:
//
//   - OpPut stores next, with next.Key forced to key, a zero Kind stored
//     as KindString and next.Deleted ignored. If next.Version is zero the
//     store assigns Version{Epoch: current epoch, Seq: the slot's next
//     sequence}, newer than anything the slot holds (a tombstone included)
//     unless SetEpoch is behind the epoch of a version applied to it;
//     otherwise next.Version is stored as given (and raises the slot's
//     sequence if higher). It replaces whatever is held, a tombstone too.
//   - OpDelete replaces the key with a tombstone at a version assigned as
//     for a put, kept for Config.TombstoneTTL. Deleting an absent key or a
//     tombstone changes nothing and reports OpKeep; deleting an expired
//     one turns it into the tombstone the reaper would have left (at the
//     stash's version; counted in Stats.Expired) and reports OpKeep.
//   - OpKeep changes nothing.
//
// fn must not block and must not call the Store (the slot lock is held).
// Like Get, Update does not retain key (it copies it when it inserts), so
// key may point into a buffer the caller reuses. It keeps next.Value as
// given: that must be a real, immutable string, and should not pin a
// larger buffer.
//
// Update returns once the change is in memory and enqueued for the
// batcher. Under FsyncAlways it then waits, holding no lock, for the group
// commit that carries the change; if ctx ends first it returns the applied
// Op with ctx's error (the change stays in memory and will be committed).
// It returns the Op applied.
func (s *Store) Update(ctx context.Context, slot uint16, key string, fn func(cur Stash, ok bool) (next Stash, op Op)) (Op, error) {
	op, _, err := s.Change(ctx, slot, key, fn)
	return op, err
}

// Change is Update that also returns what the store holds for key
// afterwards, for a primary to ship to its backups (with Apply):
//
//   - after OpPut, the stored stash: Key (the store's own string), the
//     normalised Kind, Value, ExpireAt and the Version assigned or given;
//   - after an OpDelete that removed a live stash, its tombstone:
//     Stash{Key, Version, Deleted: true};
//   - after OpKeep (also a delete that found nothing live), the zero Stash.
//
// Everything Update promises holds for Change.
func (s *Store) Change(ctx context.Context, slot uint16, key string, fn func(cur Stash, ok bool) (next Stash, op Op)) (Op, Stash, error) {
	if err := s.check(slot); err != nil {
		return OpKeep, Stash{}, err
	}
	if err := ctx.Err(); err != nil {
		return OpKeep, Stash{}, err
	}
	if len(key) > MaxKeyLen {
		return OpKeep, Stash{}, fmt.Errorf("%w: key of %d bytes (max %d)", ErrTooLarge, len(key), MaxKeyLen)
	}
	op, st, b, err := s.change(slot, key, fn)
	if err != nil || b == nil {
		return op, st, err
	}
	return op, st, s.settle(ctx, b)
}

// settle waits, after a change was enqueued in batch b, for what the
// writer must wait for: b's commit under FsyncAlways, and a checkpoint if
// the log is over its limit.
func (s *Store) settle(ctx context.Context, b *batch) error {
	if s.cfg.Fsync == FsyncAlways {
		if err := wait(ctx, b); err != nil {
			return err
		}
	}
	return s.bt.throttle(ctx)
}

func (s *Store) change(slot uint16, key string, fn func(Stash, bool) (Stash, Op)) (Op, Stash, *batch, error) {
	h := maphash.String(s.seed, key)
	now := s.nowMs()
	sl := &s.slots[slot]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	i := sl.t.find(h, key)
	var cur Stash
	ok := i >= 0 && sl.t.entries[i].live(now)
	if ok {
		cur = sl.t.entries[i].stash()
	}
	next, op := fn(cur, ok)
	switch op {
	case OpKeep:
		return OpKeep, Stash{}, nil, nil
	case OpPut:
		if err := checkStash(&next); err != nil {
			return OpKeep, Stash{}, nil, err
		}
		if next.Version.IsZero() {
			sl.seq++
			next.Version = Version{Epoch: s.epoch.Load(), Seq: sl.seq}
		} else {
			sl.seq = max(sl.seq, next.Version.Seq)
		}
		if i < 0 {
			key = strings.Clone(key) // the caller's key may be transient
		}
		e := makeEntry(key, next.Kind, next.Value, next.ExpireAt, next.Version)
		s.storeLocked(sl, h, i, &e)
		next.Key, next.Deleted = e.key, false
		b, err := s.enqueue(slot, sl, e.key, &e)
		return OpPut, next, b, err
	case OpDelete:
		switch {
		case i < 0 || sl.t.entries[i].tombstone():
			return OpKeep, Stash{}, nil, nil
		case !ok:
			_, b, err := s.expireLocked(slot, sl, i, now)
			return OpKeep, Stash{}, b, err
		}
		sl.seq++
		e := makeTombstone(key, Version{Epoch: s.epoch.Load(), Seq: sl.seq}, now+s.tombTTL)
		s.storeLocked(sl, h, i, &e)
		b, err := s.enqueue(slot, sl, e.key, &e)
		return OpDelete, e.stash(), b, err
	default:
		return OpKeep, Stash{}, nil, fmt.Errorf("%w: op %d", ErrInvalid, op)
	}
}

// Apply stores st, or when del (or st.Deleted) a tombstone for st.Key at
// st.Version, only if st.Version is newer than the version held for the
// key — a live stash, an expired one or a tombstone — or nothing is held,
// and reports whether it did. So a put loses against a tombstone of an
// equal or newer version and wins against an older one, and a delete
// leaves a tombstone even for a key it finds absent: replicas that apply
// the same versions, in any order, converge. A tombstone applied here is
// kept for Config.TombstoneTTL from now; its st.Kind, Value and ExpireAt
// are ignored. The slot's sequence is raised to st.Version.Seq when it
// applies. Like Update, it waits for the commit under FsyncAlways.
//
// Once a tombstone has been removed (TombstoneTTL after the delete), an
// older put for its key is applied again: the TTL must cover how late a
// replica's versions can arrive.
func (s *Store) Apply(ctx context.Context, slot uint16, st Stash, del bool) (bool, error) {
	if err := s.check(slot); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if len(st.Key) > MaxKeyLen {
		return false, fmt.Errorf("%w: key of %d bytes (max %d)", ErrTooLarge, len(st.Key), MaxKeyLen)
	}
	del = del || st.Deleted
	if !del {
		if err := checkStash(&st); err != nil {
			return false, err
		}
	}
	applied, b, err := s.apply(slot, &st, del)
	if err != nil || b == nil {
		return applied, err
	}
	return applied, s.settle(ctx, b)
}

func (s *Store) apply(slot uint16, st *Stash, del bool) (bool, *batch, error) {
	h := maphash.String(s.seed, st.Key)
	sl := &s.slots[slot]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	i := sl.t.find(h, st.Key)
	if i >= 0 && !sl.t.entries[i].version().Less(st.Version) {
		return false, nil, nil
	}
	sl.seq = max(sl.seq, st.Version.Seq)
	var e entry
	if del {
		e = makeTombstone(st.Key, st.Version, s.nowMs()+s.tombTTL)
	} else {
		e = makeEntry(st.Key, st.Kind, st.Value, st.ExpireAt, st.Version)
	}
	s.storeLocked(sl, h, i, &e)
	b, err := s.enqueue(slot, sl, e.key, &e)
	return true, b, err
}

// checkStash normalises st.Kind and checks what the store can hold.
func checkStash(st *Stash) error {
	if st.Kind == 0 {
		st.Kind = KindString
	}
	if !st.Kind.valid() {
		return fmt.Errorf("%w: kind %d", ErrInvalid, st.Kind)
	}
	if len(st.Value) > MaxValueLen {
		return fmt.Errorf("%w: value of %d bytes (max %d)", ErrTooLarge, len(st.Value), MaxValueLen)
	}
	return nil
}

// storeLocked puts e, a stash or a tombstone, in bucket i, replacing what
// is there, or in a new bucket when i < 0 (h is the hash of e.key, which
// must then be a string the store may keep). Replacing keeps the table's
// own key string, which it sets in e.key. sl.mu is held.
func (s *Store) storeLocked(sl *slot, h uint64, i int, e *entry) {
	if i >= 0 {
		old := &sl.t.entries[i]
		e.key = old.key
		s.recount(sl, old, e)
		*old = *e
	} else {
		sl.t.insert(s.seed, h, *e)
		s.recount(sl, nil, e)
	}
	if e.exp != 0 && e.exp < sl.minExp.Load() {
		sl.minExp.Store(e.exp)
	}
}

// removeLocked removes the entry in bucket i, leaving nothing, and returns
// its key. sl.mu is held.
func (s *Store) removeLocked(sl *slot, i int) string {
	e := &sl.t.entries[i]
	k := e.key
	s.recount(sl, e, nil)
	sl.t.removeAt(s.seed, i)
	return k
}

// recount updates the counters for the replacement of old by new (either
// nil for none). sl.mu is held.
func (s *Store) recount(sl *slot, old, new *entry) {
	var stashes, bytes, tombs int64
	for sign, e := range [2]*entry{old, new} {
		switch {
		case e == nil:
			continue
		case e.tombstone():
			tombs += int64(2*sign - 1)
		default:
			stashes += int64(2*sign - 1)
			bytes += int64(2*sign-1) * e.size()
		}
	}
	if stashes != 0 {
		s.stashes.Add(stashes)
	}
	if bytes != 0 {
		s.bytes.Add(bytes)
	}
	if tombs != 0 {
		s.tombstones.Add(tombs)
		sl.tombs += int(tombs)
	}
}

// expireLocked turns the expired stash in bucket i into the tombstone its
// expiry leaves (at its version, until TombstoneTTL after its expiry), or
// removes it if that time has passed, and enqueues the change. It returns
// the tombstone's removal time (0 if none was left). sl.mu is held.
func (s *Store) expireLocked(slot uint16, sl *slot, i int, now int64) (int64, *batch, error) {
	s.expired.Add(1)
	old := &sl.t.entries[i]
	gcAt := s.expiryTombstone(old.exp)
	if gcAt <= now {
		k := s.removeLocked(sl, i)
		b, err := s.enqueue(slot, sl, k, nil)
		return 0, b, err
	}
	e := makeTombstone(old.key, old.version(), gcAt)
	s.storeLocked(sl, 0, i, &e)
	b, err := s.enqueue(slot, sl, e.key, &e)
	return e.exp, b, err
}

// enqueue hands the batcher the new state of key: e, a stash or a
// tombstone, or nothing (nil: the key is gone). sl.mu is held, which
// orders enqueues for one key as their memory changes.
func (s *Store) enqueue(slot uint16, sl *slot, key string, e *entry) (*batch, error) {
	if s.bt == nil {
		return nil, nil
	}
	return s.bt.enqueue(wkey{slot: slot, key: key}, wvalOf(e, sl.seq), s.cfg.Fsync == FsyncAlways)
}

// Scan visits keys in slot order, like Redis SCAN: cursor is the slot to
// start at; it passes every live key of whole slots to fn until at least
// count keys (default 10 when count <= 0) were passed, and returns the
// cursor to continue from, or 0 when every slot was visited. A key present
// for the whole scan is passed at least once; fn is called without locks
// held.
func (s *Store) Scan(cursor uint64, count int, fn func(key string)) (next uint64) {
	if cursor >= Slots || s.closed.Load() {
		return 0
	}
	if count <= 0 {
		count = 10
	}
	now := s.nowMs()
	var keys []string
	n := 0
	for i := cursor; i < Slots; i++ {
		sl := &s.slots[i]
		keys = keys[:0]
		sl.mu.RLock()
		for j, tg := range sl.t.tags {
			if tg != 0 && sl.t.entries[j].live(now) {
				keys = append(keys, sl.t.entries[j].key)
			}
		}
		sl.mu.RUnlock()
		for _, k := range keys {
			fn(k)
		}
		if n += len(keys); n >= count {
			if i+1 == Slots {
				return 0
			}
			return i + 1
		}
	}
	return 0
}

// ScanSlot calls fn for each live stash of slot (no tombstones, nothing
// expired), in no particular order, until fn returns false. It copies the
// slot's entries (headers only, not the bytes) under the read lock and
// calls fn without locks held, so fn may call the Store; changes made
// meanwhile are not seen.
func (s *Store) ScanSlot(slot uint16, fn func(Stash) bool) {
	s.scanSlot(slot, false, fn)
}

// ScanSlotAll is ScanSlot visiting everything slot holds: live stashes,
// expired ones the reaper has not removed yet, and tombstones (Deleted
// set). It is how a whole slot is shipped to a peer, which applies each
// with Apply(ctx, slot, st, st.Deleted) so that deletes travel too.
//
// It returns the slot's mark, taken with the same snapshot: the current
// epoch (SetEpoch) and the highest sequence the slot has assigned or
// applied. Every entry the snapshot lacks but an older copy of the slot
// holds at or below the mark, this store no longer has: deleted, its
// tombstone since removed (see PruneSlot). A change this store makes
// later has a newer version.
func (s *Store) ScanSlotAll(slot uint16, fn func(Stash) bool) Version {
	return s.scanSlot(slot, true, fn)
}

func (s *Store) scanSlot(slot uint16, all bool, fn func(Stash) bool) (mark Version) {
	if s.check(slot) != nil {
		return
	}
	now := s.nowMs()
	sl := &s.slots[slot]
	sl.mu.RLock()
	mark = Version{Epoch: s.epoch.Load(), Seq: sl.seq}
	n := sl.t.n
	if !all {
		n -= sl.tombs
	}
	snap := make([]Stash, 0, n)
	for j, tg := range sl.t.tags {
		if e := &sl.t.entries[j]; tg != 0 && (all || e.live(now)) {
			snap = append(snap, e.stash())
		}
	}
	sl.mu.RUnlock()
	for _, st := range snap {
		if !fn(st) {
			return
		}
	}
	return
}

// PruneSlot removes, leaving nothing, every entry of slot (stash or
// tombstone) whose version is not newer than upTo and whose key keep
// rejects, and waits until the removal is as durable as the fsync policy
// demands. It returns how many it removed. A backup uses it to drop what
// its primary no longer has (ScanSlotAll's mark): keys deleted while the
// backup was away, whose tombstones were removed before it came back.
// Without it such a key would outlive its delete on the backup, and come
// back if the backup ever became primary.
func (s *Store) PruneSlot(ctx context.Context, slot uint16, upTo Version, keep func(key string) bool) (int, error) {
	if err := s.check(slot); err != nil {
		return 0, err
	}
	sl := &s.slots[slot]
	sl.mu.Lock()
	var keys []string
	for j, tg := range sl.t.tags {
		if e := &sl.t.entries[j]; tg != 0 && !upTo.Less(e.version()) && !keep(e.key) {
			keys = append(keys, e.key)
		}
	}
	var last *batch
	var err error
	for _, k := range keys {
		i := sl.t.find(maphash.String(s.seed, k), k)
		s.removeLocked(sl, i)
		if b, e := s.enqueue(slot, sl, k, nil); e != nil {
			err = e
		} else if b != nil {
			last = b
		}
	}
	sl.mu.Unlock()
	if err != nil || last == nil {
		return len(keys), err
	}
	return len(keys), s.settle(ctx, last)
}

// SlotCount returns the number of stashes held in slot, including expired
// ones the reaper has not removed yet but not tombstones. O(1).
func (s *Store) SlotCount(slot uint16) int {
	n, tombs := s.slotSizes(slot)
	return n - tombs
}

// slotSizes returns how many entries slot holds and how many of them are
// tombstones.
func (s *Store) slotSizes(slot uint16) (n, tombs int) {
	if s.check(slot) != nil {
		return 0, 0
	}
	sl := &s.slots[slot]
	sl.mu.RLock()
	defer sl.mu.RUnlock()
	return sl.t.n, sl.tombs
}

// Digest returns an order-independent hash of slot's contents as the reaper
// leaves them: (key, version, expiry) of each live stash, and (key,
// version, deleted) of each tombstone, where an expired stash counts as
// the tombstone it leaves and a tombstone or expired stash past its
// removal time counts as gone. So two replicas that differ only by a
// delete differ, and replicas agree whether or not their reapers have run.
// Equal contents give equal digests on every node and every run; an empty
// slot digests to 0. A tombstone's removal time is left out, but it is set
// by each replica's own clock when the delete reaches it, so replicas may
// disagree for as long as their deliveries of a delete were apart,
// TombstoneTTL later.
func (s *Store) Digest(slot uint16) uint64 {
	if s.check(slot) != nil {
		return 0
	}
	now := s.nowMs()
	sl := &s.slots[slot]
	var d uint64
	sl.mu.RLock()
	for j, tg := range sl.t.tags {
		if tg == 0 {
			continue
		}
		switch e := &sl.t.entries[j]; {
		case e.tombstone():
			if !e.expired(now) {
				d += entryDigest(e.key, e.version(), 0, true)
			}
		case !e.expired(now):
			d += entryDigest(e.key, e.version(), e.exp, false)
		case s.expiryTombstone(e.exp) > now:
			d += entryDigest(e.key, e.version(), 0, true)
		}
	}
	sl.mu.RUnlock()
	return d
}

// entryDigest hashes one entry deterministically (FNV-1a of the key, then
// splitmix64 rounds over version, tombstone flag and expiry).
func entryDigest(key string, v Version, exp int64, deleted bool) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h = mix64(h ^ uint64(v.Epoch))
	h = mix64(h ^ v.Seq)
	if deleted {
		h = mix64(h ^ 1)
	}
	return mix64(h ^ uint64(exp))
}

func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// clearLocked empties sl, tombstones included. sl.mu is held.
func (s *Store) clearLocked(sl *slot) {
	var n, b int64
	for j, tg := range sl.t.tags {
		if e := &sl.t.entries[j]; tg != 0 && !e.tombstone() {
			n++
			b += e.size()
		}
	}
	s.stashes.Add(-n)
	s.bytes.Add(-b)
	s.tombstones.Add(-int64(sl.tombs))
	sl.tombs = 0
	sl.t = table{}
	sl.minExp.Store(math.MaxInt64)
}

// DropSlot removes every stash and tombstone of slot from memory and disk,
// and waits until the removal is committed. The slot's sequence is kept.
// It leaves no tombstones: it is a reset (the slot moved away, or is to be
// fetched whole), not a delete to replicate.
func (s *Store) DropSlot(ctx context.Context, slot uint16) error {
	return s.DropSlots(ctx, []uint16{slot})
}

// DropSlots is DropSlot for several slots, committed together: each slot
// is emptied in memory at once, and one commit makes all of it durable.
func (s *Store) DropSlots(ctx context.Context, slots []uint16) error {
	var last *batch
	for _, slot := range slots {
		if err := s.check(slot); err != nil {
			return err
		}
		sl := &s.slots[slot]
		sl.mu.Lock()
		s.clearLocked(sl)
		var err error
		if s.bt != nil {
			last, err = s.bt.dropSlot(slot)
		}
		sl.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if last == nil {
		return nil
	}
	return wait(ctx, last)
}

// SlotEntries returns the number of entries slot holds, stashes and
// tombstones alike. O(1).
func (s *Store) SlotEntries(slot uint16) int {
	n, _ := s.slotSizes(slot)
	return n
}

// FlushAll removes every stash and tombstone from memory and disk and waits
// until the removal is committed. Slot sequences are kept. Like DropSlot, it
// is a reset and leaves no tombstones.
func (s *Store) FlushAll(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	for i := range s.slots {
		s.slots[i].mu.Lock()
	}
	for i := range s.slots {
		s.clearLocked(&s.slots[i])
	}
	var b *batch
	var err error
	if s.bt != nil {
		b, err = s.bt.flushAll()
	}
	for i := range s.slots {
		s.slots[i].mu.Unlock()
	}
	if err != nil || b == nil {
		return err
	}
	return wait(ctx, b)
}

// Sync waits until every write enqueued before the call is committed (and
// fsynced, unless FsyncNever). It returns at once for a memory-only store.
func (s *Store) Sync(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.bt == nil {
		return nil
	}
	b, err := s.bt.syncPoint()
	if err != nil || b == nil {
		return err
	}
	return wait(ctx, b)
}

// Stats returns a summary of the store. It is cheap: counters only.
func (s *Store) Stats() Stats {
	st := Stats{
		Stashes:    s.stashes.Load(),
		Bytes:      s.bytes.Load(),
		Tombstones: s.tombstones.Load(),
		Expired:    s.expired.Load(),
		Loaded:     s.loaded,
		LoadedIn:   s.loadedIn,
		Corrupt:    s.corrupt,
		Replayed:   s.replayed,

		WALDiscarded: s.walDiscarded,
	}
	if s.bt != nil {
		st.Commits = s.bt.commits.Load()
		st.Writes = s.bt.writes.Load()
		st.Failed = s.bt.failed.Load()
		st.Pending = s.bt.pending()
		st.WALBytes = s.bt.walBytes.Load()
		st.Checkpoints = s.bt.checkpoints.Load()
		st.CheckpointFailed = s.bt.ckptFailed.Load()
		st.Stalls = s.bt.stalls.Load()
	}
	return st
}

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
	// OpDelete removes the key.
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
	mu  sync.RWMutex // guards t and seq; held for writing while a change is applied and enqueued
	t   table
	seq uint64 // highest sequence assigned or applied in this slot (never decreases)
	// minExp is a lower bound on the earliest non-zero ExpireAt in t
	// (math.MaxInt64: none). Written under mu; read by the reaper without it.
	minExp atomic.Int64
}

// Store is one node's storage engine: every stash in memory, organised by
// slot, made durable in bbolt by a group-commit batcher, with a reaper that
// deletes expired stashes. See the package documentation.
type Store struct {
	cfg   Config
	log   *slog.Logger
	seed  maphash.Seed // for the per-slot tables
	slots []slot       // len Slots
	epoch atomic.Uint32

	db *bolt.DB // nil when memory only
	bt *batcher // nil when memory only

	stashes, bytes, expired atomic.Int64

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
	}
	s.epoch.Store(1)
	for i := range s.slots {
		s.slots[i].minExp.Store(math.MaxInt64)
	}
	if cfg.Dir != "" {
		if err := s.openDisk(); err != nil {
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.reaper()
	return s, nil
}

// Close commits pending writes, checkpoints the whole log into stash.db
// (so that the next Open replays nothing), stops the goroutines and closes
// the files.
// It is safe to call more than once; later calls return nil. Afterwards
// every method returns ErrClosed (Get reports a miss, Scan and ScanSlot
// visit nothing).
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
// reaper removes it. Get does not retain key (it may alias a buffer that is
// reused after the call); the returned Stash.Key is the store's own string.
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
	if e.expired(now) {
		return Stash{}, false
	}
	return e.stash(), true
}

// SetEpoch sets the epoch of versions assigned by Update (default 1).
func (s *Store) SetEpoch(e uint32) { s.epoch.Store(e) }

// Update reads, modifies and writes one key atomically. It calls fn once,
// under the slot's write lock, with the current live stash (ok=false when
// the key is absent or expired), and applies the Op fn returns:
//
//   - OpPut stores next, with next.Key forced to key and a zero Kind stored
//     as KindString. If next.Version is zero the store assigns
//     Version{Epoch: current epoch, Seq: the slot's next sequence};
//     otherwise next.Version is stored as given (and raises the slot's
//     sequence if higher).
//   - OpDelete removes key. Deleting an absent key changes nothing and
//     reports OpKeep; deleting an expired one removes it (counted in
//     Stats.Expired) and reports OpKeep.
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
	if err := s.check(slot); err != nil {
		return OpKeep, err
	}
	if err := ctx.Err(); err != nil {
		return OpKeep, err
	}
	if len(key) > MaxKeyLen {
		return OpKeep, fmt.Errorf("%w: key of %d bytes (max %d)", ErrTooLarge, len(key), MaxKeyLen)
	}
	op, b, err := s.update(slot, key, fn)
	if err != nil || b == nil {
		return op, err
	}
	return op, s.settle(ctx, b)
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

func (s *Store) update(slot uint16, key string, fn func(Stash, bool) (Stash, Op)) (Op, *batch, error) {
	h := maphash.String(s.seed, key)
	now := s.nowMs()
	sl := &s.slots[slot]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	i := sl.t.find(h, key)
	var cur Stash
	ok := i >= 0 && !sl.t.entries[i].expired(now)
	if ok {
		cur = sl.t.entries[i].stash()
	}
	next, op := fn(cur, ok)
	switch op {
	case OpKeep:
		return OpKeep, nil, nil
	case OpPut:
		if err := checkStash(&next); err != nil {
			return OpKeep, nil, err
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
		k := s.putLocked(sl, h, i, key, &next)
		b, err := s.enqueue(slot, sl, k, &next, false)
		return OpPut, b, err
	case OpDelete:
		if i < 0 {
			return OpKeep, nil, nil
		}
		k := s.removeLocked(sl, i)
		if !ok {
			s.expired.Add(1)
			op = OpKeep
		}
		b, err := s.enqueue(slot, sl, k, nil, true)
		return op, b, err
	default:
		return OpKeep, nil, fmt.Errorf("%w: op %d", ErrInvalid, op)
	}
}

// Apply stores st (or, when del, deletes st.Key) only if st.Version is newer
// than the version held for the key — expired or not — and reports whether
// it did. With nothing held, a put is stored and a delete reports true.
// The slot's sequence is raised to st.Version.Seq when it applies. Like
// Update, it waits for the commit under FsyncAlways.
//
// The store keeps no tombstones: after a delete, an older put for the same
// key is applied. Replication must order deletes itself.
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
	if del {
		k := st.Key
		if i >= 0 {
			k = s.removeLocked(sl, i)
		}
		// Enqueued even when nothing was held: it carries the sequence
		// high-water to disk.
		b, err := s.enqueue(slot, sl, k, nil, true)
		return true, b, err
	}
	k := s.putLocked(sl, h, i, st.Key, st)
	b, err := s.enqueue(slot, sl, k, st, false)
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

// putLocked stores st under key in bucket i (or a new one when i < 0) and
// returns the key string the table holds. sl.mu is held.
func (s *Store) putLocked(sl *slot, h uint64, i int, key string, st *Stash) string {
	e := makeEntry(key, st.Kind, st.Value, st.ExpireAt, st.Version)
	if i >= 0 {
		old := &sl.t.entries[i]
		e.key = old.key // keep the table's own copy of the key
		s.bytes.Add(e.size() - old.size())
		*old = e
	} else {
		sl.t.insert(s.seed, h, e)
		s.stashes.Add(1)
		s.bytes.Add(e.size())
	}
	if e.exp != 0 && e.exp < sl.minExp.Load() {
		sl.minExp.Store(e.exp)
	}
	return e.key
}

// removeLocked removes the entry in bucket i and returns its key.
// sl.mu is held.
func (s *Store) removeLocked(sl *slot, i int) string {
	e := &sl.t.entries[i]
	k := e.key
	s.stashes.Add(-1)
	s.bytes.Add(-e.size())
	sl.t.removeAt(s.seed, i)
	return k
}

// enqueue hands a put (st != nil) or a delete to the batcher. sl.mu is
// held, which orders enqueues for one key as their memory changes.
func (s *Store) enqueue(slot uint16, sl *slot, key string, st *Stash, del bool) (*batch, error) {
	if s.bt == nil {
		return nil, nil
	}
	w := wval{hw: sl.seq, del: del}
	if !del {
		w.val, w.exp, w.seq, w.epoch, w.kind = st.Value, st.ExpireAt, st.Version.Seq, st.Version.Epoch, st.Kind
	}
	return s.bt.enqueue(wkey{slot: slot, key: key}, w, s.cfg.Fsync == FsyncAlways)
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
			if tg != 0 && !sl.t.entries[j].expired(now) {
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

// ScanSlot calls fn for each live stash of slot, in no particular order,
// until fn returns false. It copies the slot's entries (headers only, not
// the bytes) under the read lock and calls fn without locks held, so fn may
// call the Store; changes made meanwhile are not seen.
func (s *Store) ScanSlot(slot uint16, fn func(Stash) bool) {
	if s.check(slot) != nil {
		return
	}
	now := s.nowMs()
	sl := &s.slots[slot]
	sl.mu.RLock()
	snap := make([]Stash, 0, sl.t.n)
	for j, tg := range sl.t.tags {
		if e := &sl.t.entries[j]; tg != 0 && !e.expired(now) {
			snap = append(snap, e.stash())
		}
	}
	sl.mu.RUnlock()
	for _, st := range snap {
		if !fn(st) {
			return
		}
	}
}

// SlotCount returns the number of stashes held in slot, including expired
// ones the reaper has not removed yet. O(1).
func (s *Store) SlotCount(slot uint16) int {
	if s.check(slot) != nil {
		return 0
	}
	sl := &s.slots[slot]
	sl.mu.RLock()
	defer sl.mu.RUnlock()
	return sl.t.n
}

// Digest returns an order-independent hash of the (key, version, expiry)
// of slot's live stashes: equal sets give equal digests on every node and
// every run; an empty slot digests to 0. Expired stashes are left out, so
// replicas agree before their reapers have run.
func (s *Store) Digest(slot uint16) uint64 {
	if s.check(slot) != nil {
		return 0
	}
	now := s.nowMs()
	sl := &s.slots[slot]
	var d uint64
	sl.mu.RLock()
	for j, tg := range sl.t.tags {
		if e := &sl.t.entries[j]; tg != 0 && !e.expired(now) {
			d += entryDigest(e.key, e.version(), e.exp)
		}
	}
	sl.mu.RUnlock()
	return d
}

// entryDigest hashes one entry deterministically (FNV-1a of the key, then
// splitmix64 rounds over version and expiry).
func entryDigest(key string, v Version, exp int64) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h = mix64(h ^ uint64(v.Epoch))
	h = mix64(h ^ v.Seq)
	return mix64(h ^ uint64(exp))
}

func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// clearLocked empties sl. sl.mu is held.
func (s *Store) clearLocked(sl *slot) {
	var n, b int64
	for j, tg := range sl.t.tags {
		if tg != 0 {
			n++
			b += sl.t.entries[j].size()
		}
	}
	s.stashes.Add(-n)
	s.bytes.Add(-b)
	sl.t = table{}
	sl.minExp.Store(math.MaxInt64)
}

// DropSlot removes every stash of slot from memory and disk, and waits
// until the removal is committed. The slot's sequence is kept.
func (s *Store) DropSlot(ctx context.Context, slot uint16) error {
	if err := s.check(slot); err != nil {
		return err
	}
	sl := &s.slots[slot]
	sl.mu.Lock()
	s.clearLocked(sl)
	var b *batch
	var err error
	if s.bt != nil {
		b, err = s.bt.dropSlot(slot)
	}
	sl.mu.Unlock()
	if err != nil || b == nil {
		return err
	}
	return wait(ctx, b)
}

// FlushAll removes every stash from memory and disk and waits until the
// removal is committed. Slot sequences are kept.
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
		Stashes:  s.stashes.Load(),
		Bytes:    s.bytes.Load(),
		Expired:  s.expired.Load(),
		Loaded:   s.loaded,
		LoadedIn: s.loadedIn,
		Corrupt:  s.corrupt,
		Replayed: s.replayed,

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

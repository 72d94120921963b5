package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Kind says how a stash's Value is to be read.
type Kind uint8

const (
	// KindString is a plain value (SET/GET, STASH.PUT). Update and Apply
	// store a zero Kind as KindString.
	KindString Kind = 1
	// KindHash is a field map, stored encoded (see EncodeHash, DecodeHash).
	KindHash Kind = 2
)

// kindTombstone is the Kind the store records, in memory and on disk, for
// a tombstone. It is never a Stash's Kind (a tombstone is reported with
// Deleted set and a zero Kind), and Update and Apply refuse it.
const kindTombstone Kind = 0xF

// valid reports whether k is a kind the store can persist for a stash.
func (k Kind) valid() bool { return k == KindString || k == KindHash }

// Version orders writes to one key: Epoch (the slot-table epoch under which
// the write was made) first, then Seq (the per-slot sequence of the primary).
// Wall clocks never take part.
type Version struct {
	Epoch uint32
	Seq   uint64
}

// Less reports whether v orders before o.
func (v Version) Less(o Version) bool {
	if v.Epoch != o.Epoch {
		return v.Epoch < o.Epoch
	}
	return v.Seq < o.Seq
}

// IsZero reports whether v is the zero Version (never assigned).
func (v Version) IsZero() bool { return v == Version{} }

// Stash is a copy of one stored stash. Value is immutable: the store never
// changes a string it handed out.
//
// Deleted marks a tombstone: what the store keeps of a deleted (or
// expired) key for Config.TombstoneTTL, so that an older version of the
// key arriving later is refused (see Store.Apply). A tombstone has only
// Key and Version; Kind, Value and ExpireAt are zero. Only Lookup,
// ScanSlotAll and Change return tombstones; Get, Scan, ScanSlot and
// Update's callback never see them.
type Stash struct {
	Key      string
	Kind     Kind
	Value    string // for KindHash, the encoding made by EncodeHash
	ExpireAt int64  // absolute expiry, unix milliseconds; 0 = never
	Version  Version
	Deleted  bool // a tombstone (see above)
}

// Fsync says when a write reaches stable storage.
type Fsync int

const (
	// FsyncBatch acknowledges a write once it is in memory and flushes it
	// (with fsync) at most BatchInterval later. The default.
	FsyncBatch Fsync = iota
	// FsyncAlways acknowledges a write only after the group commit that
	// carries it has been fsynced.
	FsyncAlways
	// FsyncNever writes through the same batcher but never calls fsync;
	// the operating system decides when data reaches the disk.
	FsyncNever
)

// String returns "batch", "always" or "never".
func (f Fsync) String() string {
	switch f {
	case FsyncBatch:
		return "batch"
	case FsyncAlways:
		return "always"
	case FsyncNever:
		return "never"
	}
	return fmt.Sprintf("Fsync(%d)", int(f))
}

// Config configures a Store. The zero value is a working in-memory store.
type Config struct {
	// Dir holds the bbolt file (stash.db) and the write-ahead log (wal/);
	// Open creates them. Empty: memory only, nothing survives Close.
	Dir string
	// Fsync policy for writes. Default FsyncBatch.
	Fsync Fsync
	// BatchInterval bounds how long a write waits in the batcher before it
	// is committed under FsyncBatch and FsyncNever. Default 10ms.
	BatchInterval time.Duration
	// ReapInterval is how often the reaper looks for expired stashes.
	// Default 100ms.
	ReapInterval time.Duration
	// CheckpointBytes is the size, in bytes, of write-ahead log after which
	// a checkpoint moves the changes it holds into stash.db and removes it.
	// A checkpoint costs about as much as rewriting the pages of stash.db
	// that the changed keys live on, so larger values cost less per write
	// when a working set is rewritten often, and make Open after a crash
	// replay more. While the log exceeds 2 × CheckpointBytes (writers
	// outrunning the checkpointer), Update and Apply wait for a checkpoint
	// before they return, so that a crash leaves at most about that much
	// log to replay. Default 128 MiB.
	CheckpointBytes int64
	// CheckpointInterval is the longest a logged change waits for a
	// checkpoint when the log stays under CheckpointBytes. Default 30s.
	CheckpointInterval time.Duration
	// MmapSize is the initial size, in bytes, of bbolt's memory map. When
	// the file outgrows the map bbolt remaps it, stalling commits; a
	// generous map costs only address space. Default 1 GiB.
	MmapSize int
	// LockTimeout bounds how long Open waits for another process to release
	// the file lock on stash.db. Default 10s.
	LockTimeout time.Duration
	// TombstoneTTL is how long a tombstone is kept, by Now, after the
	// delete that left it (after the expiry, for a stash that expired);
	// then the reaper removes it, and an older version of the key is
	// accepted again by Apply. It must exceed the longest a replica can
	// be away (partitioned, down, lagging) and still rejoin by catching
	// up rather than by a full resync of its slots: a replica back after
	// longer may hold, and ship, versions older than a delete whose
	// tombstone is gone, which would bring the key back. Default 1 hour.
	TombstoneTTL time.Duration
	// Now is the clock used for expiry and tombstone lifetimes. Default
	// time.Now.
	Now func() time.Time
	// Logger receives open/reload/reaper decisions. Nil discards.
	Logger *slog.Logger
	// ObserveFsync, if set, is called by the committer goroutine after each
	// commit (one append to the write-ahead log) with its duration
	// (including fsync, unless FsyncNever) and the number of writes it
	// carried. It must not block.
	ObserveFsync func(d time.Duration, writes int)
}

// DefaultConfig returns a Config with every default filled in and no Dir
// (memory only).
func DefaultConfig() Config {
	return Config{
		Fsync:              FsyncBatch,
		BatchInterval:      10 * time.Millisecond,
		ReapInterval:       100 * time.Millisecond,
		CheckpointBytes:    128 << 20,
		CheckpointInterval: 30 * time.Second,
		MmapSize:           1 << 30,
		LockTimeout:        10 * time.Second,
		TombstoneTTL:       time.Hour,
		Now:                time.Now,
	}
}

// withDefaults returns a copy of c whose zero fields hold their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.BatchInterval == 0 {
		c.BatchInterval = d.BatchInterval
	}
	if c.ReapInterval == 0 {
		c.ReapInterval = d.ReapInterval
	}
	if c.CheckpointBytes == 0 {
		c.CheckpointBytes = d.CheckpointBytes
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = d.CheckpointInterval
	}
	if c.MmapSize == 0 {
		c.MmapSize = d.MmapSize
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = d.LockTimeout
	}
	if c.TombstoneTTL == 0 {
		c.TombstoneTTL = d.TombstoneTTL
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c at once. Zero values are valid:
// they stand for the defaults.
func (c Config) Validate() error {
	var errs []error
	if c.Fsync < FsyncBatch || c.Fsync > FsyncNever {
		errs = append(errs, fmt.Errorf("Fsync: unknown policy %d", int(c.Fsync)))
	}
	if c.BatchInterval < 0 {
		errs = append(errs, fmt.Errorf("BatchInterval: %v is negative", c.BatchInterval))
	}
	if c.ReapInterval < 0 {
		errs = append(errs, fmt.Errorf("ReapInterval: %v is negative", c.ReapInterval))
	}
	if c.CheckpointBytes < 0 {
		errs = append(errs, fmt.Errorf("CheckpointBytes: %d is negative", c.CheckpointBytes))
	}
	if c.CheckpointInterval < 0 {
		errs = append(errs, fmt.Errorf("CheckpointInterval: %v is negative", c.CheckpointInterval))
	}
	if c.MmapSize < 0 {
		errs = append(errs, fmt.Errorf("MmapSize: %d is negative", c.MmapSize))
	}
	if c.LockTimeout < 0 {
		errs = append(errs, fmt.Errorf("LockTimeout: %v is negative", c.LockTimeout))
	}
	if c.TombstoneTTL < 0 {
		errs = append(errs, fmt.Errorf("TombstoneTTL: %v is negative", c.TombstoneTTL))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// Stats is a point-in-time summary of a Store.
type Stats struct {
	Stashes    int64         // live entries (expired but not yet reaped included; tombstones not)
	Bytes      int64         // sum of key and value bytes of those entries
	Tombstones int64         // tombstones held (deleted or expired keys, kept for Config.TombstoneTTL)
	Expired    int64         // stashes turned into tombstones (or removed) because they expired, by the reaper or a delete, since Open
	Commits    int64         // successful batcher commits (appends to the write-ahead log) since Open
	Writes     int64         // writes carried by those commits (after coalescing)
	Pending    int64         // writes waiting in the batcher for the next commit
	Failed     int64         // batcher commits that failed (their writes are retried)
	LoadedIn   time.Duration // time Open spent reloading from disk (stash.db and the log)
	Loaded     int64         // stashes held after Open reloaded stash.db and replayed the log
	Corrupt    int64         // records rejected as corrupt at Open (moved to the quarantine bucket)

	WALBytes         int64 // bytes of write-ahead log a crash now would replay (not yet covered by a checkpoint)
	Checkpoints      int64 // successful checkpoints (log moved into stash.db) since Open
	CheckpointFailed int64 // checkpoints that failed (retried; the log is kept meanwhile)
	Stalls           int64 // writes held back because the log was over 2 × CheckpointBytes (see Config.CheckpointBytes)
	Replayed         int64 // log records replayed at Open
	WALDiscarded     int64 // bytes of log dropped at Open as a torn or corrupt tail
}

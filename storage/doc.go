// Package storage is one Stash node's storage engine: every stash held in
// an in-memory index, which serves all reads, and made durable through a
// group-commit batcher that appends to a write-ahead log, checkpointed into
// a bbolt file. It is the only package that imports bbolt, and it imports
// nothing else of this project.
//
// # Usage
//
//	s, err := storage.Open(storage.Config{Dir: "stash-data", Fsync: storage.FsyncBatch})
//	if err != nil { ... }
//	defer s.Close()
//
//	// Read-modify-write one key atomically (SET k v EX 300):
//	_, err = s.Update(ctx, slot, "k", func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
//		return storage.Stash{Kind: storage.KindString, Value: "v", ExpireAt: nowMs + 300_000}, storage.OpPut
//	})
//	st, ok := s.Get(slot, "k")
//
//	// A primary changes a key and gets the version to ship (a tombstone,
//	// Deleted set, for a delete); a backup applies it, newer wins:
//	op, st, err := primary.Change(ctx, slot, "k", fn)
//	applied, err := backup.Apply(ctx, slot, st, st.Deleted)
//
// Keys are partitioned into Slots (16384) slots; callers compute the slot
// (ring does, by CRC16). Everything is organised per slot so that one slot
// can be scanned (ScanSlot), compared between replicas (Digest), counted
// and dropped (DropSlot) without touching the others. Scan walks all slots
// with a Redis-SCAN-like cursor.
//
// Versions order writes to one key: Update and Change assign {current epoch
// (see SetEpoch), next per-slot sequence} unless the caller gives one;
// Apply stores only versions newer than the one held. The per-slot sequence
// is persisted as a high-water mark, so it never goes backwards across
// restarts, even when the stash that carried it was deleted.
//
// A delete leaves a tombstone: the key and the version of the delete, with
// no value (Stash.Deleted). Tombstones are invisible to Get, Update's
// callback, Scan, ScanSlot, SlotCount and Stats.Stashes, but Apply compares
// versions against them like against a stash, so a put older than the
// delete — a delayed replication message, a lagging replica's copy — is
// refused instead of bringing the key back. Lookup and ScanSlotAll show
// them, Digest covers them, Stats.Tombstones counts them, and they are
// durable like puts. So replicas that apply the same versions (with Apply,
// from Change's results, Lookup or ScanSlotAll), in any order and any
// number of times, converge on the same contents: newer wins. A tombstone
// lives Config.TombstoneTTL (1 hour) after its delete, by Config.Now; then
// the reaper removes it and the key is forgotten, so from then on an older
// put would be applied again (see Caveats). DropSlot and FlushAll are
// resets, not deletes, and leave no tombstones.
//
// Expiry is absolute (unix milliseconds, by Config.Now). An expired stash
// is invisible at once (Get, Update, Scan, ScanSlot skip it); the reaper
// goroutine turns it into a tombstone at its version soon after (in
// memory and on disk; so does a delete or a reload that finds it expired),
// scanning only slots whose earliest-expiry bound is due. That tombstone
// lives TombstoneTTL after the expiry, so every replica keeps it until the
// same time; Digest counts an expired stash as that tombstone already.
//
// Hashes (KindHash) are stored as one value encoded by EncodeHash, like
// Redis's listpack: small and allocation-free in the index, but each field
// update re-encodes the whole hash (O(n)).
//
// Durability follows Config.Fsync. Under FsyncBatch (the default) a write
// is acknowledged once in memory and committed, with fsync, at most
// BatchInterval later; under FsyncAlways Update and Apply return only after
// the commit carrying them is fsynced, and writers that arrive during one
// commit share the next; FsyncNever commits like FsyncBatch but never
// fsyncs. Sync waits for everything enqueued so far. Pending writes are
// coalesced per key, so a hot key costs one write per commit.
//
// A commit is an append to a write-ahead log: the batch's records, one
// write call, one fdatasync. It used to be a bbolt transaction, which
// rewrote a whole 4 KiB B-tree page for each key written, wherever it was:
// under redis-benchmark SET of 1 KiB values over 100k keys that cost ~42%
// of stashnode's CPU and 25k SET/s against 39k/s in memory. The log moves
// into stash.db by checkpoints instead, which rewrite each changed page
// once for all the writes that changed it since the last one. A checkpoint
// runs when the log has grown by Config.CheckpointBytes (128 MiB), or
// Config.CheckpointInterval (30s) after the last one if anything was
// logged: it starts a new log segment, writes into bbolt, in one
// transaction, the current state in memory of every key the older
// segments changed (or a delete, if the key is gone), their slots'
// sequence high-water marks and the number of the last segment covered,
// fsyncs, and only then removes those segments. Reading memory rather than
// the log is safe because memory is never behind the log, and replay after
// a crash re-applies, in log order, everything logged after the
// checkpoint's segments. Writers are held back (Update and Apply wait,
// holding no lock) while the log exceeds 2 × CheckpointBytes, which
// happens only when they outrun the checkpointer; that bounds the log a
// crash leaves.
//
// Open reloads stash.db in parallel over slot ranges, then replays the
// segments after the last checkpoint in order over it (records apply
// unconditionally: the log's order is the order of the changes), in
// parallel over slot partitions, and starts a new segment; the replayed
// ones are checkpointed in the background at once. A frame cut short or
// failing its CRC ends the replay, keeping everything before it: at the
// tail of the last segment that is an append a crash interrupted, and the
// segment is cut there; anywhere else it is damage, logged as an error, and
// the damaged segment (copied first) and all later ones are set aside as
// "*.bad". Close commits what is pending and checkpoints the whole log,
// so Open after a clean Close replays nothing.
//
// On disk, Dir holds stash.db and wal/. In stash.db, bucket "stashes" maps
// slot (2 bytes, big-endian) ++ key to a 25-byte header (kind, expiry,
// epoch, sequence, CRC-32C) ++ value; a tombstone is a record of kind 0x0F
// with no value whose expiry is its removal time. Bucket "meta" holds the
// format version, per-slot sequence high-water marks and the last
// checkpointed log segment. A record that fails its checksum or cannot be
// decoded is logged, counted (Stats.Corrupt) and moved to bucket
// "quarantine"; expired records are loaded as tombstones, due tombstones
// skipped, and both rewritten by the next checkpoint. The log is a series
// of numbered segment files of frames (length, CRC-32C, record: put,
// tombstone, delete, dropslot or flushall with slot, key, kind, expiry,
// version, sequence high-water and value); see wal.go.
//
// # Concurrency
//
// All methods are safe for concurrent use. Each slot has a sync.RWMutex:
// reads of different slots never contend, and writes to one slot are
// serialised, which is what orders their sequences and their enqueueing
// to the batcher. Update's callback runs under the slot's write lock: it
// must not block and must not call the Store. Scan and ScanSlot call their
// callbacks with no lock held. FlushAll takes every slot lock.
//
// The Store owns three goroutines — the committer and the checkpointer
// (only with a Dir) and the reaper — started by Open and stopped by Close;
// Open also runs replay workers (GOMAXPROCS) until it returns. The
// committer appends to the log and decides when to checkpoint; the
// checkpointer, while the committer goes on logging, reads the keys to
// checkpoint under their slots' read locks (one slot at a time) and is
// bbolt's only writer. ObserveFsync is called from the committer and must
// not block.
//
// Close is immediate: it refuses new writes, commits what is pending,
// waits for a running checkpoint, makes the final one, stops the
// goroutines and closes the files; calling it again returns nil.
// Afterwards every method returns ErrClosed, Get and Lookup report a miss
// and Scan, ScanSlot and ScanSlotAll visit nothing.
//
// # Caveats
//
//   - Memory: the index costs about 60–85 bytes per stash beyond its key and
//     value bytes, Go's rounding of those allocations to size classes
//     included (see table.go; measured by BenchmarkMemoryOverhead). The
//     store keeps the Value strings it is given; a substring of a large
//     buffer pins the buffer. A tombstone costs the same as a stash with
//     an empty value (its key plus that overhead) for TombstoneTTL: a
//     workload deleting 10k keys a second holds 36M tombstones an hour.
//   - Tombstones are bounded in time, not kept forever: once one is removed
//     (TombstoneTTL after its delete, or after the expiry that left it),
//     Apply takes an older put of its key again. A replica away longer
//     than TombstoneTTL may hold, and ship, such puts, which resurrects
//     deleted keys: it must resync whole slots (DropSlot, then fetch)
//     instead of catching up. TombstoneTTL is by each node's clock, from
//     when the delete reached it, so replicas remove a tombstone at
//     slightly different times and their digests differ meanwhile.
//   - A version Update assigns is newer than anything held for the key
//     only if the current epoch (SetEpoch) is not behind the epoch of a
//     version applied to the slot; the sequence always is. A primary that
//     writes under a stale epoch loses on its backups (Apply refuses it)
//     while winning in its own store.
//   - Under FsyncBatch and FsyncNever an acknowledged write can be lost in a
//     crash (up to BatchInterval of writes; with FsyncNever, whatever the
//     OS had not written). Under FsyncAlways an acknowledged write survives
//     kill -9 and power loss (as far as fsync is honest).
//   - After a crash each key holds its last logged state, or a newer one
//     that a checkpoint read from memory before the crash although it was
//     not logged yet (so not acknowledged under FsyncAlways); across keys
//     the state is therefore not always a prefix of the history: an
//     unacknowledged write, DropSlot or FlushAll may be partly there.
//   - Reload after a crash costs the log replay on top of the load. Here
//     (2 noisy cores) replay applies 330–440k records of 1 KiB a second
//     (480–880k of 100 B; BenchmarkReplay), and Open of 1M × 1 KiB stashes
//     took 1.3–2.6 s after kill -9 with the full default log limit of
//     256 MiB, against 1.1–2.5 s after a clean Close (BenchmarkReload). The
//     limit is in bytes, so a log of small records replays longer: 256 MiB
//     of 100 B records is about 2–3.5 s. If checkpoints keep failing the
//     log grows without bound (writers are not held then), and so does
//     replay: 3.3–3.9 s for 1M × 1 KiB all in the log.
//   - A checkpoint costs what rewriting the bbolt pages of its keys costs:
//     bbolt writes pages one pwrite each, and inserts fresh 1 KiB keys at
//     only some 50–100k a second here, so a writer adding new keys faster
//     than that is held back (Stats.Stalls) once the log reaches
//     2 × CheckpointBytes. A working set that fits a few checkpoints is
//     rewritten whole by each one; a larger CheckpointBytes makes that
//     rarer at the price of a longer replay.
//   - A failed commit (disk full, I/O error) is logged, reported to the
//     writers waiting for it (ErrCommit) and retried with backoff, after
//     cutting the segment back to its last whole append; the writes stay
//     in memory meanwhile, so memory is ahead of disk. A failed checkpoint
//     is logged (Stats.CheckpointFailed) and retried with the next one; the
//     log is kept meanwhile. Close's checkpoint reads memory, so it makes
//     durable even writes the log refused.
//   - Pending writes are coalesced per key, so the batcher never holds more
//     than one write per key; besides the log limit above there is no
//     back-pressure: a disk slower than the write rate shows as larger,
//     slower commits.
//   - A stash.db written by this version is marked format 3, and its log
//     segments format 2, which older builds refuse (they would ignore the
//     log, or take tombstones for damage); a format 1 or 2 file is marked
//     format 3 at its first Open here, and format 1 segments are replayed.
//   - The bbolt file never shrinks; space freed by deletes, DropSlot and
//     FlushAll is reused. Each checkpoint writes bbolt's freelist, so Open
//     reads it, after a crash too, instead of walking every page.
//   - On Linux bbolt's map is made with MAP_POPULATE, so Open (and any
//     later remap as the file grows by a GiB) faults the whole file in at
//     once; that is what the reload needs, but a remap slows the checkpoint
//     that grows the file.
//   - ScanSlot and ScanSlotAll copy the slot's entry headers (about 72
//     bytes each) before calling back; a slot made huge by a hot hashtag
//     costs that much.
//   - Keys are limited to MaxKeyLen bytes and values to MaxValueLen bytes.
//   - Digest covers key, version and expiry of stashes, and key and
//     version of tombstones, not the value or kind: replicas that agree on
//     versions are assumed to agree on contents.
package storage

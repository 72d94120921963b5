// Package storage is one Stash node's storage engine: every stash held in
// an in-memory index, which serves all reads, and made durable in a bbolt
// file through a group-commit batcher. It is the only package that imports
// bbolt, and it imports nothing else of this project.
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
//	// Replication applies versions decided elsewhere; the newer one wins.
//	applied, err := s.Apply(ctx, slot, st, false)
//
// Keys are partitioned into Slots (16384) slots; callers compute the slot
// (ring does, by CRC16). Everything is organised per slot so that one slot
// can be scanned (ScanSlot), compared between replicas (Digest), counted
// and dropped (DropSlot) without touching the others. Scan walks all slots
// with a Redis-SCAN-like cursor.
//
// Versions order writes to one key: Update assigns {current epoch (see
// SetEpoch), next per-slot sequence} unless the caller gives one; Apply
// stores only versions newer than the one held. The per-slot sequence is
// persisted as a high-water mark, so it never goes backwards across
// restarts, even when the stash that carried it was deleted.
//
// Expiry is absolute (unix milliseconds, by Config.Now). An expired stash
// is invisible at once (Get, Update, Scan, ScanSlot, Digest skip it); the
// reaper goroutine removes it from memory and disk soon after, scanning
// only slots whose earliest-expiry bound is due.
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
// On disk: bucket "stashes" maps slot (2 bytes, big-endian) ++ key to a
// 25-byte header (kind, expiry, epoch, sequence, CRC-32C) ++ value; bucket
// "meta" holds the format version and per-slot sequence high-water marks.
// Open reloads in parallel over slot ranges. A record that fails its
// checksum or cannot be decoded is logged, counted (Stats.Corrupt) and
// moved to bucket "quarantine"; expired records are skipped and deleted.
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
// The Store owns two goroutines — the committer (only with a Dir) and the
// reaper — started by Open and stopped by Close. ObserveFsync is called
// from the committer and must not block.
//
// Close is immediate: it refuses new writes, commits what is pending,
// stops the goroutines and closes the file; calling it again returns nil.
// Afterwards every method returns ErrClosed, Get reports a miss and Scan
// and ScanSlot visit nothing.
//
// # Caveats
//
//   - Memory: the index costs about 60–85 bytes per stash beyond its key and
//     value bytes, Go's rounding of those allocations to size classes
//     included (see table.go; measured by BenchmarkMemoryOverhead). The
//     store keeps the Value strings it is given; a substring of a large
//     buffer pins the buffer.
//   - No tombstones: a delete removes the key, so an older put applied
//     afterwards (Apply) brings it back. Replication must order deletes.
//   - Under FsyncBatch and FsyncNever an acknowledged write can be lost in a
//     crash (up to BatchInterval of writes; with FsyncNever, whatever the
//     OS had not written). Under FsyncAlways an acknowledged write survives
//     kill -9 and power loss (as far as fsync is honest).
//   - A failed commit (disk full, I/O error) is logged, reported to the
//     writers waiting for it (ErrCommit) and retried with backoff; the
//     writes stay in memory meanwhile, so memory is ahead of disk.
//   - Pending writes are coalesced per key, so the batcher never holds more
//     than one write per key, but there is no other back-pressure: a disk
//     slower than the write rate shows as larger, slower commits.
//   - The bbolt file never shrinks; space freed by deletes, DropSlot and
//     FlushAll is reused. Commits skip writing bbolt's freelist
//     (NoFreelistSync); Close writes it once, so Open after a clean Close
//     reads it, while Open after a crash rebuilds it by walking and checking
//     every page — about a second per 1.5 GB file here, single-threaded,
//     before the parallel load starts.
//   - On Linux bbolt's map is made with MAP_POPULATE, so Open (and any
//     later remap as the file grows by a GiB) faults the whole file in at
//     once; that is what the reload needs, but a remap stalls commits
//     meanwhile.
//   - ScanSlot copies the slot's entry headers (about 64 bytes each) before
//     calling back; a slot made huge by a hot hashtag costs that much.
//   - Keys are limited to MaxKeyLen bytes and values to MaxValueLen bytes.
//   - Digest covers key, version and expiry only, not the value or kind:
//     replicas that agree on versions are assumed to agree on contents.
package storage

package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the bbolt file inside Config.Dir.
const FileName = "stash.db"

const (
	// loadChunk is how many slots a load worker takes at a time.
	loadChunk = 128
	// maxCorruptLogs bounds the corrupt records logged one by one per Open.
	maxCorruptLogs = 100
)

// openDisk opens stash.db, reloads it into memory, replays the log over
// it and starts the batcher.
func (s *Store) openDisk() (err error) {
	start := time.Now()
	cfg := s.cfg
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	path := filepath.Join(cfg.Dir, FileName)
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		s.fresh = false
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: cfg.LockTimeout,
		// Checkpoints are rare and large, so each writes bbolt's freelist:
		// Open, even after a crash, reads it instead of walking the file.
		NoFreelistSync:  false,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: cfg.MmapSize,
		NoSync:          cfg.Fsync == FsyncNever,
		NoGrowSync:      cfg.Fsync == FsyncNever,
		MmapFlags:       mmapFlags,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("storage: open %s: still locked by another process after %v: %w", path, cfg.LockTimeout, err)
	}
	if err != nil {
		return fmt.Errorf("storage: open %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()

	if err := initBuckets(db); err != nil {
		return fmt.Errorf("storage: open %s: %w", path, err)
	}
	hw := make([]uint64, Slots) // sequence high-water persisted in meta
	var walCkpt uint64          // highest log segment moved into stash.db
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(metaWALCkpt); len(v) == 8 {
			walCkpt = binary.BigEndian.Uint64(v)
		}
		return meta.ForEach(func(k, v []byte) error {
			if len(k) == 3 && k[0] == 's' {
				slot := binary.BigEndian.Uint16(k[1:])
				if slot < Slots && len(v) == 8 {
					hw[slot] = binary.BigEndian.Uint64(v)
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("storage: open %s: %w", path, err)
	}
	for i := range s.slots {
		s.slots[i].seq = hw[i]
	}

	res, err := s.load(db)
	if err != nil {
		return fmt.Errorf("storage: load %s: %w", path, err)
	}
	if len(res.corrupt) > 0 {
		if err := quarantine(db, res.corrupt); err != nil {
			return fmt.Errorf("storage: quarantine corrupt records: %w", err)
		}
	}
	loadedIn := time.Since(start)

	ws, rep, err := s.replay(filepath.Join(cfg.Dir, walDirName), walCkpt)
	if err != nil {
		return fmt.Errorf("storage: replaying the log: %w", err)
	}
	// Expired records and due tombstones are rewritten by the next
	// checkpoint, which writes the key's state in memory: a tombstone or
	// absent, unless the log changed it.
	for _, k := range res.stale {
		ws.dirty.add(k)
	}

	s.db = db
	s.bt = newBatcher(db, s, cfg, hw, ws)
	s.loaded = s.stashes.Load()
	s.corrupt = int64(len(res.corrupt))
	s.replayed = rep.records
	s.walDiscarded = rep.discarded
	s.loadedIn = time.Since(start)
	s.log.Info("storage: opened", "path", path, "fsync", cfg.Fsync.String(),
		"stashes", s.loaded, "tombstones", s.tombstones.Load(), "from_db", res.loaded, "stale", len(res.stale), "corrupt", len(res.corrupt),
		"log_records", rep.records, "log_segments", len(ws.sealed), "log_bytes", ws.bytes,
		"load_took", loadedIn, "took", s.loadedIn)
	return nil
}

// initBuckets checks the format version and creates the buckets of a new
// file. A file already set up is only read: no commit, no fsync.
func initBuckets(db *bolt.DB) error {
	ready := false
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		v := meta.Get(metaFormat)
		if v != nil && (len(v) != 4 || binary.BigEndian.Uint32(v) > formatVersion || binary.BigEndian.Uint32(v) == 0) {
			return fmt.Errorf("%w: format %x, this build reads up to %d", ErrFormat, v, formatVersion)
		}
		// An older file (format 1: no log; format 2: no tombstones) is
		// marked with the current format before anything is written in
		// or next to it, so that a build that does not know the log or
		// tombstones refuses the directory instead of misreading it.
		ready = v != nil && binary.BigEndian.Uint32(v) == formatVersion && tx.Bucket(bucketData) != nil
		return nil
	})
	if err != nil || ready {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketData); err != nil {
			return err
		}
		return meta.Put(metaFormat, binary.BigEndian.AppendUint32(nil, formatVersion))
	})
}

// loadResult is what the load workers gathered besides the stashes.
type loadResult struct {
	loaded  int64       // stashes (not tombstones)
	stale   []wkey      // records to rewrite from memory: expired stashes (now tombstones, or gone) and due tombstones
	corrupt [][2][]byte // raw key and value of records to quarantine
}

// load reads every record of the stashes bucket into the slots, in
// parallel over slot ranges (bbolt allows concurrent read transactions).
func (s *Store) load(db *bolt.DB) (loadResult, error) {
	workers := runtime.GOMAXPROCS(0)
	var next atomic.Int32
	var logged atomic.Int32
	now := s.nowMs()
	results := make([]loadResult, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := loader{s: s, now: now, logged: &logged}
			errs[w] = db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucketData).Cursor()
				for {
					lo := int(next.Add(1)-1) * loadChunk
					if lo >= Slots {
						return nil
					}
					l.loadRange(c, lo, lo+loadChunk)
				}
			})
			results[w] = l.res
		}()
	}
	wg.Wait()
	var res loadResult
	for w := range workers {
		res.loaded += results[w].loaded
		res.stale = append(res.stale, results[w].stale...)
		res.corrupt = append(res.corrupt, results[w].corrupt...)
	}
	return res, errors.Join(errs...)
}

// loader is one load worker's state.
type loader struct {
	s      *Store
	now    int64
	logged *atomic.Int32
	res    loadResult
	tmp    []entry // entries (stashes and tombstones) of the slot being read
	maxSeq uint64  // highest sequence among the slot's records, expired included
}

// loadRange loads the records of slots [lo, hi). The range that ends at
// Slots also takes the records past it (only corrupt ones can be there),
// and the one starting at 0 those before it.
func (l *loader) loadRange(c *bolt.Cursor, lo, hi int) {
	var k, v []byte
	if lo == 0 {
		k, v = c.First()
	} else {
		k, v = c.Seek(binary.BigEndian.AppendUint16(nil, uint16(lo)))
	}
	cur := -1
	for ; k != nil; k, v = c.Next() {
		if len(k) >= 2 {
			slot := int(binary.BigEndian.Uint16(k))
			if slot >= hi && hi < Slots {
				break
			}
			if slot != cur && slot < Slots {
				l.install(cur)
				cur = slot
			}
		} else if len(k) == 1 {
			// A key too short to hold a slot sorts just before slot
			// k[0]<<8; only the range holding slot k[0]<<8 - 1 takes it.
			if pos := max(int(k[0])<<8-1, 0); pos >= hi {
				break
			}
		}
		r, err := decodeRecord(k, v)
		if err != nil {
			l.reject(k, v, err)
			continue
		}
		l.maxSeq = max(l.maxSeq, r.ver.Seq)
		switch {
		case r.kind == kindTombstone && r.exp <= l.now:
			// Due: dropped, and deleted from disk by the next checkpoint.
			l.res.stale = append(l.res.stale, wkey{slot: r.slot, key: string(r.key)})
		case r.kind == kindTombstone:
			l.tmp = append(l.tmp, makeTombstone(string(r.key), r.ver, r.exp))
		case r.exp != 0 && r.exp <= l.now:
			// Expired: held as the tombstone the reaper would have left,
			// which the next checkpoint writes in its place.
			key := string(r.key)
			l.res.stale = append(l.res.stale, wkey{slot: r.slot, key: key})
			if gcAt := l.s.expiryTombstone(r.exp); gcAt > l.now {
				l.tmp = append(l.tmp, makeTombstone(key, r.ver, gcAt))
			}
		default:
			l.tmp = append(l.tmp, makeEntry(string(r.key), r.kind, string(r.value), r.exp, r.ver))
		}
	}
	l.install(cur)
	clear(l.tmp)
	l.tmp = l.tmp[:0]
}

// install hands the gathered entries of slot to it.
func (l *loader) install(slot int) {
	if slot < 0 {
		return
	}
	s := l.s
	t := buildTable(s.seed, l.tmp)
	minExp := int64(math.MaxInt64)
	var bytes int64
	tombs := 0
	for i := range l.tmp {
		e := &l.tmp[i]
		if e.tombstone() {
			tombs++
		} else {
			bytes += e.size()
		}
		if e.exp != 0 {
			minExp = min(minExp, e.exp)
		}
	}
	sl := &s.slots[slot]
	sl.mu.Lock()
	sl.t = t
	sl.tombs = tombs
	sl.seq = max(sl.seq, l.maxSeq)
	sl.minExp.Store(minExp)
	sl.mu.Unlock()
	stashes := int64(len(l.tmp) - tombs)
	s.stashes.Add(stashes)
	s.bytes.Add(bytes)
	s.tombstones.Add(int64(tombs))
	l.res.loaded += stashes
	clear(l.tmp)
	l.tmp = l.tmp[:0]
	l.maxSeq = 0
}

// reject logs a corrupt record and keeps a copy for quarantine.
func (l *loader) reject(k, v []byte, err error) {
	l.res.corrupt = append(l.res.corrupt, [2][]byte{slices.Clone(k), slices.Clone(v)})
	if n := l.logged.Add(1); n <= maxCorruptLogs {
		l.s.log.Error("storage: corrupt record rejected; moved to the quarantine bucket",
			"key", fmt.Sprintf("%q", trunc(string(k))), "bytes", len(v), "err", err)
	} else if n == maxCorruptLogs+1 {
		l.s.log.Error("storage: more corrupt records; not logging each")
	}
}

// quarantine moves corrupt records from the stashes bucket to the
// quarantine bucket, bytes unchanged.
func quarantine(db *bolt.DB, recs [][2][]byte) error {
	return db.Update(func(tx *bolt.Tx) error {
		q, err := tx.CreateBucketIfNotExists(bucketQuarantine)
		if err != nil {
			return err
		}
		data := tx.Bucket(bucketData)
		for _, kv := range recs {
			if len(kv[0]) == 0 {
				continue // bbolt cannot hold an empty key; nothing to move
			}
			if err := q.Put(kv[0], kv[1]); err != nil {
				return err
			}
			if err := data.Delete(kv[0]); err != nil {
				return err
			}
		}
		return nil
	})
}

package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// snapshot returns every live stash of s, by slot and key.
func snapshot(s *Store) map[string]Stash {
	m := map[string]Stash{}
	for slot := range uint16(Slots) {
		s.ScanSlot(slot, func(st Stash) bool {
			m[fmt.Sprintf("%d/%s", slot, st.Key)] = st
			return true
		})
	}
	return m
}

// reopen closes s and opens a new Store on the same directory.
func reopen(t testing.TB, s *Store, cfg Config) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openStore(t, cfg)
}

// withBolt opens the closed store's file directly.
func withBolt(t testing.TB, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestReopenPersistence(t *testing.T) {
	for _, policy := range []Fsync{FsyncAlways, FsyncBatch, FsyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			clock := newFakeClock()
			cfg := Config{Dir: t.TempDir(), Fsync: policy, Now: clock.Now, ReapInterval: time.Hour}
			s := openStore(t, cfg)
			ctx := context.Background()
			const n = 240
			for i := range n {
				slot := uint16(i * 37 % Slots)
				key := fmt.Sprintf("key-%d", i)
				switch i % 6 {
				case 0, 1:
					put(t, s, slot, key, strings.Repeat(fmt.Sprint(i), i%50), 0)
				case 2:
					put(t, s, slot, key, "expiring later", clock.NowMs()+int64(time.Hour/time.Millisecond))
				case 3:
					s.Update(ctx, slot, key, func(Stash, bool) (Stash, Op) {
						return Stash{Kind: KindHash, Value: EncodeHash([]Field{{"f", key}})}, OpPut
					})
				case 4:
					put(t, s, slot, key, "doomed", 0)
					del(t, s, slot, key)
				case 5:
					s.Apply(ctx, slot, Stash{Key: key, Value: "applied", Version: Version{3, uint64(1000 + i)}}, false)
				}
			}
			for i := range 10 { // overwrite some, many times
				for j := range 5 {
					put(t, s, uint16(i*6*37%Slots), fmt.Sprintf("key-%d", i*6), fmt.Sprintf("v%d", j), 0)
				}
			}
			want := snapshotAll(s) // the deleted keys' tombstones too
			if len(want) != n || s.Stats().Tombstones != n/6 {
				t.Fatalf("%d entries before reopen: %+v", len(want), s.Stats())
			}
			s = reopen(t, s, cfg)
			got := snapshotAll(s)
			if !reflect.DeepEqual(got, want) {
				for k, w := range want {
					if g, ok := got[k]; !ok || g != w {
						t.Errorf("%s: got %+v (present %v), want %+v", k, g, ok, w)
					}
				}
				t.Fatalf("reopened store differs: %d vs %d stashes", len(got), len(want))
			}
			if st := s.Stats(); st.Loaded != n*5/6 || st.Stashes != n*5/6 || st.Tombstones != n/6 || st.Corrupt != 0 {
				t.Fatalf("Stats after reopen: %+v", st)
			}
		})
	}
}

func TestSequenceHighWaterSurvivesDelete(t *testing.T) {
	cfg := Config{Dir: t.TempDir()}
	s := openStore(t, cfg)
	ctx := context.Background()
	put(t, s, 9, "a", "v", 0)
	put(t, s, 9, "b", "v", 0) // seq 2
	del(t, s, 9, "b")
	s.Apply(ctx, 10, Stash{Key: "x", Value: "v", Version: Version{1, 100}}, false)
	s.Apply(ctx, 10, Stash{Key: "x", Version: Version{1, 101}}, true)
	s.Apply(ctx, 11, Stash{Key: "never-held", Version: Version{1, 50}}, true)
	s = reopen(t, s, cfg)
	for _, tc := range []struct {
		slot uint16
		min  uint64
	}{{9, 3}, {10, 102}, {11, 51}} {
		put(t, s, tc.slot, "new", "v", 0)
		if got := mustGet(t, s, tc.slot, "new").Version.Seq; got < tc.min {
			t.Fatalf("slot %d: seq after restart %d, want >= %d", tc.slot, got, tc.min)
		}
	}
}

func TestReaperDeletesFromDisk(t *testing.T) {
	clock := newFakeClock()
	start := clock.NowMs()
	cfg := Config{Dir: t.TempDir(), Now: clock.Now, ReapInterval: time.Millisecond}
	s := openStore(t, cfg)
	put(t, s, 1, "short", "v", start+1000)
	put(t, s, 1, "long", "v", start+1_000_000)
	put(t, s, 2, "forever", "v", 0)
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	waitFor(t, "reaper", func() bool { return s.Stats().Expired == 1 })
	if n := s.SlotCount(1); n != 1 {
		t.Fatalf("slot 1 holds %d", n)
	}
	// Reopen with the clock turned back: only a deletion on disk hides "short".
	clock.ms.Store(start)
	s = reopen(t, s, cfg)
	if _, ok := s.Get(1, "short"); ok {
		t.Fatal("reaped stash still on disk")
	}
	mustGet(t, s, 1, "long")
	mustGet(t, s, 2, "forever")
}

func TestLoadSkipsAndDeletesExpired(t *testing.T) {
	clock := newFakeClock()
	start := clock.NowMs()
	cfg := Config{Dir: t.TempDir(), Now: clock.Now, ReapInterval: time.Hour}
	s := openStore(t, cfg)
	for i := range 100 {
		put(t, s, uint16(i), fmt.Sprint(i), "v", start+int64(i%2)*1000+500)
	}
	clock.Advance(time.Second) // odd keys expire at start+1500: still live
	s = reopen(t, s, cfg)
	if st := s.Stats(); st.Loaded != 50 || st.Stashes != 50 {
		t.Fatalf("Stats after load: %+v", st)
	}
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.ms.Store(start)
	s = reopen(t, s, cfg)
	if st := s.Stats(); st.Loaded != 50 {
		t.Fatalf("expired records were not deleted at load: %+v", st)
	}
}

func TestCorruptRecordQuarantined(t *testing.T) {
	var logs syncBuffer
	cfg := Config{Dir: t.TempDir(), Logger: testLogger(&logs)}
	s := openStore(t, cfg)
	for i := range 50 {
		put(t, s, uint16(i%5), fmt.Sprint("k", i), strings.Repeat("v", 100), 0)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	withBolt(t, cfg.Dir, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketData)
		k := appendRecordKey(nil, 3, "k13")
		v := append([]byte(nil), b.Get(k)...)
		v[recHdrLen+10] ^= 1 // one bit of the value
		if err := b.Put(k, v); err != nil {
			return err
		}
		k = appendRecordKey(nil, 4, "k14")
		v = append([]byte(nil), b.Get(k)...)
		if err := b.Put(k, v[:len(v)-30]); err != nil { // torn tail
			return err
		}
		if err := b.Put([]byte{7}, []byte("no slot")); err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint16(nil, 40000), []byte("bad slot"))
	})
	s = openStore(t, cfg)
	if st := s.Stats(); st.Corrupt != 4 || st.Loaded != 48 {
		t.Fatalf("Stats: %+v\n%s", st, logs.String())
	}
	if _, ok := s.Get(3, "k13"); ok {
		t.Fatal("corrupt record served")
	}
	mustGet(t, s, 3, "k3")
	if l := logs.String(); strings.Count(l, "corrupt record rejected") != 4 || !strings.Contains(l, `k13`) {
		t.Fatalf("log does not report the corrupt records:\n%s", l)
	}
	s = reopen(t, s, cfg)
	if st := s.Stats(); st.Corrupt != 0 || st.Loaded != 48 {
		t.Fatalf("Stats after quarantine: %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	withBolt(t, cfg.Dir, func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketQuarantine).Stats().KeyN; n != 4 {
			t.Errorf("quarantine holds %d records", n)
		}
		return nil
	})
}

func TestDropSlotAndFlushAllDisk(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), BatchInterval: time.Hour}
	s := openStore(t, cfg)
	ctx := context.Background()
	for i := range 30 {
		put(t, s, uint16(i%3), fmt.Sprint(i), "v", 0)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, s, 2, "pending-before-drop", "v", 0) // in the same batch as the drop
	if err := s.DropSlot(ctx, 2); err != nil {
		t.Fatal(err)
	}
	put(t, s, 2, "after-drop", "v", 0)
	s = reopen(t, s, cfg)
	if n := s.SlotCount(2); n != 1 {
		t.Fatalf("slot 2 holds %d after drop", n)
	}
	mustGet(t, s, 2, "after-drop")
	if s.SlotCount(0) != 10 || s.SlotCount(1) != 10 {
		t.Fatalf("other slots changed: %d %d", s.SlotCount(0), s.SlotCount(1))
	}

	put(t, s, 0, "pending-before-flush", "v", 0)
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, s, 1, "after-flush", "v", 0)
	s = reopen(t, s, cfg)
	if st := s.Stats(); st.Stashes != 1 {
		t.Fatalf("after FlushAll and reopen: %+v", st)
	}
	mustGet(t, s, 1, "after-flush")
	// Sequences survive FlushAll.
	put(t, s, 0, "again", "v", 0)
	if seq := mustGet(t, s, 0, "again").Version.Seq; seq <= 10 {
		t.Fatalf("slot 0 sequence restarted: %d", seq)
	}
}

func TestBatcherTiming(t *testing.T) {
	t.Run("held until Sync", func(t *testing.T) {
		s := openStore(t, Config{Dir: t.TempDir(), BatchInterval: time.Hour})
		put(t, s, 1, "a", "v", 0)
		put(t, s, 1, "a", "w", 0) // coalesced
		put(t, s, 1, "b", "v", 0)
		if st := s.Stats(); st.Pending != 2 || st.Commits != 0 {
			t.Fatalf("before Sync: %+v", st)
		}
		if err := s.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Pending != 0 || st.Commits != 1 || st.Writes != 2 {
			t.Fatalf("after Sync: %+v", st)
		}
		if err := s.Sync(context.Background()); err != nil {
			t.Fatalf("Sync with nothing pending: %v", err)
		}
	})
	t.Run("flushed after interval", func(t *testing.T) {
		var observed atomic.Int64
		s := openStore(t, Config{Dir: t.TempDir(), BatchInterval: 5 * time.Millisecond,
			ObserveFsync: func(_ time.Duration, n int) { observed.Add(int64(n)) }})
		put(t, s, 1, "a", "v", 0)
		waitFor(t, "a timed commit", func() bool { return s.Stats().Commits == 1 })
		if observed.Load() != 1 {
			t.Fatalf("ObserveFsync saw %d writes", observed.Load())
		}
	})
	t.Run("always is durable on return", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, Config{Dir: dir, Fsync: FsyncAlways, BatchInterval: time.Hour})
		put(t, s, 1, "a", "v", 0)
		recs := readLog(t, filepath.Join(dir, walDirName))
		if len(recs) != 1 || recs[0].op != walPut || recs[0].slot != 1 || string(recs[0].key) != "a" || string(recs[0].value) != "v" {
			t.Fatalf("log holds %+v", recs)
		}
	})
}

func TestFsyncAlwaysGroupCommit(t *testing.T) {
	var commits, carried atomic.Int64
	s := openStore(t, Config{Dir: t.TempDir(), Fsync: FsyncAlways, ObserveFsync: func(_ time.Duration, n int) {
		commits.Add(1)
		carried.Add(int64(n))
	}})
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				put(t, s, uint16(w), fmt.Sprint(i), "v", 0)
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if carried.Load() != writers*each || st.Writes != writers*each || st.Pending != 0 {
		t.Fatalf("carried %d, stats %+v", carried.Load(), st)
	}
	if commits.Load() >= writers*each {
		t.Fatalf("%d commits for %d writes: writers did not share commits", commits.Load(), writers*each)
	}
	t.Logf("%d writes in %d commits", writers*each, commits.Load())
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	if _, err := Open(Config{Dir: dir, LockTimeout: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Open of a locked file: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	withBolt(t, dir, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaFormat, binary.BigEndian.AppendUint32(nil, 99))
	})
	if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrFormat) {
		t.Fatalf("Open of a newer format: %v", err)
	}
}

func TestFresh(t *testing.T) {
	mem := openStore(t, Config{})
	if !mem.Fresh() {
		t.Fatal("a memory-only store is not Fresh")
	}
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	if !s.Fresh() {
		t.Fatal("a store opened on an empty directory is not Fresh")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Dir: dir})
	if s.Fresh() {
		t.Fatal("a store reopened on its own stash.db is Fresh")
	}
}

// PruneSlot removes what a primary's marked snapshot lacks, up to the
// mark only, tombstones included, and the removal survives a reopen.
func TestPruneSlot(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), BatchInterval: time.Hour}
	s := openStore(t, cfg)
	ctx := context.Background()
	for _, k := range []string{"kept", "gone", "gone-too", "other-slot"} {
		slot := uint16(1)
		if k == "other-slot" {
			slot = 2
		}
		put(t, s, slot, k, "v", 0)
	}
	put(t, s, 1, "deleted", "v", 0)
	del(t, s, 1, "deleted") // a tombstone
	seen := map[string]bool{}
	mark := s.ScanSlotAll(1, func(st Stash) bool { seen[st.Key] = true; return true })
	if len(seen) != 4 || !seen["deleted"] || mark.Seq == 0 {
		t.Fatalf("marked snapshot: %v, mark %+v", seen, mark)
	}
	put(t, s, 1, "after-mark", "v", 0) // newer than the mark: kept though not in the set
	n, err := s.PruneSlot(ctx, 1, mark, func(k string) bool { return k == "kept" })
	if err != nil || n != 3 {
		t.Fatalf("PruneSlot = %d, %v; want 3 (gone, gone-too, deleted)", n, err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, cfg)
	mustGet(t, s, 1, "kept")
	mustGet(t, s, 1, "after-mark")
	mustGet(t, s, 2, "other-slot")
	for _, k := range []string{"gone", "gone-too", "deleted"} {
		if st, ok := s.Lookup(1, k); ok {
			t.Fatalf("%s survived PruneSlot and a reopen: %+v", k, st)
		}
	}
	if st := s.Stats(); st.Stashes != 3 || st.Tombstones != 0 {
		t.Fatalf("after prune and reopen: %+v", st)
	}
}

package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestWALRecordCodec(t *testing.T) {
	cases := []walRecord{
		{op: walPut, slot: 7, kind: KindString, exp: 1_700_000_000_000, epoch: 3, seq: 99, hw: 120, key: []byte("k"), value: []byte("value")},
		{op: walPut, slot: Slots - 1, kind: KindHash, key: []byte(""), value: []byte(EncodeHash([]Field{{"f", "v"}}))},
		{op: walDelete, slot: 1, hw: 5, key: []byte("gone")},
		{op: walTombstone, slot: 3, exp: 1_700_000_003_600, epoch: 2, seq: 9, hw: 10, key: []byte("deleted")},
		{op: walDropSlot, slot: 42},
		{op: walFlushAll},
	}
	var log []byte
	for _, r := range cases {
		log = appendWALRecord(log, &r)
	}
	for i, want := range cases {
		got, n, err := decodeWALFrame(log)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if got.op != want.op || got.slot != want.slot || got.kind != want.kind || got.exp != want.exp ||
			got.epoch != want.epoch || got.seq != want.seq || got.hw != want.hw ||
			!bytes.Equal(got.key, want.key) || !bytes.Equal(got.value, want.value) {
			t.Fatalf("record %d: decoded %+v, want %+v", i, got, want)
		}
		frame := log[:n]
		// Every cut is reported as short, every single-bit flip as corrupt.
		for cut := range n {
			if _, _, err := decodeWALFrame(frame[:cut]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("record %d cut at %d: %v", i, cut, err)
			}
		}
		for b := range n {
			for bit := range 8 {
				f := bytes.Clone(frame)
				f[b] ^= 1 << bit
				if _, m, err := decodeWALFrame(f); err == nil && m == n {
					t.Fatalf("record %d: flip of byte %d bit %d not detected", i, b, bit)
				}
			}
		}
		log = log[n:]
	}
	// A tombstone carries neither kind nor value.
	for _, r := range []walRecord{
		{op: walTombstone, slot: 1, kind: KindString, key: []byte("k")},
		{op: walTombstone, slot: 1, key: []byte("k"), value: []byte("v")},
	} {
		if _, _, err := decodeWALFrame(appendWALRecord(nil, &r)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("tombstone %+v decoded: %v", r, err)
		}
	}
	// A zeroed tail (a file extended but not written) is not a record.
	if _, _, err := decodeWALFrame(make([]byte, 64)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("zeros decoded: %v", err)
	}
}

func FuzzWALRecord(f *testing.F) {
	f.Add(appendWALRecord(nil, &walRecord{op: walPut, slot: 3, kind: KindString, seq: 1, hw: 1, key: []byte("k"), value: []byte("v")}))
	f.Add(appendWALRecord(nil, &walRecord{op: walDelete, slot: 9, key: []byte("key")}))
	f.Add(appendWALRecord(nil, &walRecord{op: walFlushAll}))
	f.Add(appendWALRecord(nil, &walRecord{op: walTombstone, slot: 2, exp: 9, epoch: 1, seq: 4, hw: 4, key: []byte("t")}))
	f.Add([]byte{})
	f.Add(make([]byte, 50))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := decodeWALFrame(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if n < walFrameHdr+walPayloadHdr || n > len(b) {
			t.Fatalf("frame length %d of %d bytes", n, len(b))
		}
		if again := appendWALRecord(nil, &r); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
		// The streaming reader agrees with the frame decoder.
		seg := append(walHeader(), b...)
		sr, err := openSegment(bytes.NewReader(seg), "fuzz", int64(len(seg)))
		if err != nil {
			t.Fatal(err)
		}
		r2, err := sr.next()
		if err != nil || !reflect.DeepEqual(appendWALRecord(nil, &r2), b[:n]) {
			t.Fatalf("segment reader: %+v, %v", r2, err)
		}
	})
}

// crashImage copies the files of the open store in dir to a new directory,
// as a kill -9 would leave them (the page cache is what a restarted
// process reads). No checkpoint may be running.
func crashImage(t testing.TB, dir string) string {
	t.Helper()
	img := t.TempDir()
	if err := copyFile(filepath.Join(dir, FileName), filepath.Join(img, FileName)); err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(filepath.Join(dir, walDirName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(img, walDirName), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sg := range segs {
		name := segmentName(sg.seq)
		if err := copyFile(filepath.Join(dir, walDirName, name), filepath.Join(img, walDirName, name)); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// noCheckpoints is a Config under which no checkpoint runs before Close
// (unless Open replayed a log).
func noCheckpoints(dir string, clock *fakeClock) Config {
	return Config{Dir: dir, Fsync: FsyncAlways, CheckpointBytes: 1 << 40, CheckpointInterval: time.Hour,
		Now: clock.Now, ReapInterval: time.Hour}
}

// TestReplay writes every kind of change on top of a checkpointed file,
// takes a crash image and checks that Open rebuilds exactly the same state
// from the file and the log, and that it survives the next clean Close.
func TestReplay(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	ctx := context.Background()
	s := openStore(t, noCheckpoints(dir, clock))
	for i := range 200 {
		put(t, s, uint16(i%20), fmt.Sprint("base-", i), strings.Repeat("b", i), 0)
	}
	s = reopen(t, s, noCheckpoints(dir, clock)) // checkpointed into stash.db

	for i := range 200 {
		key := fmt.Sprint("base-", i)
		switch i % 5 {
		case 0:
			put(t, s, uint16(i%20), key, "overwritten", 0)
		case 1:
			del(t, s, uint16(i%20), key)
		case 2:
			put(t, s, uint16(i%20), key, "expiring", clock.NowMs()+60_000)
		}
	}
	for i := range 50 {
		put(t, s, 100+uint16(i%3), fmt.Sprint("new-", i), fmt.Sprint("n", i), 0)
	}
	s.Update(ctx, 100, "hash", func(Stash, bool) (Stash, Op) {
		return Stash{Kind: KindHash, Value: EncodeHash([]Field{{"a", "1"}})}, OpPut
	})
	s.Apply(ctx, 200, Stash{Key: "applied", Value: "x", Version: Version{5, 500}}, false)
	s.Apply(ctx, 201, Stash{Key: "never-held", Version: Version{5, 700}}, true)
	if err := s.DropSlot(ctx, 3); err != nil { // held base keys
		t.Fatal(err)
	}
	put(t, s, 3, "after-drop", "v", 0)
	if err := s.DropSlot(ctx, 101); err != nil { // held only logged keys
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want := snapshotAll(s)                    // tombstones included
	if n := s.Stats().Tombstones; n != 40+1 { // base-i for i%5 == 1, and never-held
		t.Fatalf("%d tombstones before the crash", n)
	}
	img := crashImage(t, dir)

	// A FlushAll in a second image, with writes after it.
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, s, 4, "after-flush", "v", 0)
	put(t, s, 201, "seq-check", "v", 0)
	wantFlushed := snapshotAll(s)
	imgFlushed := crashImage(t, dir)

	for _, tc := range []struct {
		name string
		img  string
		want map[string]Stash
	}{{"writes", img, want}, {"flushall", imgFlushed, wantFlushed}} {
		t.Run(tc.name, func(t *testing.T) {
			r := openStore(t, noCheckpoints(tc.img, clock))
			st := r.Stats()
			if st.Replayed == 0 || st.Corrupt != 0 || st.WALDiscarded != 0 {
				t.Fatalf("Stats after replay: %+v", st)
			}
			if got := snapshotAll(r); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("replayed state differs: %d entries, want %d\n%v", len(got), len(tc.want), diff(got, tc.want))
			}
			// Sequences: slot 201 was raised to 700 by a delete of nothing.
			put(t, r, 201, "seq-probe", "v", 0)
			if seq := mustGet(t, r, 201, "seq-probe").Version.Seq; seq <= 700 {
				t.Fatalf("slot 201 sequence %d after replay", seq)
			}
			waitFor(t, "the replayed log checkpointed", func() bool { return r.Stats().Checkpoints >= 1 })
			del(t, r, 201, "seq-probe")
			before := snapshotAll(r)
			r = reopen(t, r, noCheckpoints(tc.img, clock))
			if st := r.Stats(); st.Replayed != 0 {
				t.Fatalf("log replayed again after a clean Close: %+v", st)
			}
			if got := snapshotAll(r); !reflect.DeepEqual(got, before) {
				t.Fatalf("state differs after checkpoint and reopen:\n%v", diff(got, before))
			}
		})
	}
}

func diff(got, want map[string]Stash) string {
	var b strings.Builder
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			fmt.Fprintf(&b, "%s: got %+v (present %v), want %+v\n", k, g, ok, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "%s: got %+v, want absent\n", k, g)
		}
	}
	return b.String()
}

// TestWALTornTail damages the last record of the log in every way a crash
// can and checks that Open keeps every record before it.
func TestWALTornTail(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	s := openStore(t, noCheckpoints(dir, clock))
	for i := range 20 {
		put(t, s, 5, fmt.Sprint("k", i), fmt.Sprint("v", i), 0)
	}
	put(t, s, 5, "k3", "last", 0) // the last record: an overwrite
	img := crashImage(t, dir)
	seg := filepath.Join(img, walDirName, segmentName(1))
	whole, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	last := len(appendWALFrame(nil, walPut, 5, KindString, 0, 0, 0, 0, "k3", "last"))
	start := len(whole) - last // offset of the last frame

	for _, tc := range []struct {
		name string
		tail func([]byte) []byte // the damaged segment
	}{
		{"cut in header", func(b []byte) []byte { return b[:start+3] }},
		{"cut in payload", func(b []byte) []byte { return b[:len(b)-2] }},
		{"flipped value byte", func(b []byte) []byte { b[len(b)-1] ^= 0x40; return b }},
		{"zeroed", func(b []byte) []byte { clear(b[start:]); return b }},
		{"zeros appended", func(b []byte) []byte { return append(b[:start], make([]byte, 4096)...) }},
		{"huge length", func(b []byte) []byte { binary.BigEndian.PutUint32(b[start:], 1<<30); return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if err := copyFile(filepath.Join(img, FileName), filepath.Join(d, FileName)); err != nil {
				t.Fatal(err)
			}
			os.Mkdir(filepath.Join(d, walDirName), 0o755)
			path := filepath.Join(d, walDirName, segmentName(1))
			if err := os.WriteFile(path, tc.tail(bytes.Clone(whole)), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			cfg := noCheckpoints(d, clock)
			cfg.Logger = testLogger(&logs)
			r := openStore(t, cfg)
			st := r.Stats()
			if st.Replayed != 20 || st.WALDiscarded == 0 {
				t.Fatalf("Stats: %+v\n%s", st, logs.String())
			}
			if !strings.Contains(logs.String(), "torn tail") {
				t.Fatalf("torn tail not logged:\n%s", logs.String())
			}
			for i := range 20 {
				if v := mustGet(t, r, 5, fmt.Sprint("k", i)).Value; v != fmt.Sprint("v", i) {
					t.Fatalf("k%d = %q", i, v)
				}
			}

			// Replay cuts the segment at the last whole record, so that what
			// is logged after it is reachable by the next replay. (Open's
			// own checkpoint may have removed the segment by now: replay
			// another copy directly.)
			wal := filepath.Join(t.TempDir(), walDirName)
			writeSegment(t, wal, 1)
			if err := os.WriteFile(filepath.Join(wal, segmentName(1)), tc.tail(bytes.Clone(whole)), 0o600); err != nil {
				t.Fatal(err)
			}
			m := openStore(t, Config{})
			ws, _, err := m.replay(wal, 0)
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(filepath.Join(wal, segmentName(1))); err != nil || fi.Size() != int64(start) {
				t.Fatalf("segment not cut to %d bytes: %v", start, err)
			}
			if ws.w.seq != 2 || len(ws.sealed) != 1 {
				t.Fatalf("log state after replay: segment %d, sealed %v", ws.w.seq, ws.sealed)
			}
			if err := ws.w.append(appendWALFrame(nil, walPut, 5, KindString, 0, 1, 99, 99, "after", "v")); err != nil {
				t.Fatal(err)
			}
			ws.w.close()
			m2 := openStore(t, Config{})
			ws2, rep, err := m2.replay(wal, 0)
			if err != nil || rep.records != 21 || rep.discarded != 0 {
				t.Fatalf("second replay: %+v %v", rep, err)
			}
			ws2.w.close()
			mustGet(t, m2, 5, "after")
			mustGet(t, m2, 5, "k19")
			if v := mustGet(t, m2, 5, "k3").Value; v != "v3" {
				t.Fatalf("k3 = %q", v)
			}
		})
	}
}

// writeSegment writes a log segment by hand.
func writeSegment(t testing.TB, dir string, seq uint64, recs ...walRecord) {
	t.Helper()
	b := walHeader()
	for _, r := range recs {
		b = appendWALRecord(b, &r)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segmentName(seq)), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func walPutRec(slot uint16, key, val string, seq uint64) walRecord {
	return walRecord{op: walPut, slot: slot, kind: KindString, epoch: 1, seq: seq, hw: seq, key: []byte(key), value: []byte(val)}
}

func TestWALDamageInTheMiddle(t *testing.T) {
	newDir := func(t *testing.T) (string, string) {
		dir := t.TempDir()
		wal := filepath.Join(dir, walDirName)
		writeSegment(t, wal, 1, walPutRec(1, "a", "1", 1), walPutRec(1, "b", "1", 2))
		writeSegment(t, wal, 2, walPutRec(1, "a", "2", 3), walPutRec(1, "c", "2", 4))
		writeSegment(t, wal, 3, walRecord{op: walDelete, slot: 1, hw: 4, key: []byte("b")})
		return dir, wal
	}
	check := func(t *testing.T, dir string, want map[string]string, bad []string) {
		t.Helper()
		var logs syncBuffer
		s := openStore(t, Config{Dir: dir, Logger: testLogger(&logs)})
		got := map[string]string{}
		s.ScanSlot(1, func(st Stash) bool { got[st.Key] = st.Value; return true })
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("slot 1 holds %v, want %v\n%s", got, want, logs.String())
		}
		for _, name := range bad {
			if _, err := os.Stat(filepath.Join(dir, walDirName, name)); err != nil {
				t.Fatalf("%s not set aside: %v", name, err)
			}
		}
		if len(bad) > 0 && !strings.Contains(logs.String(), "level=ERROR") {
			t.Fatalf("damage not logged as an error:\n%s", logs.String())
		}
		// What Open kept is what the next Open finds (after its checkpoint).
		s = reopen(t, s, Config{Dir: dir})
		got = map[string]string{}
		s.ScanSlot(1, func(st Stash) bool { got[st.Key] = st.Value; return true })
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after reopen slot 1 holds %v, want %v", got, want)
		}
	}
	t.Run("intact", func(t *testing.T) {
		dir, _ := newDir(t)
		check(t, dir, map[string]string{"a": "2", "c": "2"}, nil)
	})
	t.Run("corrupt record", func(t *testing.T) {
		dir, wal := newDir(t)
		path := filepath.Join(wal, segmentName(2))
		b, _ := os.ReadFile(path)
		b[len(b)-1] ^= 1 // the second record of segment 2
		os.WriteFile(path, b, 0o600)
		// Replay stops before it: the delete in segment 3 is not applied.
		check(t, dir, map[string]string{"a": "2", "b": "1"}, []string{segmentName(2) + ".bad", segmentName(3) + ".bad"})
	})
	t.Run("missing segment", func(t *testing.T) {
		dir, wal := newDir(t)
		os.Remove(filepath.Join(wal, segmentName(2)))
		check(t, dir, map[string]string{"a": "1", "b": "1"}, []string{segmentName(3) + ".bad"})
	})
	t.Run("covered segments removed", func(t *testing.T) {
		dir, wal := newDir(t)
		s := openStore(t, Config{Dir: dir})
		waitFor(t, "checkpoint", func() bool { return s.Stats().Checkpoints >= 1 })
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// As if the checkpoint crashed after committing, before removing.
		writeSegment(t, wal, 2, walPutRec(1, "a", "stale", 3))
		check(t, dir, map[string]string{"a": "2", "c": "2"}, nil)
	})
	t.Run("newer format", func(t *testing.T) {
		dir, wal := newDir(t)
		path := filepath.Join(wal, segmentName(1))
		b, _ := os.ReadFile(path)
		binary.BigEndian.PutUint32(b[4:], walVersion+1)
		os.WriteFile(path, b, 0o600)
		if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrFormat) {
			t.Fatalf("Open with a newer log format: %v", err)
		}
	})
}

// TestCheckpoints runs with a tiny CheckpointBytes: the log is checkpointed
// and removed as it grows, and a crash image taken while writes go on
// (with checkpoints between) holds every write.
func TestCheckpoints(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	cfg := Config{Dir: dir, Fsync: FsyncBatch, BatchInterval: time.Millisecond, CheckpointBytes: 16 << 10, Now: clock.Now}
	s := openStore(t, cfg)
	ctx := context.Background()
	val := strings.Repeat("x", 1000)
	for i := range 500 {
		put(t, s, uint16(i%7), fmt.Sprint("k", i%200), fmt.Sprint(i, val), 0)
		if i%50 == 49 {
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.DropSlot(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want := snapshot(s)
	waitFor(t, "checkpoints", func() bool { st := s.Stats(); return st.Checkpoints >= 3 && st.WALBytes < 64<<10 })
	segs, err := listSegments(filepath.Join(dir, walDirName))
	if err != nil || len(segs) > 3 {
		t.Fatalf("%d segments left: %v", len(segs), err)
	}
	s = reopen(t, s, cfg)
	if got := snapshot(s); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after checkpoints and reopen:\n%v", diff(got, want))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := listSegments(filepath.Join(dir, walDirName)); len(segs) != 0 {
		t.Fatalf("Close left %d log segments", len(segs))
	}
}

func TestFormat1Upgraded(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	put(t, s, 1, "a", "v", 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	format := func(v uint32) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if v != 0 {
				return meta.Put(metaFormat, binary.BigEndian.AppendUint32(nil, v))
			}
			if got := binary.BigEndian.Uint32(meta.Get(metaFormat)); got != formatVersion {
				t.Errorf("format %d after Open, want %d", got, formatVersion)
			}
			return nil
		}
	}
	withBolt(t, dir, format(1))
	s = openStore(t, Config{Dir: dir})
	mustGet(t, s, 1, "a")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	withBolt(t, dir, format(0))
}

// TestLogLimit checks the log limit: with one writer under FsyncAlways,
// every Update returns with the log within its limit; a flood of writers
// under FsyncBatch, faster than tiny checkpoints, is held back.
func TestLogLimit(t *testing.T) {
	const ckpt = 4 << 10
	val := strings.Repeat("v", 1000)
	t.Run("bound", func(t *testing.T) {
		s := openStore(t, Config{Dir: t.TempDir(), Fsync: FsyncAlways, CheckpointBytes: ckpt, CheckpointInterval: time.Hour})
		for i := range 300 {
			put(t, s, uint16(i%50), fmt.Sprint("k", i), val, 0)
			if n := s.Stats().WALBytes; n > walCapFactor*ckpt {
				t.Fatalf("write %d returned with %d bytes of log (limit %d)", i, n, walCapFactor*ckpt)
			}
		}
	})
	t.Run("flood", func(t *testing.T) {
		s := openStore(t, Config{Dir: t.TempDir(), Fsync: FsyncBatch, BatchInterval: time.Millisecond, CheckpointBytes: ckpt, CheckpointInterval: time.Hour})
		deadline := time.Now().Add(10 * time.Second)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; s.Stats().Stalls == 0 && time.Now().Before(deadline); i++ {
					put(t, s, uint16(w), fmt.Sprint("k", i%200), val, 0)
				}
			}()
		}
		wg.Wait()
		if err := s.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Stalls == 0 || st.Checkpoints == 0 {
			t.Fatalf("writers were not held back: %+v", st)
		}
	})
}

// TestCheckpointFailure pulls stash.db from under the checkpointer: the
// checkpoints fail, writers are not held back although the log outgrows
// its limit, and the log, replayed by the next Open, still holds every
// write.
func TestCheckpointFailure(t *testing.T) {
	dir := t.TempDir()
	var logs syncBuffer
	s, err := Open(Config{Dir: dir, Fsync: FsyncAlways, CheckpointBytes: 4 << 10, CheckpointInterval: time.Hour, Logger: testLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	val := strings.Repeat("v", 1000)
	for i := range 100 {
		put(t, s, uint16(i%7), fmt.Sprint("k", i), val, 0)
	}
	st := s.Stats()
	if st.CheckpointFailed == 0 || st.Checkpoints != 0 || st.WALBytes < 100_000 {
		t.Fatalf("Stats with failing checkpoints: %+v", st)
	}
	if !strings.Contains(logs.String(), "checkpoint failed") {
		t.Fatalf("failure not logged:\n%s", logs.String())
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close with a failing final checkpoint returned nil")
	}
	s = openStore(t, Config{Dir: dir})
	if st := s.Stats(); st.Replayed != 100 || st.Stashes != 100 {
		t.Fatalf("Stats after reopen: %+v", st)
	}
}

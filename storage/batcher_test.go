package storage

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRequeue(t *testing.T) {
	w := func(v string) wval { return wval{val: v} }
	k := func(slot uint16, key string) wkey { return wkey{slot, key} }
	cases := []struct {
		name      string
		old, cur  batch
		wantW     map[wkey]wval
		wantDrops []uint16
		wantFlush bool
	}{
		{
			name:  "newer write wins",
			old:   batch{writes: map[wkey]wval{k(1, "a"): w("old"), k(1, "b"): w("old")}},
			cur:   batch{writes: map[wkey]wval{k(1, "a"): w("new")}},
			wantW: map[wkey]wval{k(1, "a"): w("new"), k(1, "b"): w("old")},
		},
		{
			name:      "later drop discards old writes of its slot",
			old:       batch{writes: map[wkey]wval{k(1, "a"): w("old"), k(2, "b"): w("old")}},
			cur:       batch{writes: map[wkey]wval{k(1, "c"): w("new")}, drops: map[uint16]struct{}{1: {}}},
			wantW:     map[wkey]wval{k(1, "c"): w("new"), k(2, "b"): w("old")},
			wantDrops: []uint16{1},
		},
		{
			name:      "old drop kept",
			old:       batch{writes: map[wkey]wval{k(3, "a"): w("old")}, drops: map[uint16]struct{}{3: {}}},
			cur:       batch{writes: map[wkey]wval{}},
			wantW:     map[wkey]wval{k(3, "a"): w("old")},
			wantDrops: []uint16{3},
		},
		{
			name:  "later flush discards everything old",
			old:   batch{writes: map[wkey]wval{k(1, "a"): w("old")}, drops: map[uint16]struct{}{4: {}}, flushAll: true},
			cur:   batch{writes: map[wkey]wval{k(2, "x"): w("new")}, flushAll: true},
			wantW: map[wkey]wval{k(2, "x"): w("new")}, wantFlush: true,
		},
		{
			name:  "old flush kept",
			old:   batch{writes: map[wkey]wval{k(1, "a"): w("old")}, flushAll: true},
			cur:   batch{writes: map[wkey]wval{}},
			wantW: map[wkey]wval{k(1, "a"): w("old")}, wantFlush: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur := tc.cur
			if !cur.empty() {
				cur.first = time.Now() // as touch sets it
			}
			bt := &batcher{cur: &cur}
			bt.requeue(&tc.old)
			if len(cur.writes) != len(tc.wantW) {
				t.Fatalf("writes %v, want %v", cur.writes, tc.wantW)
			}
			for k, v := range tc.wantW {
				if cur.writes[k] != v {
					t.Fatalf("%v = %v, want %v", k, cur.writes[k], v)
				}
			}
			if len(cur.drops) != len(tc.wantDrops) {
				t.Fatalf("drops %v, want %v", cur.drops, tc.wantDrops)
			}
			for _, d := range tc.wantDrops {
				if _, ok := cur.drops[d]; !ok {
					t.Fatalf("drop %d missing", d)
				}
			}
			if cur.flushAll != tc.wantFlush || cur.first.IsZero() {
				t.Fatalf("flushAll %v first %v", cur.flushAll, cur.first)
			}
		})
	}
}

func TestCommitFailureIsReported(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, Fsync: FsyncAlways, BatchInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, 1, "ok", "v", 0)
	// Pull the log from under the committer: every append now fails. (The
	// committer touches the file again only after this Update enqueues.)
	if err := s.bt.wal.f.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	op, err := s.Update(ctx, 1, "k", func(Stash, bool) (Stash, Op) { return Stash{Value: "v"}, OpPut })
	if op != OpPut || !errors.Is(err, ErrCommit) {
		t.Fatalf("Update = %v, %v; want OpPut and ErrCommit", op, err)
	}
	mustGet(t, s, 1, "k") // memory keeps serving
	if err := s.Sync(ctx); !errors.Is(err, ErrCommit) {
		t.Fatalf("Sync = %v", err)
	}
	waitFor(t, "failed commits counted", func() bool { return s.Stats().Failed >= 2 })
	if st := s.Stats(); st.Pending != 1 {
		t.Fatalf("failed write not kept for retry: %+v", st)
	}
	// Close's checkpoint reads memory: the write the log refused reaches
	// stash.db all the same.
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	s = openStore(t, Config{Dir: dir})
	mustGet(t, s, 1, "ok")
	mustGet(t, s, 1, "k")
	if st := s.Stats(); st.Replayed != 0 {
		t.Fatalf("log left after Close: %+v", st)
	}
}

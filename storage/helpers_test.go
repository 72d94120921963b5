package storage

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(1_700_000_000_000)
	return c
}

func (c *fakeClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) NowMs() int64            { return c.ms.Load() }
func (c *fakeClock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// openStore opens a Store and closes it at the end of the test.
func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// put stores value under key with the given expiry (0 = never).
func put(t testing.TB, s *Store, slot uint16, key, value string, exp int64) {
	t.Helper()
	op, err := s.Update(context.Background(), slot, key, func(Stash, bool) (Stash, Op) {
		return Stash{Kind: KindString, Value: value, ExpireAt: exp}, OpPut
	})
	if err != nil || op != OpPut {
		t.Fatalf("put %q: op %v err %v", key, op, err)
	}
}

// del deletes key and returns the Op applied.
func del(t testing.TB, s *Store, slot uint16, key string) Op {
	t.Helper()
	op, err := s.Update(context.Background(), slot, key, func(Stash, bool) (Stash, Op) {
		return Stash{}, OpDelete
	})
	if err != nil {
		t.Fatalf("delete %q: %v", key, err)
	}
	return op
}

// mustGet returns the value of key, failing the test if it is missing.
func mustGet(t testing.TB, s *Store, slot uint16, key string) Stash {
	t.Helper()
	st, ok := s.Get(slot, key)
	if !ok {
		t.Fatalf("Get(%d, %q): missing", slot, key)
	}
	return st
}

// waitFor polls cond until it holds, failing the test after a timeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// syncBuffer is an io.Writer safe for concurrent use, for captured logs.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// testLogger returns a logger writing text to buf.
func testLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// readLog returns the records of every log segment in dir, in order, up to
// the first bad frame. Keys and values are copies.
func readLog(t testing.TB, dir string) []walRecord {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var recs []walRecord
	for _, sg := range segs {
		b, err := os.ReadFile(filepath.Join(dir, segmentName(sg.seq)))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < walHdrLen {
			t.Fatalf("segment %d: %d bytes", sg.seq, len(b))
		}
		for b = b[walHdrLen:]; len(b) > 0; {
			r, n, err := decodeWALFrame(b)
			if err != nil {
				return recs
			}
			r.key, r.value = bytes.Clone(r.key), bytes.Clone(r.value)
			recs = append(recs, r)
			b = b[n:]
		}
	}
	return recs
}

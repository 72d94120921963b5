// Package testlog gives tests a logger whose output is shown only when
// the test fails: nodes log a lot, and a passing test should stay quiet.
package testlog

import (
	"bytes"
	"log/slog"
	"os"
	"sync"
	"testing"
)

// buffer collects a test's logs.
type buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// New returns a logger whose lines go to tb's log, under the heading
// what, if tb fails (always with STASH_TEST_LOGS set; STASH_TEST_DEBUG
// adds debug lines). Call it before starting what logs to it, so that
// its cleanup runs after theirs.
func New(tb testing.TB, what string) *slog.Logger {
	tb.Helper()
	b := &buffer{}
	tb.Cleanup(func() {
		if tb.Failed() || os.Getenv("STASH_TEST_LOGS") != "" {
			b.mu.Lock()
			tb.Logf("%s:\n%s", what, b.buf.String())
			b.mu.Unlock()
		}
	})
	level := slog.LevelInfo
	if os.Getenv("STASH_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: level}))
}

// Package testlock lets the heaviest tests of different packages take
// turns: `go test ./...` runs packages in parallel, and a test that
// measures latency under faults (the rolling-deploy test) must not share
// two cores with a jepsen scenario that runs five nodes of its own.
package testlock

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Heavy blocks until no other heavy test of this machine runs, then holds
// the turn until tb ends.
func Heavy(tb testing.TB) {
	tb.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "stash-heavy-tests.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		tb.Fatalf("testlock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		tb.Fatalf("testlock: %v", err)
	}
	tb.Cleanup(func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

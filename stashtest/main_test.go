package stashtest_test

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain fails the run if the tests leave goroutines behind: every
// member, stream and timer must be gone once their tests' cleanups ran.
func TestMain(m *testing.M) {
	base := len(goroutines())
	code := m.Run()
	start := time.Now()
	left := goroutines()
	for len(left) > base && time.Since(start) < 10*time.Second {
		time.Sleep(50 * time.Millisecond)
		left = goroutines()
	}
	if len(left) > base {
		fmt.Fprintf(os.Stderr, "stashtest: %d goroutines left behind (%d before the tests):\n\n%s\n",
			len(left), base, bytes.Join(left, []byte("\n\n")))
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// goroutines returns the stacks of the live goroutines.
func goroutines() [][]byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return bytes.Split(buf, []byte("\n\n"))
}

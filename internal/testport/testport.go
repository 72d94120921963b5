// Package testport hands tests loopback ports to bind later.
//
// A port found by listening on port 0 and closing again comes from the
// kernel's ephemeral range, the same range outgoing connections take
// their local ports from: between the pick and the bind, any connection
// on the machine (another test package running alongside) may take it.
// Free picks below that range instead, where only explicit binds land.
//
// Test packages run in parallel, each in a process of its own. So that
// two of them never pick the same port between one's pick and its bind,
// the range is cut into stripes and each process claims one (a lock file
// per stripe in os.TempDir, held until the process exits). Within a
// process, no port is handed out twice.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// floor is the lowest port Free considers: above the well-known and
// commonly configured service ports.
const floor = 10000

// stripes is how many parts the range is cut into: more than the test
// processes `go test ./...` runs at once on any machine this runs on.
const stripes = 16

var (
	mu     sync.Mutex
	given  map[int]bool
	lo, hi int      // this process's stripe, once claimed
	held   *os.File // the stripe's lock, released when the process exits
)

// Free returns a port on 127.0.0.1 that is free for both TCP and UDP
// (memberlist binds both), outside the ephemeral range, in this
// process's stripe, and not returned before.
func Free(tb testing.TB) int {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if hi == 0 {
		lo, hi, held = claim()
		given = make(map[int]bool)
	}
	for range 500 {
		port := lo + rand.IntN(hi-lo+1)
		if !given[port] && free(port) {
			given[port] = true
			return port
		}
	}
	tb.Fatalf("testport: no free TCP+UDP port in %d-%d", lo, hi)
	return 0
}

// claim locks a stripe for this process and returns its bounds and the
// lock file to keep open; if every stripe is taken (or locking fails),
// the whole range and nil.
func claim() (int, int, *os.File) {
	top := ephemeralLow() - 1
	if top <= floor {
		top = 65535
	}
	width := (top - floor + 1) / stripes
	first := os.Getpid()
	for i := range stripes {
		n := (first + i) % stripes
		f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("stash-testport-%d.lock", n)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			break
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			return floor + n*width, floor + (n+1)*width - 1, f
		}
		f.Close()
	}
	return floor, top, nil
}

func free(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range, or the
// IANA default where the kernel does not say.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 49152
}

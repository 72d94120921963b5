// Package testport hands tests loopback ports to bind later.
//
// A port found by listening on port 0 and closing again comes from the
// kernel's ephemeral range, the same range outgoing connections take
// their local ports from: between the pick and the bind, any connection
// on the machine (another test package running alongside) may take it.
// Free picks below that range instead, where only explicit binds land.
package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// floor is the lowest port Free considers: above the well-known and
// commonly configured service ports.
const floor = 10000

// Free returns a port on 127.0.0.1 that is free for both TCP and UDP
// (memberlist binds both) and outside the ephemeral range.
func Free(tb testing.TB) int {
	tb.Helper()
	hi := ephemeralLow() - 1
	if hi <= floor {
		hi = 65535
	}
	for range 200 {
		port := floor + rand.IntN(hi-floor+1)
		if free(port) {
			return port
		}
	}
	tb.Fatal("testport: no free TCP+UDP port")
	return 0
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

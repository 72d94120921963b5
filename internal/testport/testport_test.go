package testport

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeIsBindableAndBelowEphemeral(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		p := Free(t)
		if p < floor || (low > floor && p >= low) {
			t.Fatalf("port %d outside [%d, %d)", p, floor, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("Free gave %d, which does not bind: %v", p, err)
		}
		l.Close()
	}
}

func TestFreeSkipsTakenPorts(t *testing.T) {
	p := Free(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if free(p) {
		t.Fatalf("free(%d) with a listener on it", p)
	}
}

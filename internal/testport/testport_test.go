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

func TestFreeNeverRepeats(t *testing.T) {
	seen := make(map[int]bool)
	for range 300 {
		p := Free(t)
		if seen[p] {
			t.Fatalf("Free gave %d twice", p)
		}
		seen[p] = true
	}
}

func TestStripesOfTwoProcessesDiffer(t *testing.T) {
	Free(t) // this process has claimed its stripe
	l1, h1 := lo, hi
	if held == nil {
		t.Fatal("no stripe lock was taken")
	}
	// A second claim in this process stands for another process: the
	// lock is per open file, so this process's own stripe is busy to it.
	l2, h2, f := claim()
	if f == nil {
		t.Fatal("the second claim took no stripe")
	}
	defer f.Close()
	if l2 <= h1 && l1 <= h2 {
		t.Fatalf("second claim %d-%d overlaps the first %d-%d", l2, h2, l1, h1)
	}
}

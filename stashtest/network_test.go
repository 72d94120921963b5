package stashtest_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stashcluster/stash/stashtest"
)

// pair returns both ends of a stream from host a to a listener on b.
func pair(t *testing.T, a, b *stashtest.Host) (client, server net.Conn) {
	t.Helper()
	ln, err := b.Listen("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err = a.Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// packets returns a packet endpoint on each of a and b.
func packets(t *testing.T, a, b *stashtest.Host) (pa, pb net.PacketConn) {
	t.Helper()
	var err error
	if pa, err = a.ListenPacket(a.Addr(7946)); err != nil {
		t.Fatal(err)
	}
	if pb, err = b.ListenPacket(b.Addr(7946)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pa.Close(); pb.Close() })
	return pa, pb
}

// arrives reports whether a packet sent from from reaches to within d.
func arrives(t *testing.T, from, to net.PacketConn, d time.Duration) bool {
	t.Helper()
	if _, err := from.WriteTo([]byte("ping"), to.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	to.SetReadDeadline(time.Now().Add(d))
	defer to.SetReadDeadline(time.Time{})
	buf := make([]byte, 16)
	n, src, err := to.ReadFrom(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if err != nil || string(buf[:n]) != "ping" || src.String() != from.LocalAddr().String() {
		t.Fatalf("ReadFrom = %q from %v, %v", buf[:n], src, err)
	}
	return true
}

// flows reports whether bytes written on w can be read on r within d.
// Bytes that do not arrive in time stay in the stream: the next read
// gets them first.
func flows(t *testing.T, w, r net.Conn, msg string, d time.Duration) bool {
	t.Helper()
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	return reads(t, r, msg, d)
}

func reads(t *testing.T, r net.Conn, msg string, d time.Duration) bool {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(d))
	defer r.SetReadDeadline(time.Time{})
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(r, buf)
	if errors.Is(err, os.ErrDeadlineExceeded) && n == 0 {
		return false
	}
	if err != nil || string(buf) != msg {
		t.Fatalf("read %q, %v; want %q", buf[:n], err, msg)
	}
	return true
}

func TestStreamBasics(t *testing.T) {
	nw := stashtest.NewNetwork()
	a, b := nw.Host("a"), nw.Host("b")
	if a.IP().String() != "10.0.0.1" || b.Addr(80) != "10.0.0.2:80" || nw.Host("a") != a {
		t.Fatalf("addresses: a %v, b %v", a.IP(), b.Addr(80))
	}
	c, s := pair(t, a, b)
	if !flows(t, c, s, "hello", time.Second) || !flows(t, s, c, "world", time.Second) {
		t.Fatal("no flow on a healthy network")
	}
	if c.LocalAddr().(*net.TCPAddr).IP.String() != "10.0.0.1" || s.LocalAddr().String() != c.RemoteAddr().String() {
		t.Fatalf("addrs: client %v → %v, server %v", c.LocalAddr(), c.RemoteAddr(), s.LocalAddr())
	}
	// Writes are buffered: several before any read.
	for range 100 {
		if _, err := c.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := io.ReadFull(s, make([]byte, 100_000)); n != 100_000 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	// Close: the peer reads what was written, then EOF; it cannot write.
	c.Write([]byte("bye"))
	c.Close()
	if b, err := io.ReadAll(s); string(b) != "bye" || err != nil {
		t.Fatalf("after close: %q, %v", b, err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, stashtest.ErrReset) {
		t.Fatalf("write to a closed peer: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}

	// A deadline in the past fails at once; one that passes wakes a
	// blocked read.
	c2, _ := pair(t, a, b)
	c2.SetReadDeadline(time.Unix(1, 0))
	if _, err := c2.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past deadline: %v", err)
	}
	var ne net.Error
	c2.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c2.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("deadline: %v", err)
	}

	// Errors of the dialing side.
	ctx := context.Background()
	if _, err := a.Dial(ctx, b.Addr(1)); !errors.Is(err, stashtest.ErrRefused) {
		t.Fatalf("dial without listener: %v", err)
	}
	if _, err := a.Dial(ctx, "10.9.9.9:1"); !errors.Is(err, stashtest.ErrUnreachable) {
		t.Fatalf("dial nowhere: %v", err)
	}
	ln, err := b.Listen("127.0.0.1:7380")
	if err != nil || ln.Addr().String() != "10.0.0.2:7380" {
		t.Fatalf("listen on loopback: %v, %v", ln, err)
	}
	if _, err := b.Listen(b.Addr(7380)); !errors.Is(err, stashtest.ErrInUse) {
		t.Fatalf("second listen: %v", err)
	}
	if _, err := b.Listen(a.Addr(7381)); !errors.Is(err, stashtest.ErrAddr) {
		t.Fatalf("listen on another host's address: %v", err)
	}
	ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after close: %v", err)
	}
	if _, err := a.Dial(ctx, b.Addr(7380)); !errors.Is(err, stashtest.ErrRefused) {
		t.Fatalf("dial a closed listener: %v", err)
	}
}

func TestPartition(t *testing.T) {
	nw := stashtest.NewNetwork()
	a, b, c := nw.Host("a"), nw.Host("b"), nw.Host("c")
	ca, sb := pair(t, a, b)
	cb, sc := pair(t, b, c)
	pa, pb := packets(t, a, b)
	const short = 50 * time.Millisecond

	nw.Partition([]string{"a"}) // {a} | {b, c}
	if nw.Reachable("a", "b") || nw.Reachable("b", "a") || !nw.Reachable("b", "c") {
		t.Fatal("Reachable does not follow the partition")
	}
	if arrives(t, pa, pb, short) || arrives(t, pb, pa, short) {
		t.Fatal("a packet crossed the partition")
	}
	// Both directions of an existing stream stall; b–c still flows.
	if flows(t, ca, sb, "to-b", short) || flows(t, sb, ca, "to-a", short) {
		t.Fatal("stream data crossed the partition")
	}
	if !flows(t, cb, sc, "same-side", time.Second) {
		t.Fatal("stream inside a group does not flow")
	}
	// A new stream waits for the link, until its context ends.
	ln, err := b.Listen(b.Addr(9000))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), short)
	_, err = a.Dial(ctx, b.Addr(9000))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial across the partition: %v", err)
	}

	dialed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := a.Dial(ctx, b.Addr(9000))
		if err == nil {
			conn.Close()
		}
		dialed <- err
	}()
	time.Sleep(short)
	nw.Heal()
	// The stalled bytes arrive, in order, and new traffic follows.
	if !reads(t, sb, "to-b", time.Second) || !reads(t, ca, "to-a", time.Second) {
		t.Fatal("stalled stream data lost after Heal")
	}
	if !flows(t, ca, sb, "again", time.Second) || !arrives(t, pa, pb, time.Second) {
		t.Fatal("no flow after Heal")
	}
	if err := <-dialed; err != nil {
		t.Fatalf("dial waiting across the partition, after Heal: %v", err)
	}
}

func TestBlockIsOneWay(t *testing.T) {
	nw := stashtest.NewNetwork()
	a, b := nw.Host("a"), nw.Host("b")
	ca, sb := pair(t, a, b)
	pa, pb := packets(t, a, b)
	const short = 50 * time.Millisecond

	nw.Block("a", "b")
	if arrives(t, pa, pb, short) {
		t.Fatal("a packet went a → b through the block")
	}
	if !arrives(t, pb, pa, time.Second) {
		t.Fatal("a packet b → a was dropped")
	}
	if flows(t, ca, sb, "a-to-b", short) {
		t.Fatal("stream data went a → b through the block")
	}
	if !flows(t, sb, ca, "b-to-a", time.Second) {
		t.Fatal("stream data b → a stalled")
	}
	ctx, cancel := context.WithTimeout(context.Background(), short)
	defer cancel()
	ln, _ := a.Listen(a.Addr(9000))
	defer ln.Close()
	if _, err := b.Dial(ctx, a.Addr(9000)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial b → a needs a → b too: %v", err)
	}
	nw.Unblock("a", "b")
	if !reads(t, sb, "a-to-b", time.Second) || !arrives(t, pa, pb, time.Second) {
		t.Fatal("no flow after Unblock")
	}
}

func TestDelay(t *testing.T) {
	nw := stashtest.NewNetwork()
	a, b := nw.Host("a"), nw.Host("b")
	ca, sb := pair(t, a, b)
	pa, pb := packets(t, a, b)
	const d = 100 * time.Millisecond
	nw.SetDelay(d)

	start := time.Now()
	if !arrives(t, pa, pb, 5*time.Second) {
		t.Fatal("delayed packet lost")
	}
	if took := time.Since(start); took < d {
		t.Fatalf("packet took %v, delay is %v", took, d)
	}
	start = time.Now()
	if !flows(t, ca, sb, "slow", 5*time.Second) {
		t.Fatal("delayed stream data lost")
	}
	if took := time.Since(start); took < d {
		t.Fatalf("stream write took %v to arrive, delay is %v", took, d)
	}
	ln, _ := b.Listen(b.Addr(9000))
	defer ln.Close()
	start = time.Now()
	conn, err := a.Dial(context.Background(), b.Addr(9000))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if took := time.Since(start); took < 2*d {
		t.Fatalf("dial took %v, round trip is %v", took, 2*d)
	}
	// Traffic within a host is never delayed.
	la, _ := a.Listen(a.Addr(9001))
	defer la.Close()
	start = time.Now()
	if conn, err = a.Dial(context.Background(), a.Addr(9001)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if took := time.Since(start); took >= d {
		t.Fatalf("dial to self took %v", took)
	}
	nw.SetDelay(0)
	if !flows(t, ca, sb, "fast", d/2) {
		t.Fatal("SetDelay(0) still delays")
	}
}

func TestDrop(t *testing.T) {
	nw := stashtest.NewNetwork()
	nw.Seed(42)
	a, b := nw.Host("a"), nw.Host("b")
	pa, pb := packets(t, a, b)

	nw.SetDrop(0.5)
	const sent = 400
	for range sent {
		pa.WriteTo([]byte("x"), pb.LocalAddr())
	}
	got := 0
	for {
		pb.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := pb.ReadFrom(make([]byte, 1)); err != nil {
			break
		}
		got++
	}
	if got < sent/4 || got > sent*3/4 {
		t.Fatalf("drop 0.5: %d of %d packets arrived", got, sent)
	}

	// A drop on a stream resets it: both ends fail.
	nw.SetDrop(0)
	ca, sb := pair(t, a, b)
	nw.SetDrop(1)
	if _, err := ca.Write([]byte("x")); !errors.Is(err, stashtest.ErrReset) {
		t.Fatalf("write under drop 1: %v", err)
	}
	if _, err := sb.Read(make([]byte, 1)); !errors.Is(err, stashtest.ErrReset) {
		t.Fatalf("read of a reset stream: %v", err)
	}
	if arrives(t, pa, pb, 50*time.Millisecond) {
		t.Fatal("packet arrived under drop 1")
	}
	nw.SetDrop(0)
	c2, s2 := pair(t, a, b)
	if !flows(t, c2, s2, "ok", time.Second) || !arrives(t, pa, pb, time.Second) {
		t.Fatal("no flow after SetDrop(0)")
	}
}

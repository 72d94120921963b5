package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var testSecret = []byte("0123456789abcdef-test-secret")

// openMux starts a Mux on a fresh 127.0.0.1 port; cleanup closes it.
func openMux(tb testing.TB, secret []byte, kinds ...Kind) *Mux {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Secret = secret
	cfg.Kinds = kinds
	cfg.HandshakeTimeout = 2 * time.Second
	m, err := Open(ln, cfg)
	if err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

func dialer(tb testing.TB, secret []byte) *Dialer {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.Secret = secret
	d, err := NewDialer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// waitStats polls m's counters until ok accepts them.
func waitStats(tb testing.TB, m *Mux, ok func(Stats) bool) Stats {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := m.Stats()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("stats never matched: %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// acceptOne accepts one stream from l in the background.
func acceptOne(l net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func TestHandshakeAndDispatch(t *testing.T) {
	m := openMux(t, testSecret, KindRaft, KindData)
	raftCh := acceptOne(m.Listener(KindRaft))
	dataCh := acceptOne(m.Listener(KindData))
	d := dialer(t, testSecret)

	for _, tc := range []struct {
		kind Kind
		ch   <-chan net.Conn
		msg  string
	}{{KindData, dataCh, "data stream"}, {KindRaft, raftCh, "raft stream"}} {
		c, err := d.Dial(ctxT(t), m.Addr().String(), tc.kind)
		if err != nil {
			t.Fatalf("Dial %v: %v", tc.kind, err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		var s net.Conn
		select {
		case s = <-tc.ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%v stream not dispatched", tc.kind)
		}
		if s == nil {
			t.Fatalf("%v: Accept failed", tc.kind)
		}
		defer s.Close()
		buf := make([]byte, len(tc.msg))
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != tc.msg {
			t.Fatalf("%v: read %q, %v; want %q", tc.kind, buf, err, tc.msg)
		}
		// And the other way.
		s.Write([]byte("pong"))
		if _, err := io.ReadFull(c, buf[:4]); err != nil || string(buf[:4]) != "pong" {
			t.Fatalf("%v: reply %q, %v", tc.kind, buf[:4], err)
		}
	}
	if st := waitStats(t, m, func(s Stats) bool { return s.Accepted == 2 }); st != (Stats{Accepted: 2}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestWrongSecretRejected(t *testing.T) {
	m := openMux(t, testSecret, KindData)
	got := acceptOne(m.Listener(KindData))
	_, err := dialer(t, []byte("another secret, 16+ bytes")).Dial(ctxT(t), m.Addr().String(), KindData)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("Dial with wrong secret: %v, want ErrAuth", err)
	}
	waitStats(t, m, func(s Stats) bool { return s.BadAuth == 1 })

	// The Mux on the other side of a wrong secret also refuses a dialer
	// that ignores the listener's failed proof: simulate it by hand.
	c, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := hello{kind: KindData}
	c.Write(h.encode())
	var ch [challengeLen]byte
	if _, err := io.ReadFull(c, ch[:]); err != nil {
		t.Fatal(err)
	}
	c.Write(bytes.Repeat([]byte{7}, macLen))
	if n, err := c.Read(ch[:1]); err == nil {
		t.Fatalf("forged proof accepted: read %d bytes", n)
	}
	waitStats(t, m, func(s Stats) bool { return s.BadAuth == 2 })

	// Still serving the right secret.
	c2, err := m.Dial(ctxT(t), m.Addr().String(), KindData)
	if err != nil {
		t.Fatalf("Dial after rejections: %v", err)
	}
	c2.Close()
	if s := <-got; s == nil {
		t.Fatal("no stream after rejections")
	} else {
		s.Close()
	}
}

func TestGarbageRejected(t *testing.T) {
	m := openMux(t, testSecret, KindData)
	for _, junk := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("x", 64), // another protocol
		"STSH\x02D" + strings.Repeat("n", 32),                         // future version
		"*1\r\n$4\r\nPING\r\n",                                        // RESP, short: read hits EOF
	} {
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(junk))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 64)); err == nil || n > 0 {
			t.Fatalf("junk %q: got %d bytes, %v; want the connection closed", junk[:8], n, err)
		}
		c.Close()
	}
	waitStats(t, m, func(s Stats) bool { return s.BadHeader == 3 })

	// Unknown kind: closed before any challenge.
	_, err := m.Dial(ctxT(t), m.Addr().String(), KindRaft)
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("Dial unknown kind: %v, want ErrRejected", err)
	}
	waitStats(t, m, func(s Stats) bool { return s.UnknownKind == 1 })
}

func TestSlowHandshakeTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Secret = testSecret
	cfg.Kinds = []Kind{KindData}
	cfg.HandshakeTimeout = 100 * time.Millisecond
	m, err := Open(ln, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("STSH\x01")) // then nothing
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("slow handshake not closed")
	}
	waitStats(t, m, func(s Stats) bool { return s.Timeout == 1 })
}

func TestCloseSemantics(t *testing.T) {
	m := openMux(t, testSecret, KindRaft, KindData)
	if m.Listener('X') != nil {
		t.Fatal("Listener of an unserved kind is not nil")
	}
	raft, data := m.Listener(KindRaft), m.Listener(KindData)
	if raft.Addr().String() != m.Addr().String() {
		t.Fatalf("kind listener Addr %v, mux %v", raft.Addr(), m.Addr())
	}

	// Closing one kind: its Accept returns net.ErrClosed, later streams of
	// that kind are refused, the other kind still works.
	accErr := make(chan error, 1)
	go func() { _, err := raft.Accept(); accErr <- err }()
	if err := raft.Close(); err != nil {
		t.Fatal(err)
	}
	if err := raft.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := <-accErr; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if _, err := m.Dial(ctxT(t), m.Addr().String(), KindRaft); !errors.Is(err, ErrRejected) {
		t.Fatalf("Dial to a closed kind: %v, want ErrRejected", err)
	}
	got := acceptOne(data)
	c, err := m.Dial(ctxT(t), m.Addr().String(), KindData)
	if err != nil {
		t.Fatalf("Dial data after raft closed: %v", err)
	}
	s := <-got
	if s == nil {
		t.Fatal("data stream not delivered")
	}

	// Closing the Mux: Accept fails, handed-out streams survive, Dial
	// through it fails, a connection in its handshake is closed.
	half, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte("ST"))
	waitPending(t, m, 1)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := data.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Mux Close: %v", err)
	}
	if _, err := m.Dial(ctxT(t), "127.0.0.1:1", KindData); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial after Close: %v", err)
	}
	half.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := half.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection in handshake survived Close")
	}
	c.Write([]byte("still here"))
	buf := make([]byte, 10)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "still here" {
		t.Fatalf("handed-out stream after Close: %q, %v", buf, err)
	}
	c.Close()
	s.Close()
}

func waitPending(tb testing.TB, m *Mux, n int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.mu.Lock()
		k := len(m.pending)
		m.mu.Unlock()
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d handshakes pending, want %d", k, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Many concurrent dials of both kinds all arrive at the right listener.
func TestConcurrentDials(t *testing.T) {
	m := openMux(t, testSecret, KindRaft, KindData)
	const n = 20
	var wg sync.WaitGroup
	counts := map[Kind]int{}
	var mu sync.Mutex
	for _, k := range []Kind{KindRaft, KindData} {
		l := m.Listener(k)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				c, err := l.Accept()
				if err != nil {
					t.Error(err)
					return
				}
				b := make([]byte, 1)
				io.ReadFull(c, b)
				mu.Lock()
				if Kind(b[0]) == k {
					counts[k]++
				}
				mu.Unlock()
				c.Close()
			}
		}()
	}
	d := dialer(t, testSecret)
	var dw sync.WaitGroup
	for i := range 2 * n {
		k := KindRaft
		if i%2 == 1 {
			k = KindData
		}
		dw.Add(1)
		go func() {
			defer dw.Done()
			c, err := d.Dial(ctxT(t), m.Addr().String(), k)
			if err != nil {
				t.Error(err)
				return
			}
			c.Write([]byte{byte(k)})
			c.Close()
		}()
	}
	dw.Wait()
	wg.Wait()
	if counts[KindRaft] != n || counts[KindData] != n {
		t.Fatalf("dispatched %v, want %d each", counts, n)
	}
}

func TestDialContextCanceled(t *testing.T) {
	// A listener that accepts and never answers: Dial must give up with
	// the context.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = dialer(t, testSecret).Dial(ctx, ln.Addr().String(), KindData)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a mute listener: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Dial took %v", d)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{Secret: []byte("short"), Kinds: []Kind{KindData, KindData}}
	err := cfg.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate: %v", err)
	}
	for _, field := range []string{"Secret", "HandshakeTimeout", "MaxPending", "Backlog", "Kinds"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}

// TestDialFunc: Config.Dial replaces the TCP dial under every stream a
// Dialer or a Mux opens.
func TestDialFunc(t *testing.T) {
	m := openMux(t, testSecret, KindData)
	var mu sync.Mutex
	var dialed []string
	cfg := DefaultConfig()
	cfg.Secret = testSecret
	cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, "tcp", m.Addr().String()) // wherever asked: the test's Mux
	}
	d, err := NewDialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := acceptOne(m.Listener(KindData))
	c, err := d.Dial(ctxT(t), "10.0.0.9:7380", KindData)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if s := <-got; s == nil {
		t.Fatal("stream not accepted")
	} else {
		s.Close()
	}
	cfg.Kinds = []Kind{KindData}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Open(ln, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	got = acceptOne(m.Listener(KindData))
	if c, err = m2.Dial(ctxT(t), "10.0.0.8:7380", KindData); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if s := <-got; s != nil {
		s.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(dialed, ",") != "10.0.0.9:7380,10.0.0.8:7380" {
		t.Fatalf("dial func saw %v", dialed)
	}
}

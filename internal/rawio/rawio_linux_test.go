package rawio

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestLargeWriteWaitsForRoom: a write far larger than the socket's
// buffers, to a reader that reads slowly, goes out whole and in order
// (the raw call meets a full buffer and waits through the poller).
func TestLargeWriteWaitsForRoom(t *testing.T) {
	a, b := tcpPair(t)
	r, _ := Conn(b)
	_, w := Conn(a)
	if _, ok := w.(*writer); !ok {
		t.Fatalf("TCP connection got %T, want the raw writer", w)
	}
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	errc := make(chan error, 1)
	go func() {
		n, err := w.Write(data)
		if err == nil && n != len(data) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the writer fill the buffers
	b.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, 0, len(data))
	buf := make([]byte, 4096)
	for len(got) < len(data) {
		n, err := r.Read(buf)
		if err != nil {
			select {
			case werr := <-errc:
				t.Fatalf("read after %d bytes: %v (write: %v)", len(got), err, werr)
			default:
				t.Fatalf("read after %d bytes: %v", len(got), err)
			}
		}
		got = append(got, buf[:n]...)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes read differ from bytes written")
	}
}

// TestReadEOFAndDeadline: a read waits for data, honours the read
// deadline with a timeout error, and reports io.EOF once the peer closes.
func TestReadEOFAndDeadline(t *testing.T) {
	a, b := tcpPair(t)
	r, _ := Conn(b)
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := r.Read(make([]byte, 10)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	b.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.Write([]byte("hello"))
		a.Close()
	}()
	buf := make([]byte, 10)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read = %q, %v", buf[:n], err)
	}
	if n, err := r.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed = %d, %v; want io.EOF", n, err)
	}
}

// TestWriteToClosedPeer: writing to a connection the peer reset fails
// with an error (no signal takes the process down).
func TestWriteToClosedPeer(t *testing.T) {
	a, b := tcpPair(t)
	_, w := Conn(a)
	b.(*net.TCPConn).SetLinger(0)
	b.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := w.Write([]byte("x")); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a reset connection kept succeeding")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOtherConnsPassThrough: a connection without a socket underneath
// is used as it is.
func TestOtherConnsPassThrough(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	r, w := Conn(a)
	if r != io.Reader(a) || w != io.Writer(a) {
		t.Fatalf("net.Pipe got %T/%T, want the connection itself", r, w)
	}
}

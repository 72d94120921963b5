package stashtest

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// segment is one Write's bytes, readable from at on.
type segment struct {
	data []byte
	at   time.Time
}

// pipe is one direction of a stream: what one end writes waits here
// until the other end reads it, the link from → to is open and its delay
// has passed.
type pipe struct {
	net      *Network
	from, to string // host names: the direction of the data

	mu      sync.Mutex // guards everything below
	segs    []segment
	size    int       // bytes in segs
	fin     bool      // the writing end closed: EOF after the data
	finAt   time.Time // when the EOF arrives
	wclosed bool      // the writing end closed: its writes fail
	rclosed bool      // the reading end closed: its reads fail, writes reset
	err     error     // the stream was reset: both ends fail with it
	rdl     time.Time // the reading end's deadline
	wdl     time.Time // the writing end's deadline
	ch      chan struct{}
}

func newPipe(n *Network, from, to string) *pipe {
	return &pipe{net: n, from: from, to: to, ch: make(chan struct{})}
}

// signal wakes every goroutine waiting on p. p.mu is held.
func (p *pipe) signal() {
	close(p.ch)
	p.ch = make(chan struct{})
}

func (p *pipe) update(f func()) {
	p.mu.Lock()
	f()
	p.signal()
	p.mu.Unlock()
}

// wait blocks until a or b is closed or until passes (zero: no limit).
func wait(a, b <-chan struct{}, until time.Time) {
	if until.IsZero() {
		select {
		case <-a:
		case <-b:
		}
		return
	}
	d := time.Until(until)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a:
	case <-b:
	case <-t.C:
	}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// failed is the error a read or write ends with at once: the own side
// closed (closed), or the pipe failed. Called with p.mu held.
func (p *pipe) failed(closed bool) error {
	if closed {
		return net.ErrClosed
	}
	return p.err
}

func (p *pipe) read(b []byte) (int, error) {
	for {
		changed, open := p.net.watch(p.from, p.to)
		p.mu.Lock()
		if err := p.failed(p.rclosed); err != nil {
			p.mu.Unlock()
			return 0, err
		}
		now := time.Now()
		if !p.rdl.IsZero() && !now.Before(p.rdl) {
			p.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		if len(b) == 0 {
			p.mu.Unlock()
			return 0, nil
		}
		wake := p.rdl
		if open {
			n := 0
			for n < len(b) && len(p.segs) > 0 && !now.Before(p.segs[0].at) {
				s := &p.segs[0]
				k := copy(b[n:], s.data)
				n += k
				s.data = s.data[k:]
				p.size -= k
				if len(s.data) == 0 {
					p.segs[0] = segment{}
					p.segs = p.segs[1:]
				}
			}
			if n > 0 {
				p.signal() // room for a blocked writer
				p.mu.Unlock()
				return n, nil
			}
			switch {
			case len(p.segs) > 0:
				wake = earliest(wake, p.segs[0].at)
			case p.fin && !now.Before(p.finAt):
				p.mu.Unlock()
				return 0, io.EOF
			case p.fin:
				wake = earliest(wake, p.finAt)
			}
		}
		ch := p.ch
		p.mu.Unlock()
		wait(ch, changed, wake)
	}
}

func (p *pipe) write(b []byte, delay time.Duration) (int, error) {
	for {
		changed, open := p.net.watch(p.from, p.to)
		p.mu.Lock()
		if err := p.failed(p.wclosed); err != nil {
			p.mu.Unlock()
			return 0, err
		}
		if !p.wdl.IsZero() && !time.Now().Before(p.wdl) {
			p.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		if p.rclosed {
			p.mu.Unlock()
			if open {
				return 0, ErrReset
			}
			return len(b), nil // the reset cannot cross the cut yet
		}
		if p.size > 0 && p.size+len(b) > streamBuffer {
			ch, wake := p.ch, p.wdl
			p.mu.Unlock()
			wait(ch, changed, wake)
			continue
		}
		p.segs = append(p.segs, segment{data: append([]byte(nil), b...), at: time.Now().Add(delay)})
		p.size += len(b)
		p.signal()
		p.mu.Unlock()
		return len(b), nil
	}
}

// endpoint is one end of a stream: a net.Conn.
type endpoint struct {
	net           *Network
	host          *Host // the host it is open on
	local, remote *net.TCPAddr
	rd, wr        *pipe // data to this end, data from it

	mu     sync.Mutex // guards closed
	closed bool
}

// newStream returns both ends of a stream from host src (address sa) to
// host dst (address da).
func newStream(n *Network, src *Host, sa *net.TCPAddr, dst *Host, da *net.TCPAddr) (client, server *endpoint) {
	up, down := newPipe(n, src.name, dst.name), newPipe(n, dst.name, src.name)
	client = &endpoint{net: n, host: src, local: sa, remote: da, rd: down, wr: up}
	server = &endpoint{net: n, host: dst, local: da, remote: sa, rd: up, wr: down}
	src.track(client)
	dst.track(server)
	return client, server
}

func (e *endpoint) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: e.local, Addr: e.remote, Err: err}
}

func (e *endpoint) Read(b []byte) (int, error) {
	n, err := e.rd.read(b)
	if err != nil && err != io.EOF {
		err = e.opErr("read", err)
	}
	return n, err
}

func (e *endpoint) Write(b []byte) (int, error) {
	drop, delay := e.net.roll(e.wr.from, e.wr.to)
	if drop {
		e.reset()
		return 0, e.opErr("write", ErrReset)
	}
	n, err := e.wr.write(b, delay)
	if err != nil {
		err = e.opErr("write", err)
	}
	return n, err
}

// reset fails both ends with ErrReset, discarding what is under way.
func (e *endpoint) reset() {
	for _, p := range []*pipe{e.rd, e.wr} {
		p.update(func() {
			if p.err == nil {
				p.err = ErrReset
			}
			p.segs, p.size = nil, 0
		})
	}
}

// Close closes this end: its reads and writes fail with net.ErrClosed;
// the other end reads what was written, then EOF (once the link lets it
// through), and its writes fail with ErrReset.
func (e *endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return e.opErr("close", net.ErrClosed)
	}
	e.closed = true
	e.mu.Unlock()
	e.host.untrack(e)
	e.rd.update(func() {
		e.rd.rclosed = true
		e.rd.segs, e.rd.size = nil, 0
	})
	_, delay := e.net.roll(e.wr.from, e.wr.to)
	e.wr.update(func() {
		e.wr.wclosed = true
		e.wr.fin, e.wr.finAt = true, time.Now().Add(delay)
	})
	return nil
}

func (e *endpoint) LocalAddr() net.Addr  { return e.local }
func (e *endpoint) RemoteAddr() net.Addr { return e.remote }

func (e *endpoint) SetDeadline(t time.Time) error {
	e.SetReadDeadline(t)
	return e.SetWriteDeadline(t)
}

func (e *endpoint) SetReadDeadline(t time.Time) error {
	e.rd.update(func() { e.rd.rdl = t })
	return nil
}

func (e *endpoint) SetWriteDeadline(t time.Time) error {
	e.wr.update(func() { e.wr.wdl = t })
	return nil
}

package stashtest

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

type packet struct {
	data []byte
	from *net.UDPAddr
}

// packetConn is a Host's packet endpoint: a net.PacketConn.
type packetConn struct {
	host *Host
	addr *net.UDPAddr
	in   chan packet // received, unread; full: further packets are dropped
	done chan struct{}
	once sync.Once

	mu  sync.Mutex    // guards rdl and ch
	rdl time.Time     // read deadline
	ch  chan struct{} // closed when rdl changes
}

func (pc *packetConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: pc.addr, Err: err}
}

func (pc *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		pc.mu.Lock()
		dl, ch := pc.rdl, pc.ch
		pc.mu.Unlock()
		var timeout <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, pc.opErr("read", os.ErrDeadlineExceeded)
			}
			t = time.NewTimer(d)
			timeout = t.C
		}
		select {
		case p := <-pc.in:
			stop(t)
			return copy(b, p.data), p.from, nil
		case <-pc.done:
			stop(t)
			return 0, nil, pc.opErr("read", net.ErrClosed)
		case <-ch:
			stop(t)
		case <-timeout:
		}
	}
}

// WriteTo sends a packet to addr, a *net.UDPAddr or an "ip:port" address.
// Like UDP it reports success whether or not the packet arrives.
func (pc *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-pc.done:
		return 0, pc.opErr("write", net.ErrClosed)
	default:
	}
	var ap netip.AddrPort
	if ua, ok := addr.(*net.UDPAddr); ok {
		ap = ua.AddrPort()
	} else {
		var err error
		if ap, err = netip.ParseAddrPort(addr.String()); err != nil {
			return 0, pc.opErr("write", err)
		}
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	n := pc.host.net
	n.mu.Lock()
	dst := n.byIP[ap.Addr()]
	n.mu.Unlock()
	if dst == nil {
		return len(b), nil
	}
	if !n.Reachable(pc.host.name, dst.name) {
		return len(b), nil
	}
	drop, delay := n.roll(pc.host.name, dst.name)
	if drop {
		return len(b), nil
	}
	p := packet{data: append([]byte(nil), b...), from: pc.addr}
	deliver := func() {
		n.mu.Lock()
		to := n.pcs[ap]
		n.mu.Unlock()
		if to != nil {
			to.push(p)
		}
	}
	if delay > 0 {
		time.AfterFunc(delay, deliver)
	} else {
		deliver()
	}
	return len(b), nil
}

// push queues p for ReadFrom, or drops it when the queue is full or pc
// is closed.
func (pc *packetConn) push(p packet) {
	select {
	case <-pc.done:
		return
	default:
	}
	select {
	case pc.in <- p:
	default:
	}
}

// Close closes the endpoint; a blocked ReadFrom returns net.ErrClosed.
func (pc *packetConn) Close() error {
	err := pc.opErr("close", net.ErrClosed)
	pc.once.Do(func() {
		err = nil
		close(pc.done)
		n := pc.host.net
		n.mu.Lock()
		if n.pcs[pc.addr.AddrPort()] == pc {
			delete(n.pcs, pc.addr.AddrPort())
		}
		n.mu.Unlock()
	})
	return err
}

func (pc *packetConn) LocalAddr() net.Addr { return pc.addr }

func (pc *packetConn) SetDeadline(t time.Time) error { return pc.SetReadDeadline(t) }

func (pc *packetConn) SetReadDeadline(t time.Time) error {
	pc.mu.Lock()
	pc.rdl = t
	close(pc.ch)
	pc.ch = make(chan struct{})
	pc.mu.Unlock()
	return nil
}

// SetWriteDeadline is accepted and ignored: writes never block.
func (pc *packetConn) SetWriteDeadline(time.Time) error { return nil }

func stop(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

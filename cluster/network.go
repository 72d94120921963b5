package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Network is what a Node talks over when Config.Network is set: its
// cluster port, the streams it dials to other nodes' cluster ports (raft
// and data), and gossip, which needs a stream listener and a packet
// endpoint on one port. Without it the node uses the operating system's
// TCP and UDP. Package stashtest implements it in memory.
//
// Its methods are called from many goroutines at once (raft's,
// memberlist's, the data plane's) and must be safe for that. What they
// return belongs to the caller, who closes it.
type Network interface {
	// Listen opens a stream listener on addr ("ip:port"; port 0 picks a
	// free one). Its Addr must be a *net.TCPAddr with the port bound.
	// Accept must return an error wrapping net.ErrClosed once the
	// listener is closed.
	Listen(addr string) (net.Listener, error)
	// ListenPacket opens a packet endpoint on addr ("ip:port"). Its
	// LocalAddr must be a *net.UDPAddr; packets sent from it carry that
	// address as their source, and ReadFrom returns an error wrapping
	// net.ErrClosed once it is closed.
	ListenPacket(addr string) (net.PacketConn, error)
	// Dial opens a stream to the listener at addr ("ip:port"). It must
	// return when ctx ends. The connection must honour deadlines
	// (memberlist and raft set them) and report their expiry with an error
	// that matches os.ErrDeadlineExceeded.
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// gossipTransport is memberlist's Transport over a Network: packets on
// one packet endpoint, streams on a listener of the same port. It does
// what memberlist's NetTransport does over the OS network, with one
// bind address.
type gossipTransport struct {
	nw      Network
	ln      net.Listener
	pc      net.PacketConn
	port    int
	log     *slog.Logger
	packets chan *memberlist.Packet
	streams chan net.Conn
	ctx     context.Context // ended by Shutdown
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
}

var _ memberlist.Transport = (*gossipTransport)(nil)

// openGossipTransport listens on bind:port (port 0 picks one) for
// streams and packets and starts handing them to memberlist.
func openGossipTransport(nw Network, bind string, port int, log *slog.Logger) (*gossipTransport, error) {
	ln, err := nw.Listen(net.JoinHostPort(bind, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip port (streams): %w", err)
	}
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("cluster: gossip listener address %v is not TCP", ln.Addr())
	}
	pc, err := nw.ListenPacket(net.JoinHostPort(bind, strconv.Itoa(tcp.Port)))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("cluster: gossip port (packets): %w", err)
	}
	t := &gossipTransport{
		nw: nw, ln: ln, pc: pc, port: tcp.Port, log: log,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(2)
	go t.accept()
	go t.read()
	return t, nil
}

// FinalAdvertiseAddr returns ip and port when ip is given, else the
// address bound. (NetTransport would look up a private interface address
// for an unspecified bind address; a Network has no interfaces, and
// Config always fills AdvertiseAddr.)
func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		a := t.ln.Addr().(*net.TCPAddr)
		return a.IP, t.port, nil
	}
	a := net.ParseIP(ip)
	if a == nil {
		return nil, 0, fmt.Errorf("cluster: advertise address %q is not an IP address", ip)
	}
	if a4 := a.To4(); a4 != nil {
		a = a4
	}
	if port == 0 {
		port = t.port
	}
	return a, port, nil
}

// WriteTo sends one packet to addr ("ip:port"), best effort.
func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.pc.WriteTo(b, ua)
	return time.Now(), err
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout opens a stream to addr; Shutdown ends a dial in flight.
func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	return t.nw.Dial(ctx, addr)
}

func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown closes the listener and the packet endpoint and waits for the
// goroutines that fed memberlist. It is idempotent.
func (t *gossipTransport) Shutdown() error {
	var err error
	t.once.Do(func() {
		t.cancel()
		err = errors.Join(t.ln.Close(), t.pc.Close())
		t.wg.Wait()
	})
	return err
}

func (t *gossipTransport) closing() bool { return t.ctx.Err() != nil }

// accept hands incoming streams to memberlist until Shutdown.
func (t *gossipTransport) accept() {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.closing() || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t.log.Warn("gossip: accept failed", "err", err, "retry", backoff)
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		select {
		case t.streams <- c:
		case <-t.ctx.Done():
			c.Close()
			return
		}
	}
}

// read hands incoming packets to memberlist until Shutdown.
func (t *gossipTransport) read() {
	defer t.wg.Done()
	for {
		buf := make([]byte, 65536)
		n, from, err := t.pc.ReadFrom(buf)
		ts := time.Now()
		if err != nil {
			if t.closing() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("gossip: reading a packet failed", "err", err)
			continue
		}
		if n < 1 {
			continue
		}
		select {
		case t.packets <- &memberlist.Packet{Buf: buf[:n], From: from, Timestamp: ts}:
		case <-t.ctx.Done():
			return
		}
	}
}

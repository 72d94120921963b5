package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Latency is added by a user-space TCP proxy (this machine has no netem).
// Every connection a node opens to another node's cluster port (raft and
// data streams) is redirected, by an iptables nat rule in the dialling
// node's namespace, to a proxy the harness runs in that same namespace;
// the proxy learns the real destination (SO_ORIGINAL_DST), dials it from
// the same namespace — so the packets still come from the dialling node's
// address and the partition nemesis's rules still apply — with a socket
// mark the rule skips, and forwards both directions, holding every chunk
// until the current delay has passed since it was read. Gossip (UDP and
// TCP on the gossip port) and client traffic are not delayed.
const (
	ProxyPort = 17380 // the proxy's port in every node namespace
	proxyMark = 0x5e  // SO_MARK of the proxy's own connections, which the redirect skips
)

// Proxy is the latency proxy of one run. Its methods are safe for
// concurrent use; Close is safe twice.
type Proxy struct {
	nw     *Net
	delays atomic.Pointer[delays]
	wg     sync.WaitGroup
	served atomic.Int64 // connections forwarded

	mu     sync.Mutex // guards ls, conns, closed
	ls     []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
}

// delays is one immutable latency setting: every link gets All, and a
// link touching a node in Node gets that much more (one way).
type delays struct {
	All  time.Duration
	Node map[string]time.Duration // by node IP
}

// NewProxy returns a proxy with no delay and no namespace yet (Install).
func NewProxy(nw *Net) *Proxy {
	p := &Proxy{nw: nw, conns: map[net.Conn]struct{}{}}
	p.delays.Store(&delays{})
	return p
}

// Install starts the proxy in h's namespace and redirects h's outgoing
// cluster-port connections to it. Call it before the node starts: only
// connections opened afterwards pass through the proxy.
func (p *Proxy) Install(ctx context.Context, h Host) error {
	var l net.Listener
	err := inNS(h.NS, func() error {
		var err error
		l, err = net.Listen("tcp", net.JoinHostPort(h.IP, strconv.Itoa(ProxyPort)))
		return err
	})
	if err != nil {
		return fmt.Errorf("proxy in %s: %w", h.Name, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.Close()
		return errors.New("proxy closed")
	}
	p.ls = append(p.ls, l)
	p.wg.Add(1)
	p.mu.Unlock()
	go p.accept(l, h)
	return p.nw.IPTables(ctx, h, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", Subnet+"0/24", "--dport", strconv.Itoa(ClusterPort),
		"-m", "mark", "!", "--mark", strconv.Itoa(proxyMark), "-j", "DNAT", "--to-destination", net.JoinHostPort(h.IP, strconv.Itoa(ProxyPort)))
}

// Set replaces the delay: all for every link, plus extra on the links
// to and from the node with address slowIP ("" for none).
func (p *Proxy) Set(all time.Duration, slowIP string, extra time.Duration) {
	d := &delays{All: all, Node: map[string]time.Duration{}}
	if slowIP != "" {
		d.Node[slowIP] = extra
	}
	p.delays.Store(d)
}

func (p *Proxy) delay(a, b string) time.Duration {
	d := p.delays.Load()
	return d.All + max(d.Node[a], d.Node[b])
}

// Served counts the connections forwarded so far.
func (p *Proxy) Served() int64 { return p.served.Load() }

// Close stops every listener and connection and waits for the proxy's
// goroutines. The redirect rules go with the namespaces.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for _, l := range p.ls {
		l.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept(l net.Listener, h Host) {
	defer p.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c.(*net.TCPConn), h)
		}()
	}
}

// serve forwards one redirected connection to its original destination.
func (p *Proxy) serve(in *net.TCPConn, h Host) {
	if !p.track(in) {
		return
	}
	defer p.untrack(in)
	dst, err := originalDst(in)
	if err != nil {
		return
	}
	var out net.Conn
	err = inNS(h.NS, func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(h.IP)},
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, proxyMark) })
				return errors.Join(err, serr)
			}}
		var err error
		out, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return // the client sees its connection closed, as if refused
	}
	if !p.track(out) {
		return
	}
	defer p.untrack(out)
	p.served.Add(1)
	from, to := h.IP, dst.IP.String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(out.(*net.TCPConn), in, from, to) }()
	go func() { defer wg.Done(); p.pipe(in, out.(*net.TCPConn), to, from) }()
	wg.Wait()
}

// pipe copies src to dst, delivering each chunk once the delay of the
// link a–b has passed since it was read. At EOF it half-closes dst; on a
// write error it closes both, so the other direction ends too.
func (p *Proxy) pipe(dst, src *net.TCPConn, a, b string) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 64)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for c := range ch {
		if failed {
			continue // drain so the reader can end
		}
		if w := time.Until(c.at.Add(p.delay(a, b))); w > 0 {
			time.Sleep(w)
		}
		if _, err := dst.Write(c.b); err != nil {
			failed = true
			dst.Close()
			src.Close()
		}
	}
	if !failed {
		dst.CloseWrite()
	}
}

// originalDst is where a connection redirected by the nat rule was going.
func originalDst(c *net.TCPConn) (*net.TCPAddr, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var addr *net.TCPAddr
	var serr error
	err = rc.Control(func(fd uintptr) {
		// struct sockaddr_in comes back in the 16 bytes of an IPv6Mreq.
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			serr = err
			return
		}
		b := m.Multiaddr
		addr = &net.TCPAddr{IP: net.IPv4(b[4], b[5], b[6], b[7]), Port: int(b[2])<<8 | int(b[3])}
	})
	if err = errors.Join(err, serr); err != nil {
		return nil, fmt.Errorf("SO_ORIGINAL_DST: %w", err)
	}
	return addr, nil
}

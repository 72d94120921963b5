package stashtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/stashcluster/stash/cluster"
)

// Errors a Network's connections fail with, wrapped in a *net.OpError as
// the operating system's would be.
var (
	// ErrRefused: nothing listens at the address dialed (or its backlog
	// is full).
	ErrRefused = errors.New("stashtest: connection refused")
	// ErrReset: the stream was reset: by SetDrop, or the peer closed it
	// while this side was still writing.
	ErrReset = errors.New("stashtest: connection reset by peer")
	// ErrUnreachable: no host has the address dialed or written to.
	ErrUnreachable = errors.New("stashtest: no route to host")
	// ErrAddr: a Listen address that is not the host's.
	ErrAddr = errors.New("stashtest: cannot assign requested address")
	// ErrInUse: the port is taken on that host.
	ErrInUse = errors.New("stashtest: address already in use")
)

// Sizes of the simulated kernel buffers.
const (
	streamBuffer = 1 << 20 // bytes a stream direction holds before Write blocks
	packetQueue  = 1024    // packets a packet endpoint holds before it drops
	acceptQueue  = 128     // streams a listener holds before it refuses
)

// Network is an in-memory network of named hosts. Each Host is a
// cluster.Network for the member that runs on it, with an IPv4 address of
// its own (10.0.0.1 for the first host created, and so on), so every
// member can use the same ports.
//
// Faults apply between distinct hosts, never from a host to itself:
//
//   - Partition and Block stop traffic. Packets are dropped. Streams
//     behave like TCP through a black hole: what is written waits (Write
//     blocks once a direction holds 1 MiB) and flows again, in order,
//     when the link heals; a reader in the meantime waits for its
//     deadline. A new stream needs both directions and waits for them in
//     Dial until its context ends.
//   - SetDrop drops each packet with a probability, and resets a stream
//     (both ends fail with ErrReset) with the same probability per Write
//     and per Dial.
//   - SetDelay delays each packet and each stream Write by a latency;
//     Dial takes twice as long.
//
// All methods are safe for concurrent use.
type Network struct {
	mu      sync.Mutex // guards everything below
	hosts   map[string]*Host
	byIP    map[netip.Addr]*Host
	groups  map[string]int                 // Partition: host → group; nil when healed
	blocked map[[2]string]bool             // Block: from → to
	drop    float64                        // probability
	delay   time.Duration                  // per hop
	rng     *rand.Rand                     // for drops
	changed chan struct{}                  // closed at the next fault change
	lns     map[netip.AddrPort]*listener   // stream listeners by address
	pcs     map[netip.AddrPort]*packetConn // packet endpoints by address
	ports   map[netip.Addr]int             // next ephemeral port per host
}

// NewNetwork returns a network without hosts or faults. Its random
// drops are seeded with 1; see Seed.
func NewNetwork() *Network {
	return &Network{
		hosts:   make(map[string]*Host),
		byIP:    make(map[netip.Addr]*Host),
		blocked: make(map[[2]string]bool),
		rng:     rand.New(rand.NewPCG(1, 0)),
		changed: make(chan struct{}),
		lns:     make(map[netip.AddrPort]*listener),
		pcs:     make(map[netip.AddrPort]*packetConn),
		ports:   make(map[netip.Addr]int),
	}
}

// Seed reseeds the randomness that decides drops. (Which message a drop
// hits still depends on goroutine scheduling.)
func (n *Network) Seed(seed uint64) {
	n.mu.Lock()
	n.rng = rand.New(rand.NewPCG(seed, 0))
	n.mu.Unlock()
}

// Host returns the host called name, adding it (with the next free
// address) if there is none yet.
func (n *Network) Host(name string) *Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h, ok := n.hosts[name]; ok {
		return h
	}
	k := len(n.hosts) + 1
	ip := netip.AddrFrom4([4]byte{10, 0, byte(k >> 8), byte(k)})
	h := &Host{net: n, name: name, ip: ip, conns: make(map[*endpoint]struct{})}
	n.hosts[name] = h
	n.byIP[ip] = h
	return h
}

// Partition splits the hosts into groups that cannot reach each other;
// hosts in no group form one more group together. It replaces any
// earlier partition (Blocks stay). Partition() with no groups is a no-op
// partition, as after Heal.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.groups = nil
	if len(groups) > 0 {
		n.groups = make(map[string]int)
		for i, g := range groups {
			for _, name := range g {
				n.groups[name] = i + 1 // hosts in no group are in group 0
			}
		}
	}
	n.bump()
}

// Block stops traffic from host from to host to, one way: packets from
// it are dropped, and streams between the two stall in that direction
// (and new ones cannot open). Unblock or Heal undoes it.
func (n *Network) Block(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blocked[[2]string{from, to}] = true
	n.bump()
}

// Unblock undoes Block(from, to).
func (n *Network) Unblock(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.blocked, [2]string{from, to})
	n.bump()
}

// Heal undoes every Partition and Block; stalled streams flow again.
// Drop and delay stay as set.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.groups = nil
	clear(n.blocked)
	n.bump()
}

// SetDrop sets the probability, in [0, 1], with which a packet is
// dropped and a stream Write or Dial resets the stream. 0 turns drops
// off.
func (n *Network) SetDrop(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drop = min(max(p, 0), 1)
	n.bump()
}

// SetDelay sets the latency added to every packet and stream Write
// between distinct hosts (twice that to open a stream). 0 turns it off;
// data already under way keeps its delay.
func (n *Network) SetDelay(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delay = max(d, 0)
	n.bump()
}

// Reachable reports whether traffic from host from reaches host to now
// (drops aside).
func (n *Network) Reachable(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.openLocked(from, to)
}

func (n *Network) openLocked(from, to string) bool {
	if from == to {
		return true
	}
	if n.groups != nil && n.groups[from] != n.groups[to] {
		return false
	}
	return !n.blocked[[2]string{from, to}]
}

// bump wakes everything waiting on a fault change. n.mu is held.
func (n *Network) bump() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// watch returns the channel closed at the next fault change and whether
// from reaches to now.
func (n *Network) watch(from, to string) (<-chan struct{}, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed, n.openLocked(from, to)
}

// roll reports whether a drop hits, and the delay, for traffic from
// host from to host to.
func (n *Network) roll(from, to string) (drop bool, delay time.Duration) {
	if from == to {
		return false, 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.drop > 0 && n.rng.Float64() < n.drop, n.delay
}

// Host is one machine of a Network. It implements cluster.Network for
// the member that runs on it: it listens on its own address only, and
// its dials and packets come from that address.
type Host struct {
	net  *Network
	name string
	ip   netip.Addr

	mu    sync.Mutex             // guards conns
	conns map[*endpoint]struct{} // open stream ends on this host
}

var _ cluster.Network = (*Host)(nil)

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// IP returns the host's address.
func (h *Host) IP() netip.Addr { return h.ip }

// Addr returns "ip:port" on this host.
func (h *Host) Addr(port int) string { return netip.AddrPortFrom(h.ip, uint16(port)).String() }

// CloseConns closes every stream end open on the host, as the kernel
// does when a process dies: peers read what was sent, then EOF. Member.Kill
// calls it, since code that forgets a stream (raft does, at shutdown)
// would otherwise keep it open, and a goroutine blocked on it.
func (h *Host) CloseConns() {
	h.mu.Lock()
	conns := make([]*endpoint, 0, len(h.conns))
	for e := range h.conns {
		conns = append(conns, e)
	}
	h.mu.Unlock()
	for _, e := range conns {
		e.Close()
	}
}

func (h *Host) track(e *endpoint) {
	h.mu.Lock()
	h.conns[e] = struct{}{}
	h.mu.Unlock()
}

func (h *Host) untrack(e *endpoint) {
	h.mu.Lock()
	delete(h.conns, e)
	h.mu.Unlock()
}

// bindAddr maps a Listen address to one on this host: its own IP, an
// unspecified address or a loopback address all mean the host's IP.
func (h *Host) bindAddr(addr string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("stashtest: port %q: %w", port, err)
	}
	if host != "" && host != "localhost" {
		ip, err := netip.ParseAddr(host)
		if err != nil || ip != h.ip && !ip.IsUnspecified() && !ip.IsLoopback() {
			return netip.AddrPort{}, fmt.Errorf("%w: %s on host %s (%s)", ErrAddr, addr, h.name, h.ip)
		}
	}
	return netip.AddrPortFrom(h.ip, uint16(p)), nil
}

// ephemeralLocked returns a free port on h for the table taken. n.mu is
// held.
func (h *Host) ephemeralLocked(taken func(netip.AddrPort) bool) uint16 {
	n := h.net
	for {
		p := n.ports[h.ip]
		if p < 40000 || p >= 65535 {
			p = 40000
		}
		n.ports[h.ip] = p + 1
		if !taken(netip.AddrPortFrom(h.ip, uint16(p))) {
			return uint16(p)
		}
	}
}

// Listen opens a stream listener on addr: "ip:port" where ip is the
// host's, unspecified or loopback; port 0 picks a free one.
func (h *Host) Listen(addr string) (net.Listener, error) {
	ap, err := h.bindAddr(addr)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Err: err}
	}
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if ap.Port() == 0 {
		ap = netip.AddrPortFrom(h.ip, h.ephemeralLocked(func(a netip.AddrPort) bool { return n.lns[a] != nil }))
	} else if n.lns[ap] != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: ErrInUse}
	}
	l := &listener{host: h, addr: net.TCPAddrFromAddrPort(ap), ch: make(chan *endpoint, acceptQueue), done: make(chan struct{})}
	n.lns[ap] = l
	return l, nil
}

// ListenPacket opens a packet endpoint on addr, as Listen does for
// streams (ports of the two kinds are separate).
func (h *Host) ListenPacket(addr string) (net.PacketConn, error) {
	ap, err := h.bindAddr(addr)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "udp", Err: err}
	}
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if ap.Port() == 0 {
		ap = netip.AddrPortFrom(h.ip, h.ephemeralLocked(func(a netip.AddrPort) bool { return n.pcs[a] != nil }))
	} else if n.pcs[ap] != nil {
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(ap), Err: ErrInUse}
	}
	pc := &packetConn{
		host: h, addr: net.UDPAddrFromAddrPort(ap),
		in: make(chan packet, packetQueue), done: make(chan struct{}), ch: make(chan struct{}),
	}
	n.pcs[ap] = pc
	return pc, nil
}

// Dial opens a stream from this host to the listener at addr ("ip:port").
// It waits while either direction between the hosts is cut, until ctx
// ends; it fails with ErrRefused if nothing listens there, ErrUnreachable
// if no host has that address, ErrReset if a drop hits.
func (h *Host) Dial(ctx context.Context, addr string) (net.Conn, error) {
	n := h.net
	fail := func(err error) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: stringAddr(addr), Err: err}
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fail(err)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	n.mu.Lock()
	dst := n.byIP[ap.Addr()]
	n.mu.Unlock()
	if dst == nil {
		return fail(ErrUnreachable)
	}
	for { // both directions must be open: SYN one way, SYN-ACK the other
		ch1, there := n.watch(h.name, dst.name)
		_, back := n.watch(dst.name, h.name)
		if there && back {
			break
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-ch1:
		}
	}
	drop, delay := n.roll(h.name, dst.name)
	if delay > 0 {
		t := time.NewTimer(2 * delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fail(ctx.Err())
		case <-t.C:
		}
	}
	if drop {
		return fail(ErrReset)
	}
	n.mu.Lock()
	l := n.lns[ap]
	if l == nil {
		n.mu.Unlock()
		return fail(ErrRefused)
	}
	src := net.TCPAddrFromAddrPort(netip.AddrPortFrom(h.ip, h.ephemeralLocked(func(netip.AddrPort) bool { return false })))
	n.mu.Unlock()
	client, server := newStream(n, h, src, dst, l.addr)
	if !l.deliver(server) {
		client.reset()
		client.Close()
		server.Close()
		return fail(ErrRefused)
	}
	return client, nil
}

// stringAddr is a net.Addr for an address that may not parse.
type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

// listener is a Host's stream listener.
type listener struct {
	host *Host
	addr *net.TCPAddr
	ch   chan *endpoint
	done chan struct{}

	mu     sync.Mutex // guards closed and sends on ch
	closed bool
}

func (l *listener) deliver(e *endpoint) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	select {
	case l.ch <- e:
		return true
	default:
		return false
	}
}

// Accept waits for the next stream.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case e := <-l.ch:
		return e, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close stops listening: queued streams are reset, later dials refused.
func (l *listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	l.mu.Unlock()
	n := l.host.net
	n.mu.Lock()
	if n.lns[l.addr.AddrPort()] == l {
		delete(n.lns, l.addr.AddrPort())
	}
	n.mu.Unlock()
	for {
		select {
		case e := <-l.ch:
			e.reset() // the dialer's end fails
			e.Close()
		default:
			return nil
		}
	}
}

func (l *listener) Addr() net.Addr { return l.addr }

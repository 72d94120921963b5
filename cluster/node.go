package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/stashcluster/stash/internal/transport"
	"github.com/stashcluster/stash/ring"
)

// Node is this process's membership in a cluster: its gossip member, its
// raft server, and the committed roster and slot table. Open starts it;
// Leave or Close stops it. All methods are safe for concurrent use.
type Node struct {
	cfg         Config
	timing      timing
	log         *slog.Logger
	name        ring.NodeID
	clusterAddr string // advertised cluster port, host:port
	gossipAddr  string // advertised gossip port, host:port; fixed once memberlist is up
	existing    bool   // raft state was on disk at Open

	mux   *transport.Mux
	st    *stores
	fsm   *fsm
	trans *raft.NetworkTransport
	raft  *raft.Raft
	ml    *memberlist.Memberlist

	table   atomic.Pointer[ring.Table] // latest committed table; never nil
	changes notifier
	peers   notifier // gossip reported a member joining, changing or failing

	metaMu sync.Mutex // guards self
	self   meta

	viewMu sync.Mutex      // guards view
	view   map[string]peer // other nodes as gossip reports them

	gossipKick chan struct{}             // membership events (debounced by run); cap 1
	announced  time.Time                 // last meta broadcast by maintainSelf; run's goroutine only
	wake       chan struct{}             // committed changes; cap 1
	observe    chan raft.Observation     // leadership changes; raft drops what does not fit
	leaseKick  chan raft.Observation     // leadership changes, for keepLeaderLease
	confirmed  atomic.Pointer[time.Time] // leader lease: see lease.go
	leading    atomic.Bool               // led, and no other leader seen since: see lease.go
	seen       atomic.Pointer[time.Time] // latest contact seen: see lease.go
	lapses     atomic.Uint64             // see Lapses

	ctx    context.Context // done when the node closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // run and joinLoop

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	mlMu   sync.Mutex // serialises ml.Leave and ml.Shutdown (Leave after Shutdown panics)
	mlDown bool       // ml.Shutdown was called; guarded by mlMu

	joinAttempts atomic.Uint64 // gossip join rounds that tried some address
}

// Open starts a node: it opens the cluster port and raft's stores, starts
// raft and memberlist, and begins joining (cfg.Join) or bootstrapping
// (cfg.BootstrapExpect). A node that forms a cluster of one (or restarts
// as one) returns only once it holds its first table; any other node
// returns at once, with an empty table until the leader commits one that
// this node receives: wait with Ready or Changes. ctx bounds Open only.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.clone()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		cfg:        cfg,
		timing:     profileTiming(cfg.Profile),
		log:        log.With("node", cfg.Name),
		name:       ring.NodeID(cfg.Name),
		view:       make(map[string]peer),
		gossipKick: make(chan struct{}, 1),
		wake:       make(chan struct{}, 1),
		observe:    make(chan raft.Observation, 16),
		leaseKick:  make(chan raft.Observation, 4),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.table.Store(new(ring.Table))
	if err := n.start(); err != nil {
		n.Close()
		return nil, err
	}
	n.wg.Add(3)
	go n.run()
	go n.joinLoop()
	go n.keepLeaderLease(n.leaseKick)

	if !n.existing && (cfg.BootstrapExpect == 1 || cfg.BootstrapExpect == 0 && len(cfg.Join) == 0) {
		err := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(n.name), Address: raft.ServerAddress(n.clusterAddr),
		}}}).Error()
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("cluster: bootstrap a cluster of one: %w", err)
		}
		n.log.Info("bootstrapped a cluster of one")
		n.setClustered()
	}
	if n.soloVoter() {
		if err := n.Ready(ctx); err != nil {
			n.Close()
			return nil, fmt.Errorf("cluster: waiting for the first slot table: %w", err)
		}
	}
	return n, nil
}

// start opens the parts in order; Close undoes whatever it got to.
func (n *Node) start() error {
	cfg := &n.cfg
	ln := cfg.ClusterListener
	if ln == nil {
		var err error
		addr := net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.ClusterPort))
		if cfg.Network != nil {
			ln, err = cfg.Network.Listen(addr)
		} else {
			ln, err = net.Listen("tcp", addr)
		}
		if err != nil {
			return fmt.Errorf("cluster: cluster port: %w", err)
		}
	}
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		ln.Close()
		return fmt.Errorf("cluster: cluster listener address %v is not TCP", ln.Addr())
	}
	n.clusterAddr = net.JoinHostPort(cfg.AdvertiseAddr, strconv.Itoa(tcp.Port))
	tc := transport.DefaultConfig()
	tc.Secret = cfg.Secret
	tc.Kinds = []transport.Kind{transport.KindRaft, transport.KindData}
	tc.Logger = n.log.With("component", "transport")
	if cfg.Network != nil {
		tc.Dial = cfg.Network.Dial
	}
	mux, err := transport.Open(ln, tc)
	if err != nil {
		ln.Close()
		return err
	}
	n.mux = mux

	if n.st, err = openStores(cfg.DataDir, newHclog(n.log, "raft")); err != nil {
		return err
	}
	if n.existing, err = raft.HasExistingState(n.st.log, n.st.stable, n.st.snap); err != nil {
		return fmt.Errorf("cluster: read raft state: %w", err)
	}

	n.fsm = &fsm{published: n.published}
	adv, err := net.ResolveTCPAddr("tcp", n.clusterAddr)
	if err != nil {
		return fmt.Errorf("cluster: advertised cluster address: %w", err)
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &streamLayer{Listener: mux.Listener(transport.KindRaft), mux: mux, addr: adv, ctx: n.ctx},
		// Dial a server where gossip says it is now, so that nodes that
		// all came back at new addresses (Kubernetes pods) still reach
		// each other to elect the leader that records those addresses.
		ServerAddressProvider: gossipAddrs{n},
		MaxPool:               3,
		Timeout:               10 * time.Second,
		Logger:                newHclog(n.log, "raft-net"),
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.name)
	rc.Logger = newHclog(n.log, "raft")
	t := n.timing
	rc.HeartbeatTimeout, rc.ElectionTimeout = t.heartbeat, t.election
	rc.LeaderLeaseTimeout, rc.CommitTimeout = t.leaderLease, t.commit
	// Entries carry whole tables (≈50 KiB): snapshot often, keep few.
	rc.SnapshotThreshold, rc.TrailingLogs = 64, 64
	rc.SnapshotInterval = 30 * time.Second
	// A node removed while partitioned must come back as a follower the
	// leader can add again, not shut its raft down for good.
	rc.ShutdownOnRemove = false
	if n.raft, err = raft.NewRaft(rc, n.fsm, n.st.log, n.st.stable, n.st.snap, n.trans); err != nil {
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	isLeaderChange := func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}
	n.raft.RegisterObserver(raft.NewObserver(n.observe, false, isLeaderChange))
	n.raft.RegisterObserver(raft.NewObserver(n.leaseKick, false, isLeaderChange))

	st, _ := n.fsm.state()
	n.self = meta{
		State:       StateJoining,
		Clustered:   n.existing,
		Expect:      uint8(cfg.BootstrapExpect),
		Name:        cfg.Name,
		Zone:        cfg.Zone,
		ClusterAddr: n.clusterAddr,
		RESPAddr:    cfg.RESPAddr,
		AdminAddr:   cfg.AdminAddr,
		ClusterID:   st.ClusterID,
	}
	mc, err := n.memberlistConfig()
	if err != nil {
		return err
	}
	if n.ml, err = memberlist.Create(mc); err != nil {
		if mc.Transport != nil {
			mc.Transport.Shutdown() // ours (Network); memberlist may not have taken it
		}
		return fmt.Errorf("cluster: start gossip: %w", err)
	}
	// memberlist wrote the port it bound into mc (cfg.GossipPort may be 0).
	n.gossipAddr = net.JoinHostPort(cfg.AdvertiseAddr, strconv.Itoa(mc.BindPort))
	n.log.Info("node started", "gossip", n.gossipAddr, "cluster", n.clusterAddr, "raft_state", n.existing)
	return nil
}

// gossipAddrs is raft's ServerAddressProvider: a live peer's cluster
// address from its gossip meta. raft falls back to the address in its
// configuration when this fails.
type gossipAddrs struct{ n *Node }

var errNoGossipAddr = errors.New("cluster: no live gossip peer of that name")

func (g gossipAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if ring.NodeID(id) == g.n.name {
		return raft.ServerAddress(g.n.clusterAddr), nil
	}
	g.n.viewMu.Lock()
	defer g.n.viewMu.Unlock()
	if p, ok := g.n.view[string(id)]; ok && p.status == peerAlive {
		return raft.ServerAddress(p.meta.ClusterAddr), nil
	}
	return "", errNoGossipAddr
}

// published is the FSM's hook: a new table (or nil) was just applied.
// It runs on raft's FSM goroutine and must not block.
func (n *Node) published(t *ring.Table) {
	if t != nil {
		n.table.Store(t)
		n.changes.notify()
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// soloVoter reports whether this node is the only server in its raft
// configuration.
func (n *Node) soloVoter() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	s := f.Configuration().Servers
	return len(s) == 1 && s[0].ID == raft.ServerID(n.name)
}

// Table returns the latest committed slot table this node has applied.
// It is never nil; before the node has received any table it is the zero
// Table (no members, epoch 0). The table is immutable and shared. Safe to
// call after Close (it returns the last table).
func (n *Node) Table() *ring.Table { return n.table.Load() }

// Changes returns a channel that is closed when the node applies a table
// newer than the one Table returns now, or when the node closes. Take the
// channel before reading Table so that no change is missed:
//
//	for {
//		ch := n.Changes()
//		use(n.Table())
//		<-ch
//	}
//
// Each call may return a new channel; any number of goroutines may wait.
func (n *Node) Changes() <-chan struct{} { return n.changes.wait() }

// MembersChanged returns a channel closed at the next change gossip
// reports in another member (joined, failed, new state or addresses): what
// Members returns may have changed. Used as Changes is; table changes do
// not close it.
func (n *Node) MembersChanged() <-chan struct{} { return n.peers.wait() }

// Ready waits until this node is a member of the committed slot table.
func (n *Node) Ready(ctx context.Context) error {
	for {
		ch := n.Changes()
		if slices.Contains(n.Table().Members(), n.name) {
			return nil
		}
		if n.closed.Load() {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Self returns this node as it advertises itself.
func (n *Node) Self() Member {
	n.metaMu.Lock()
	m := n.self
	n.metaMu.Unlock()
	return memberFromMeta(m, n.gossipAddr, true)
}

func memberFromMeta(m meta, gossipAddr string, alive bool) Member {
	return Member{
		Name: ring.NodeID(m.Name), Zone: m.Zone, GossipAddr: gossipAddr,
		ClusterAddr: m.ClusterAddr, RESPAddr: m.RESPAddr, AdminAddr: m.AdminAddr,
		State: m.State, Alive: alive,
	}
}

// Members returns every node this one knows of, sorted by name: live
// gossip members (rostered or not yet) and rostered members that are down
// but within DownGrace. The slice is the caller's.
func (n *Node) Members() []Member {
	st, _ := n.fsm.state()
	view := n.viewSnapshot()
	byName := make(map[string]Member, len(view))
	inRoster := make(map[string]bool, len(st.Roster))
	for _, e := range st.Roster {
		inRoster[e.Name] = true
	}
	for name, p := range view {
		if p.status != peerAlive && !inRoster[name] {
			continue
		}
		byName[name] = memberFromMeta(p.meta, p.gossipAddr, p.status == peerAlive)
	}
	for _, e := range st.Roster {
		m, ok := byName[e.Name]
		if !ok {
			m = Member{
				Name: ring.NodeID(e.Name), Zone: e.Zone, GossipAddr: e.GossipAddr,
				ClusterAddr: e.ClusterAddr, RESPAddr: e.RESPAddr, AdminAddr: e.AdminAddr,
				State: e.State,
			}
		}
		if e.DownSince != 0 {
			m.DownSince = time.Unix(0, e.DownSince)
		}
		byName[e.Name] = m
	}
	out := make([]Member, 0, len(byName))
	for _, m := range byName {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return compareIDs(a.Name, b.Name) })
	return out
}

func compareIDs(a, b ring.NodeID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Leader returns the raft leader's name, or "" when there is none known.
func (n *Node) Leader() ring.NodeID {
	if n.closed.Load() {
		return ""
	}
	_, id := n.raft.LeaderWithID()
	return ring.NodeID(id)
}

// IsLeader reports whether this node is the raft leader.
func (n *Node) IsLeader() bool {
	return !n.closed.Load() && n.raft.State() == raft.Leader
}

// LeaseTimeout is how long a node goes on acting on its slot table after
// it last heard from the raft leader. A node that takes over a slot from
// a failed primary waits this long before serving it, so the old primary
// — which stops acknowledging once InContact is false — and the new one
// never acknowledge writes for a slot at the same time.
func (n *Node) LeaseTimeout() time.Duration { return 2 * n.timing.heartbeat }

// InContact reports whether this node may act as a primary now: its last
// contact with the cluster (see contact in lease.go) is within
// LeaseTimeout.
func (n *Node) InContact() bool {
	if n.closed.Load() {
		return false
	}
	return time.Since(n.contact()) < n.LeaseTimeout()
}

// SetState declares this node StateActive or StateDraining and gossips
// it; it returns once the change is broadcast or ctx ends (the change then
// still spreads). The leader reacts as to any membership event: draining
// takes the node's primaries away. It does not wait for that table; watch
// Changes.
func (n *Node) SetState(ctx context.Context, s State) error {
	if s != StateActive && s != StateDraining {
		return fmt.Errorf("%w: SetState(%v)", ErrBadState, s)
	}
	if n.closed.Load() {
		return ErrClosed
	}
	n.metaMu.Lock()
	changed := n.self.State != s
	n.self.State = s
	n.metaMu.Unlock()
	if !changed {
		return nil
	}
	n.log.Info("state changed", "state", s)
	select {
	case n.gossipKick <- struct{}{}:
	default:
	}
	if err := n.ml.UpdateNode(remaining(ctx, n.timing.metaUpdate)); err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// remaining is the time left before ctx's deadline, or def without one.
func remaining(ctx context.Context, def time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return def
}

// DataListener returns the listener for data streams (kind 'D') on the
// cluster port: authenticated connections that other nodes opened with
// DialData. Accept returns net.ErrClosed once the node is closed. Streams
// wait for Accept in a small backlog; unaccepted ones beyond it are
// refused.
func (n *Node) DataListener() net.Listener { return n.mux.Listener(transport.KindData) }

// DialData opens an authenticated data stream to member id's cluster
// port. ctx bounds the connect and handshake, not the stream. It fails
// with ErrUnknownMember for a name that is neither alive in gossip nor in
// the roster, and with an error wrapping ErrAuth if the peer does not
// know the secret.
func (n *Node) DialData(ctx context.Context, id ring.NodeID) (net.Conn, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	addr := ""
	if id == n.name {
		addr = n.clusterAddr
	} else {
		n.viewMu.Lock()
		if p, ok := n.view[string(id)]; ok && p.status == peerAlive {
			addr = p.meta.ClusterAddr
		}
		n.viewMu.Unlock()
	}
	if addr == "" {
		st, _ := n.fsm.state()
		for _, e := range st.Roster {
			if e.Name == string(id) {
				addr = e.ClusterAddr
			}
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	c, err := n.mux.Dial(ctx, addr, transport.KindData)
	if errors.Is(err, transport.ErrClosed) {
		return nil, ErrClosed
	}
	return c, err
}

// Status summarises the cluster as this node sees it.
func (n *Node) Status() Status {
	t := n.Table()
	st, _ := n.fsm.state()
	s := Status{
		Self:      n.name,
		Leader:    n.Leader(),
		ClusterID: st.ClusterID,
		Epoch:     t.Epoch(),
		Replicas:  n.cfg.Replicas,
		Voters:    []ring.NodeID{},
	}
	voter := map[ring.NodeID]bool{}
	if !n.closed.Load() {
		if f := n.raft.GetConfiguration(); f.Error() == nil {
			for _, srv := range f.Configuration().Servers {
				if srv.Suffrage == raft.Voter {
					voter[ring.NodeID(srv.ID)] = true
					s.Voters = append(s.Voters, ring.NodeID(srv.ID))
				}
			}
		}
	}
	slices.SortFunc(s.Voters, compareIDs)
	prim := t.PrimaryCounts()
	places := map[ring.NodeID]int{}
	if len(prim) > 0 {
		for slot := range ring.Slots {
			for _, id := range t.Replicas(uint16(slot)) {
				places[id]++
			}
		}
	}
	for _, m := range n.Members() {
		s.Members = append(s.Members, MemberStatus{
			Member: m, Voter: voter[m.Name], Primaries: prim[m.Name], Places: places[m.Name],
		})
	}
	return s
}

// Leave leaves the cluster for good and closes the node. A leader first
// hands leadership to another voter. The node then announces its
// departure in gossip, and the leader drops it from the roster and the
// slot table at once (no DownGrace: its replica places are reassigned
// now), promotes a replacement if it was a voter, and removes it from the
// raft configuration. Leave waits for that, bounded by ctx, then leaves
// the gossip pool and closes. Handing data off is the caller's job before
// Leave (SetState(StateDraining) and replication). The node is closed even
// when Leave returns an error.
func (n *Node) Leave(ctx context.Context) error {
	if n.closed.Load() {
		return ErrClosed
	}
	var errs []error
	others := n.ml.NumMembers() > 1
	if err := n.Depart(ctx); err != nil && others {
		errs = append(errs, err)
	}
	n.mlMu.Lock()
	if !n.mlDown {
		if err := n.ml.Leave(remaining(ctx, n.timing.metaUpdate)); err != nil && others {
			errs = append(errs, fmt.Errorf("cluster: gossip leave: %w", err))
		}
	}
	n.mlMu.Unlock()
	errs = append(errs, n.Close())
	return errors.Join(errs...)
}

// Depart is Leave without closing: it announces that this node leaves
// for good and waits until the committed roster and slot table no longer
// name it (nor the raft configuration), so that the caller can wait for
// its slots' new replicas before it goes. Idempotent; Leave calls it.
func (n *Node) Depart(ctx context.Context) error {
	if n.closed.Load() {
		return ErrClosed
	}
	others := n.ml.NumMembers() > 1
	n.HandOverLeadership() // waitGone retries if this fails
	n.metaMu.Lock()
	already := n.self.Leaving
	n.self.Leaving = true
	n.metaMu.Unlock()
	if !already {
		n.log.Info("leaving the cluster")
	}
	select {
	case n.gossipKick <- struct{}{}: // in case this node leads
	default:
	}
	if !others {
		return nil
	}
	n.ml.UpdateNode(remaining(ctx, n.timing.metaUpdate))
	return n.waitGone(ctx)
}

// HandOverLeadership hands raft leadership to another voter if this node
// leads and another voter is known. A node about to stop on purpose calls
// it first: gone as leader, it would leave the others to notice, elect,
// and meanwhile lose contact, so that every primary stops acknowledging
// writes until a new leader is heard. It returns once the transfer is
// done or has failed (raft bounds it by the election timeout); a failure
// is logged and the others then elect as after a crash.
func (n *Node) HandOverLeadership() {
	if n.closed.Load() || n.raft.State() != raft.Leader || n.ml.NumMembers() < 2 || !n.otherVoter() {
		return
	}
	start := time.Now()
	if err := n.await(n.raft.LeadershipTransfer()); err != nil {
		n.log.Warn("could not hand raft leadership over; the others elect a leader once this node is gone", "err", err)
		return
	}
	n.log.Info("handed raft leadership over", "to", n.Leader(), "took", time.Since(start).Round(time.Millisecond))
}

// otherVoter reports whether the raft configuration has a voter other
// than this node.
func (n *Node) otherVoter() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(n.name) {
			return true
		}
	}
	return false
}

// waitGone waits until this node is out of the committed roster and the
// raft configuration. While it still leads once out of the roster (its
// own reconcile dropped it, and promoted a replacement if needed), it
// hands leadership over, so that the next leader removes it from raft.
func (n *Node) waitGone(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*n.timing.apply)
	defer cancel()
	tick := time.NewTicker(n.timing.tick)
	defer tick.Stop()
	for {
		st, _ := n.fsm.state()
		inRoster := slices.ContainsFunc(st.Roster, func(e rosterEntry) bool { return e.Name == string(n.name) })
		inConfig := true
		if f := n.raft.GetConfiguration(); f.Error() == nil {
			inConfig = slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return s.ID == raft.ServerID(n.name) })
		}
		if !inRoster && !inConfig {
			return nil
		}
		if !inRoster && n.raft.State() == raft.Leader && n.otherVoter() {
			if err := n.await(n.raft.LeadershipTransfer()); err != nil {
				n.log.Debug("leadership transfer before leaving failed; retrying", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: leave not confirmed (in roster %v, in raft %v): %w", inRoster, inConfig, ctx.Err())
		case <-tick.C:
		}
	}
}

// Close stops the node at once, without telling the cluster: to the
// others it looks like a failure, and the leader applies DownGrace. It
// waits for the node's goroutines, which may take up to the gossip TCP
// timeout (10 s with ProfileLAN) if a join attempt to an unreachable
// address is in flight. It is idempotent; afterwards methods return
// ErrClosed.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		n.cancel()
		var errs []error
		if n.raft != nil {
			errs = append(errs, n.raft.Shutdown().Error())
		}
		if n.trans != nil {
			errs = append(errs, n.trans.Close())
		}
		if n.ml != nil {
			n.mlMu.Lock()
			n.mlDown = true
			errs = append(errs, n.ml.Shutdown())
			n.mlMu.Unlock()
		}
		n.wg.Wait()
		if n.mux != nil {
			errs = append(errs, n.mux.Close())
		}
		if n.st != nil {
			errs = append(errs, n.st.close())
		}
		n.changes.shut()
		n.peers.shut()
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// notifier hands out channels that are closed at the next notify.
type notifier struct {
	mu   sync.Mutex // guards ch and done
	ch   chan struct{}
	done bool
}

func (c *notifier) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
		if c.done {
			close(c.ch)
		}
	}
	return c.ch
}

func (c *notifier) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil && !c.done {
		close(c.ch)
		c.ch = nil
	}
}

// shut closes the current channel and every later one.
func (c *notifier) shut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	if c.ch != nil {
		close(c.ch)
	}
	c.ch = make(chan struct{})
	close(c.ch)
}

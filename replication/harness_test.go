package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

// This file is the in-process test harness: a fake Cluster per node over
// real loopback TCP, with a registry of listen addresses, partitions
// (refuse: dials fail, streams are cut) and black holes (streams are
// accepted and never answered), a settable table, contact flag and lease.

// testNet is the shared registry of nodes and their addresses.
type testNet struct {
	t    testing.TB
	sink net.Listener // black hole: accepts streams and never reads them

	mu    sync.Mutex
	nodes map[ring.NodeID]*testNode
	held  []net.Conn // streams held open by the sink
}

// testNode is one node: its fake control plane, store and replicator.
type testNode struct {
	id    ring.NodeID
	net   *testNet
	cl    *fakeCluster
	store *storage.Store
	rep   *Replicator
	kv    *KV
}

// fakeCluster implements Cluster for one node.
type fakeCluster struct {
	id    ring.NodeID
	net   *testNet
	ln    *testListener
	addr  string
	lease time.Duration

	mu      sync.Mutex // guards table and changes
	table   *ring.Table
	changes chan struct{}

	contact  atomic.Bool
	lapses   atomic.Uint64
	refused  atomic.Bool  // partitioned: dials to and from it fail, accepted streams are closed
	blackout atomic.Bool  // black hole: dials to it reach the sink
	slow     atomic.Int64 // delay, in ns, of every read from a stream dialed to it

	connsMu sync.Mutex // guards conns
	conns   []net.Conn // every stream this node took part in
}

func (c *fakeCluster) Table() *ring.Table {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.table
}

func (c *fakeCluster) Changes() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changes
}

func (c *fakeCluster) InContact() bool             { return c.contact.Load() }
func (c *fakeCluster) Lapses() uint64              { return c.lapses.Load() }
func (c *fakeCluster) LeaseTimeout() time.Duration { return c.lease }
func (c *fakeCluster) DataListener() net.Listener  { return c.ln }

func (c *fakeCluster) DialData(ctx context.Context, id ring.NodeID) (net.Conn, error) {
	peer := c.net.node(id)
	if peer == nil {
		return nil, fmt.Errorf("fake cluster: unknown node %s", id)
	}
	if c.refused.Load() || peer.cl.refused.Load() {
		return nil, fmt.Errorf("fake cluster: %s -> %s: partitioned", c.id, id)
	}
	addr := peer.cl.addr
	if peer.cl.blackout.Load() {
		addr = c.net.sink.Addr().String()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.track(nc)
	peer.cl.track(nc)
	// A partition that began while dialing: the sweep may have missed nc.
	if c.refused.Load() || peer.cl.refused.Load() || (peer.cl.blackout.Load() && addr == peer.cl.addr) {
		nc.Close()
		return nil, fmt.Errorf("fake cluster: %s -> %s: partitioned", c.id, id)
	}
	if d := time.Duration(peer.cl.slow.Load()); d > 0 {
		return &slowConn{Conn: nc, delay: d}, nil
	}
	return nc, nil
}

// slowConn delays what the dialer reads (the peer's replies).
type slowConn struct {
	net.Conn
	delay time.Duration
}

func unwrap(nc net.Conn) net.Conn {
	if sc, ok := nc.(*slowConn); ok {
		return sc.Conn
	}
	return nc
}

func (c *slowConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	time.Sleep(c.delay)
	return n, err
}

func (c *fakeCluster) track(nc net.Conn) {
	c.connsMu.Lock()
	c.conns = append(c.conns, nc)
	c.connsMu.Unlock()
}

// cut closes every stream this node took part in.
func (c *fakeCluster) cut() {
	c.connsMu.Lock()
	conns := c.conns
	c.conns = nil
	c.connsMu.Unlock()
	for _, nc := range conns {
		nc.Close()
	}
}

// setTable installs t and closes the Changes channel.
func (c *fakeCluster) setTable(t *ring.Table) {
	c.mu.Lock()
	c.table = t
	close(c.changes)
	c.changes = make(chan struct{})
	c.mu.Unlock()
}

// testListener hands the Replicator accepted streams, except while its
// node is partitioned (then it closes them) or black-holed (then no peer
// reaches it).
type testListener struct {
	net.Listener
	cl *fakeCluster
}

func (l *testListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.cl.track(nc)
		if l.cl.refused.Load() {
			nc.Close()
			continue
		}
		return nc, nil
	}
}

// harnessConfig tunes newCluster.
type harnessConfig struct {
	Nodes       []ring.NodeID // default A, B, C
	Lease       time.Duration // default 100ms
	Timeout     time.Duration // Config.Timeout; default 5s (see newCluster)
	WriteQuorum int
	Async       bool
	NoWait      bool // do not wait for every node to be Ready
	AntiEntropy time.Duration
	// TombstoneTTL of every node's store; default the store's (1 h).
	TombstoneTTL time.Duration
	DropAfter    time.Duration // Config.DropAfter
}

// newCluster starts one node per name over loopback TCP, all with the
// table ring.Build(nodes, 3, 1, nil), in contact, and waits until every
// node is Ready. Everything is stopped by t.Cleanup.
func newCluster(t testing.TB, hc harnessConfig) (*testNet, *ring.Table) {
	t.Helper()
	if hc.Nodes == nil {
		hc.Nodes = []ring.NodeID{"A", "B", "C"}
	}
	if hc.Lease == 0 {
		hc.Lease = 100 * time.Millisecond
	}
	if hc.Timeout == 0 {
		// Only bounds how long a healthy backup may take to answer:
		// tests that wait for it to expire set their own. Under the
		// race detector on a loaded CI machine, 1 s proved too short.
		hc.Timeout = 5 * time.Second
	}
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNet{t: t, sink: sink, nodes: make(map[ring.NodeID]*testNode)}
	go func() {
		for {
			nc, err := sink.Accept()
			if err != nil {
				return
			}
			tn.mu.Lock()
			tn.held = append(tn.held, nc)
			tn.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		sink.Close()
		tn.mu.Lock()
		for _, nc := range tn.held {
			nc.Close()
		}
		tn.mu.Unlock()
	})

	members := make([]ring.Member, len(hc.Nodes))
	for i, id := range hc.Nodes {
		members[i] = ring.Member{ID: id}
	}
	table, err := ring.Build(members, 3, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range hc.Nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cl := &fakeCluster{id: id, net: tn, addr: ln.Addr().String(), lease: hc.Lease, table: table, changes: make(chan struct{})}
		cl.ln = &testListener{Listener: ln, cl: cl}
		cl.contact.Store(true)
		st, err := storage.Open(storage.Config{TombstoneTTL: hc.TombstoneTTL})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := New(Config{Self: id, Cluster: cl, Store: st, WriteQuorum: hc.WriteQuorum, Async: hc.Async, Timeout: hc.Timeout,
			CatchUpInterval: 50 * time.Millisecond, AntiEntropy: hc.AntiEntropy, DropAfter: hc.DropAfter})
		if err != nil {
			t.Fatal(err)
		}
		n := &testNode{id: id, net: tn, cl: cl, store: st, rep: rep, kv: rep.KV()}
		tn.mu.Lock()
		tn.nodes[id] = n
		tn.mu.Unlock()
		t.Cleanup(func() {
			// The listener first, as the cluster node would: Close must
			// cope with either order (TestCloseEndsAccept covers the
			// other).
			ln.Close()
			done := make(chan struct{})
			go func() {
				rep.Close()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Errorf("%s: Replicator.Close did not return", id)
			}
			cl.cut()
			st.Close()
		})
	}
	for _, id := range hc.Nodes {
		n := tn.node(id)
		n.rep.Start(engine(n.rep))
	}
	if !hc.NoWait {
		for _, id := range hc.Nodes {
			tn.node(id).waitReady(t)
		}
	}
	return tn, table
}

func (tn *testNet) node(id ring.NodeID) *testNode {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.nodes[id]
}

func (tn *testNet) all() []*testNode {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	out := make([]*testNode, 0, len(tn.nodes))
	for _, n := range tn.nodes {
		out = append(out, n)
	}
	return out
}

// partition cuts n off: dials to and from it fail and its streams close.
func (n *testNode) partition() {
	n.cl.refused.Store(true)
	n.cutAndWait()
}

// blackhole makes n unreachable without refusing: its streams close, and
// new ones reach a sink that never answers.
func (n *testNode) blackhole() {
	n.cl.blackout.Store(true)
	n.cutAndWait()
}

// slowDown delays the replies of n's streams dialed from now on by d.
func (n *testNode) slowDown(d time.Duration) {
	n.cl.slow.Store(int64(d))
	n.cutAndWait()
}

// heal undoes partition and blackhole. It also closes n's streams, so
// streams to the sink are redialed.
func (n *testNode) heal() {
	n.cl.refused.Store(false)
	n.cl.blackout.Store(false)
	n.cl.slow.Store(0)
	n.cutAndWait()
}

// cutAndWait closes n's streams and waits until every replicator's
// client side has noticed, so that the next request redials (and sees
// the partition) instead of failing on a stream that is already closed
// but not yet known to be.
func (n *testNode) cutAndWait() {
	n.cl.connsMu.Lock()
	cut := make(map[net.Conn]bool, len(n.cl.conns))
	for _, nc := range n.cl.conns {
		cut[nc] = true
	}
	n.cl.connsMu.Unlock()
	// No harness lock is held while taking a peer's lock: peer.get
	// holds it across DialData, which takes the registry's.
	var peers []*peer
	for _, other := range n.net.all() {
		r := other.rep
		r.peersMu.Lock()
		for _, p := range r.peers {
			peers = append(peers, p)
		}
		r.peersMu.Unlock()
	}
	var affected []*peerConn
	for _, p := range peers {
		p.mu.Lock()
		if p.conn != nil && cut[unwrap(p.conn.nc)] {
			affected = append(affected, p.conn)
		}
		p.mu.Unlock()
	}
	n.cl.cut()
	for _, c := range affected {
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			n.net.t.Errorf("a stream of %s was cut but its peer connection is still live", n.id)
			return
		}
	}
}

func (n *testNode) setTable(t *ring.Table) { n.cl.setTable(t) }

// waitTable waits until n's replicator acts on a table of epoch e.
func (n *testNode) waitTable(t testing.TB, e uint64) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%s to apply epoch %d", n.id, e), func() bool {
		tb := n.rep.Table()
		return tb != nil && tb.Epoch() == e
	})
}

func (n *testNode) waitReady(t testing.TB) {
	t.Helper()
	waitFor(t, 15*time.Second, string(n.id)+" to be ready", func() bool {
		ok, _ := n.rep.Ready()
		return ok
	})
}

// waitFor polls cond every few milliseconds until it holds or d passed.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// keysWith returns n keys whose slot's replica list in t satisfies ok.
func keysWith(t testing.TB, tb *ring.Table, prefix string, n int, ok func(reps []ring.NodeID) bool) []string {
	t.Helper()
	var keys []string
	for i := 0; len(keys) < n; i++ {
		if i > 1_000_000 {
			t.Fatalf("no %d keys with the wanted replicas", n)
		}
		k := prefix + strconv.Itoa(i)
		if ok(tb.Replicas(ring.Slot(k))) {
			keys = append(keys, k)
		}
	}
	return keys
}

// primaryIs matches slots whose replica list starts with ids, in order.
func primaryIs(ids ...ring.NodeID) func([]ring.NodeID) bool {
	return func(reps []ring.NodeID) bool {
		if len(reps) < len(ids) {
			return false
		}
		for i, id := range ids {
			if reps[i] != id {
				return false
			}
		}
		return true
	}
}

// set writes key=value through n's KV.
func (n *testNode) set(ctx context.Context, key, value string) error {
	_, err := n.kv.Update(ctx, ring.Slot(key), key, func(storage.Stash, bool) (storage.Stash, storage.Op) {
		return storage.Stash{Kind: storage.KindString, Value: value}, storage.OpPut
	})
	return err
}

// del deletes key through n's KV.
func (n *testNode) del(ctx context.Context, key string) (storage.Op, error) {
	return n.kv.Update(ctx, ring.Slot(key), key, func(storage.Stash, bool) (storage.Stash, storage.Op) {
		return storage.Stash{}, storage.OpDelete
	})
}

// lookup is n's store's Lookup of key.
func (n *testNode) lookup(key string) (storage.Stash, bool) {
	return n.store.Lookup(ring.Slot(key), key)
}

// engine is a tiny RESP engine over r's KV: SET k v, GET k, DEL k.
// Errors of type *Error reply with their own code.
func engine(r *Replicator) ExecFunc {
	kv := r.KV()
	return func(ctx context.Context, proto int, args [][]byte) []byte {
		if len(args) == 0 {
			return []byte("-ERR empty command\r\n")
		}
		cmd := strings.ToUpper(string(args[0]))
		switch {
		case cmd == "SET" && len(args) == 3:
			key, val := string(args[1]), string(args[2])
			_, err := kv.Update(ctx, ring.Slot(key), key, func(storage.Stash, bool) (storage.Stash, storage.Op) {
				return storage.Stash{Kind: storage.KindString, Value: val}, storage.OpPut
			})
			if err != nil {
				return respError(err)
			}
			return []byte("+OK\r\n")
		case cmd == "GET" && len(args) == 2:
			// As the RESP server does: the read gate first, so a value
			// whose write is in doubt is never returned.
			key := string(args[1])
			if err := kv.Settled(ring.Slot(key), key); err != nil {
				return respError(err)
			}
			st, ok := kv.Get(ring.Slot(key), key)
			if !ok {
				return []byte("$-1\r\n")
			}
			return fmt.Appendf(nil, "$%d\r\n%s\r\n", len(st.Value), st.Value)
		case cmd == "DEL" && len(args) == 2:
			key := string(args[1])
			op, err := kv.Update(ctx, ring.Slot(key), key, func(storage.Stash, bool) (storage.Stash, storage.Op) {
				return storage.Stash{}, storage.OpDelete
			})
			if err != nil {
				return respError(err)
			}
			if op == storage.OpDelete {
				return []byte(":1\r\n")
			}
			return []byte(":0\r\n")
		}
		return []byte("-ERR unknown command '" + cmd + "'\r\n")
	}
}

func respError(err error) []byte {
	var re *Error
	if errors.As(err, &re) {
		return []byte("-" + re.Error() + "\r\n")
	}
	return []byte("-ERR " + err.Error() + "\r\n")
}

// TestHarness checks the harness itself: every node becomes ready, a
// partition refuses streams both ways, and heal restores them.
func TestHarness(t *testing.T) {
	t.Parallel()
	tn, _ := newCluster(t, harnessConfig{})
	a := tn.node("A")
	ctx := context.Background()
	if _, err := a.cl.DialData(ctx, "B"); err != nil {
		t.Fatalf("dial B: %v", err)
	}
	tn.node("B").partition()
	if _, err := a.cl.DialData(ctx, "B"); err == nil {
		t.Fatal("dial to a partitioned node succeeded")
	}
	if _, err := tn.node("B").cl.DialData(ctx, "A"); err == nil {
		t.Fatal("dial from a partitioned node succeeded")
	}
	tn.node("B").heal()
	if _, err := a.cl.DialData(ctx, "B"); err != nil {
		t.Fatalf("dial B after heal: %v", err)
	}
}

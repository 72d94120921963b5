package stash

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stashcluster/stash/cluster"
	"github.com/stashcluster/stash/replication"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/server"
)

// clusterPart is a node's cluster membership and data plane, present in
// cluster mode only.
type clusterPart struct {
	drain   atomic.Pointer[DrainStatus]
	holding atomic.Bool // primaries held back until the backups caught up (rejoin)
	n       *Node
	cn      *cluster.Node
	rep     *replication.Replicator
	// addrs maps member names to their RESP addresses and liveness,
	// refreshed on table and membership changes (Route needs it per
	// command).
	addrs atomic.Pointer[map[ring.NodeID]memberAddr]
	stop  chan struct{}
	done  chan struct{}
}

// openCluster joins (or forms) the cluster and prepares the data plane.
// The RESP listener must be open (its address is advertised).
func (n *Node) openCluster(ctx context.Context, secret []byte) error {
	cfg := n.cfg
	ccfg := cluster.DefaultConfig()
	ccfg.Name = cfg.Name
	ccfg.Zone = cfg.Zone
	ccfg.BindAddr = cfg.Bind
	if ccfg.BindAddr == "localhost" {
		ccfg.BindAddr = "127.0.0.1"
	}
	ccfg.AdvertiseAddr = cfg.Advertise
	ccfg.GossipPort = cfg.GossipPort
	ccfg.ClusterPort = cfg.ClusterPort
	ccfg.Join = cfg.Join
	ccfg.BootstrapExpect = cfg.BootstrapExpect
	ccfg.Secret = secret
	if !cfg.Memory {
		ccfg.DataDir = cfg.DataDir
	}
	ccfg.Replicas = cfg.Replicas
	ccfg.DownGrace = cfg.DownGrace
	ccfg.Profile = cfg.ClusterProfile
	ccfg.Network = cfg.Network
	ccfg.Logger = n.log.With("part", "cluster")
	host := cfg.Advertise
	if host == "" || cfg.Network != nil {
		// With a Network, Advertise is an address on it; the client and
		// admin ports are where they listen on the OS network.
		host = ccfg.BindAddr
	}
	if n.respLn != nil {
		ccfg.RESPAddr = net.JoinHostPort(host, strconv.Itoa(n.respLn.Addr().(*net.TCPAddr).Port))
	}
	if n.adminLn != nil {
		ccfg.AdminAddr = net.JoinHostPort(host, strconv.Itoa(n.adminLn.Addr().(*net.TCPAddr).Port))
	}
	cn, err := cluster.Open(ctx, ccfg)
	if err != nil {
		return fmt.Errorf("stash: joining the cluster: %w", err)
	}
	rep, err := replication.New(replication.Config{
		Self:        ring.NodeID(cfg.Name),
		Cluster:     cn,
		Store:       n.store,
		WriteQuorum: cfg.WriteQuorum,
		Async:       cfg.Replication == ReplicationAsync,
		ApplyWaits:  cfg.Fsync == FsyncAlways,
		Dir:         cfg.DataDir,
		DropAfter:   cfg.DropAfter,
		Logger:      n.log.With("part", "replication"),
	})
	if err != nil {
		cn.Close()
		return fmt.Errorf("stash: %w", err)
	}
	if cfg.Replication == ReplicationAsync || cfg.WriteQuorum == 1 {
		n.log.Warn("writes are acknowledged before backups hold them: a primary failure can lose acknowledged writes",
			"replication", cfg.Replication, "write_quorum", cfg.WriteQuorum)
	}
	c := &clusterPart{n: n, cn: cn, rep: rep, stop: make(chan struct{}), done: make(chan struct{})}
	empty := map[ring.NodeID]memberAddr{}
	c.addrs.Store(&empty)
	c.refresh()
	go c.watch()
	n.cl = c
	return nil
}

// start begins serving peers once the RESP engine exists.
// start serves the data plane. A node with data from before (a restart)
// first holds its primaries back (it declares itself draining, so the
// leader makes it primary of nothing) until every slot it backs up has
// caught up with its primary; then it declares itself active and takes
// its primaries back. A restarted node so never serves a slot as primary
// with a copy that missed writes while it was away, and the takeover,
// with a copy already in sync, is quick.
func (c *clusterPart) start() {
	c.rep.Start(func(ctx context.Context, proto int, args [][]byte) []byte {
		if slot, ok := replication.LocalRead(ctx); ok {
			return c.n.resp.ExecLocalRead(ctx, slot, proto, args)
		}
		return c.n.resp.Exec(ctx, proto, args)
	})
	if c.n.store.Fresh() {
		// Nothing from before to catch up on: a new cluster's nodes
		// holding back would only move primaries around while it forms.
		// (A node whose disk was wiped is kept from counting as a
		// replica by the replication layer until it has resynced.)
		return
	}
	c.holding.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := c.cn.SetState(ctx, cluster.StateDraining); err != nil {
		c.n.log.Warn("could not hold primaries back while catching up", "err", err)
	}
	cancel()
	go c.rejoin()
}

// rejoin waits until the node is in the table and all its backup slots
// are in sync, then makes it eligible for primaries again.
func (c *clusterPart) rejoin() {
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		t := c.rep.Table()
		if t == nil || !slices.Contains(t.Members(), ring.NodeID(c.n.cfg.Name)) || !c.cn.InContact() || c.rep.Unsynced() > 0 {
			continue
		}
		if c.n.state.Load() != stateServing {
			return // shutting down: the drain owns the state now
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.cn.SetState(ctx, cluster.StateActive)
		cancel()
		if err != nil {
			c.n.log.Warn("could not declare the node active; retrying", "err", err)
			continue
		}
		c.n.log.Info("backup slots in sync: taking primaries", "after", time.Since(start).Round(time.Millisecond))
		// Not ready until the table gives the primaries back (bounded:
		// a table may leave this node none).
		self := ring.NodeID(c.n.cfg.Name)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if t := c.rep.Table(); t != nil && t.PrimaryCounts()[self] > 0 {
				break
			}
			select {
			case <-c.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		c.holding.Store(false)
		return
	}
}

// handOff marks this node draining, so the leader gives its primaries to
// their backups (which take them over with the usual lease wait and
// reconciliation), and waits until the table has none left or ctx ends.
// The node keeps its replica places: a restart comes back to them within
// --down-grace and catches up when it takes slots over. (Leaving for good
// would need its data copied elsewhere first, which the cluster cannot
// do yet.)
func (c *clusterPart) handOff(ctx context.Context) {
	self := ring.NodeID(c.n.cfg.Name)
	start := time.Now()
	total := 0
	if t := c.cn.Table(); t != nil {
		total = t.PrimaryCounts()[self]
	}
	sent0 := c.rep.ServedBytes.Load()
	progress := func(phase string, left int) DrainStatus {
		d := DrainStatus{Phase: phase, Started: start, PrimariesTotal: total, PrimariesLeft: left,
			BytesSent: c.rep.ServedBytes.Load() - sent0, Elapsed: time.Since(start).Seconds()}
		if done := total - left; done > 0 && left > 0 {
			d.ETA = d.Elapsed / float64(done) * float64(left)
		}
		c.drain.Store(&d)
		return d
	}
	progress("announcing", total)
	c.n.log.Info("draining: handing this node's primaries to their backups", "primaries", total)
	if err := c.cn.SetState(ctx, cluster.StateDraining); err != nil {
		progress("failed", total)
		c.n.log.Warn("draining: could not announce it", "err", err)
		return
	}
	lastLog := time.Now()
	for {
		left := total
		if t := c.cn.Table(); t != nil {
			left = t.PrimaryCounts()[self]
		}
		d := progress("handing off primaries", left)
		if left == 0 {
			break
		}
		if time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			c.n.log.Info("draining", "primaries_left", left, "of", total, "bytes_sent", d.BytesSent, "eta_s", int(d.ETA+0.5))
		}
		select {
		case <-ctx.Done():
			progress("timed out", left)
			c.n.log.Warn("draining: timed out with primaries left; they fail over when this node is gone", "primaries_left", left, "waited", time.Since(start))
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The new primaries may still reconcile from this node: stay a
	// little longer than their lease wait.
	progress("serving the new primaries' catch-up", 0)
	select {
	case <-ctx.Done():
	case <-time.After(c.cn.LeaseTimeout() + 500*time.Millisecond):
	}
	d := progress("done", 0)
	c.n.log.Info("draining: primaries handed off", "primaries", total, "bytes_sent", d.BytesSent, "took", time.Since(start).Round(time.Millisecond))
}

// depart takes the node out of the slot table for good and waits until
// every slot it held has a complete copy on each of its new replicas.
// The drain (handOff) ran before: the node is primary of nothing.
func (c *clusterPart) depart(ctx context.Context) {
	self := ring.NodeID(c.n.cfg.Name)
	before := c.cn.Table()
	var held []uint16
	if before != nil {
		for s := range ring.Slots {
			if slices.Contains(before.Replicas(uint16(s)), self) {
				held = append(held, uint16(s))
			}
		}
	}
	start := time.Now()
	c.n.log.Info("leaving: giving this node's replica places to others", "slots", len(held))
	if err := c.cn.Depart(ctx); err != nil {
		c.n.log.Warn("leaving: the cluster did not confirm it; stopping anyway (its places go after the down grace)", "err", err)
		return
	}
	after := c.cn.Table()
	if after == nil || slices.Contains(after.Members(), self) {
		c.n.log.Warn("leaving: no table without this node yet; stopping anyway")
		return
	}
	sent0 := c.rep.ServedBytes.Load()
	lastLog := time.Time{}
	err := c.rep.WaitCopies(ctx, after, held, func(left int) {
		d := DrainStatus{Phase: "copying to new replicas", Started: start, SlotsTotal: len(held), SlotsLeft: left,
			BytesSent: c.rep.ServedBytes.Load() - sent0, Elapsed: time.Since(start).Seconds()}
		if prev := c.drain.Load(); prev != nil {
			d.PrimariesTotal = prev.PrimariesTotal
		}
		if done := len(held) - left; done > 0 && left > 0 {
			d.ETA = d.Elapsed / float64(done) * float64(left)
		}
		c.drain.Store(&d)
		if time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			c.n.log.Info("leaving: waiting for the new replicas", "slots_short", left, "of", len(held))
		}
	})
	if err != nil {
		c.n.log.Warn("leaving: stopping with slots short of copies; they are filled from their primaries", "err", err)
		return
	}
	d := DrainStatus{Phase: "left", Started: start, SlotsTotal: len(held), Elapsed: time.Since(start).Seconds()}
	c.drain.Store(&d)
	c.n.log.Info("leaving: every slot has its copies elsewhere", "slots", len(held), "took", time.Since(start).Round(time.Millisecond))
}

// DrainStatus is a drain's progress, in /v1/cluster while it runs.
type DrainStatus struct {
	Phase          string    `json:"phase"`
	Started        time.Time `json:"started"`
	PrimariesTotal int       `json:"primaries_total"`
	PrimariesLeft  int       `json:"primaries_left"`
	// SlotsTotal and SlotsLeft: when leaving for good, the slots this
	// node held and those not yet complete on their new replicas.
	SlotsTotal int `json:"slots_total,omitempty"`
	SlotsLeft  int `json:"slots_left,omitempty"`
	// BytesSent counts stash bytes this node streamed to the nodes
	// taking its slots over.
	BytesSent int64   `json:"bytes_sent"`
	Elapsed   float64 `json:"elapsed_seconds"`
	ETA       float64 `json:"eta_seconds,omitempty"`
}

func (c *clusterPart) close(leave bool) error {
	close(c.stop)
	<-c.done
	c.rep.Close()
	if leave {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.cn.Leave(ctx) // out of the gossip pool too; closes
	}
	return c.cn.Close()
}

func (c *clusterPart) watch() {
	defer close(c.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		// Taken before refresh reads the state, so no change is
		// missed: a member restarting must not look down here for a
		// tick after gossip saw it back (its slots' requests would get
		// TRYAGAIN instead of a forward meanwhile).
		moved, changed := c.cn.Changes(), c.cn.MembersChanged()
		c.refresh()
		select {
		case <-c.stop:
			return
		case <-moved:
		case <-changed:
		case <-tick.C:
		}
	}
}

type memberAddr struct {
	resp  string
	alive bool
}

func (c *clusterPart) refresh() {
	m := make(map[ring.NodeID]memberAddr)
	for _, mem := range c.cn.Members() {
		m[mem.Name] = memberAddr{mem.RESPAddr, mem.Alive}
	}
	c.addrs.Store(&m)
}

// Route implements server.Router.
func (c *clusterPart) Route(slot uint16, write, readonly bool) server.Route {
	d := c.rep.Route(slot, write, readonly)
	switch {
	case d.Err != "":
		return server.Route{Err: d.Err}
	case d.Local:
		return server.Route{Local: true}
	}
	m := (*c.addrs.Load())[d.Primary]
	if d.Fallback {
		if m.alive {
			// The previous primary runs the read for this node
			// (Forward); it would redirect a client straight back here.
			return server.Route{}
		}
		return server.Route{Err: fmt.Sprintf("TRYAGAIN slot %d is being taken over by this node", slot)}
	}
	if m.resp == "" || !m.alive {
		// Known down: answer at once (nothing done) rather than wait on
		// a dial; its slots move to a backup within seconds.
		return server.Route{Err: fmt.Sprintf("TRYAGAIN the primary of slot %d (%s) is down; its slots are moving", slot, d.Primary)}
	}
	return server.Route{Addr: m.resp}
}

// Forward implements server.Router.
func (c *clusterPart) Forward(ctx context.Context, slot uint16, proto int, args [][]byte) ([]byte, error) {
	return c.rep.Forward(ctx, slot, proto, args)
}

// nodeID is the Redis-style 40-hex-digit ID of a member.
func nodeID(name ring.NodeID) string {
	h := sha1.Sum([]byte(name))
	return hex.EncodeToString(h[:])
}

// View implements server.Router.
func (c *clusterPart) View() server.ClusterView {
	t := c.rep.Table()
	v := server.ClusterView{MyID: nodeID(ring.NodeID(c.n.cfg.Name))}
	if t == nil {
		return v
	}
	v.Epoch = t.Epoch()
	idx := make(map[ring.NodeID]int)
	alive := make(map[ring.NodeID]bool)
	for _, m := range c.cn.Members() {
		host, port := splitHostPort(m.RESPAddr)
		_, cport := splitHostPort(m.ClusterAddr)
		idx[m.Name] = len(v.Nodes)
		alive[m.Name] = m.Alive
		v.Nodes = append(v.Nodes, server.ClusterNode{
			ID: nodeID(m.Name), Name: string(m.Name), Host: host, Port: port, ClusterPort: cport,
			Alive: m.Alive, Self: m.Name == ring.NodeID(c.n.cfg.Name),
		})
	}
	v.OK = true
	cur := -1
	for s := range ring.Slots {
		reps := t.Replicas(uint16(s))
		var nodes []int
		for _, id := range reps {
			if i, ok := idx[id]; ok {
				nodes = append(nodes, i)
			}
		}
		if len(reps) == 0 || !alive[reps[0]] {
			v.OK = false
		}
		if cur >= 0 && slices.Equal(v.Ranges[cur].Nodes, nodes) {
			v.Ranges[cur].End = uint16(s)
			continue
		}
		v.Ranges = append(v.Ranges, server.SlotRange{Start: uint16(s), End: uint16(s), Nodes: nodes})
		cur = len(v.Ranges) - 1
	}
	return v
}

func splitHostPort(addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// remote runs a STASH.* command for tag t on the slot's primary when this
// node does not serve the slot, and reports whether it did (or answered
// for it: an unavailable slot, or a local read of a write in doubt). A tag that
// does not decode is left to the local path (which reports it).
func (n *Node) remote(ctx context.Context, t string, write bool, args ...[]byte) (reply []byte, done bool, err error) {
	if n.cl == nil {
		return nil, false, nil
	}
	tg, derr := n.ops.Codec.Decode(t)
	if derr != nil {
		return nil, false, nil
	}
	key := tg.ID.Key()
	slot := ring.Slot(key)
	rt := n.cl.Route(slot, write, false)
	switch {
	case rt.Err != "":
		return nil, true, fmt.Errorf("%w: %s", ErrUnavailable, rt.Err)
	case rt.Local && !write:
		// As the RESP front end does (server.ReadGate): no read of a
		// write still in doubt.
		if err := n.cl.rep.KV().Settled(slot, key); err != nil {
			return nil, true, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return nil, false, nil
	case rt.Local:
		return nil, false, nil
	}
	rep, err := n.cl.Forward(ctx, slot, 2, args)
	if err != nil {
		return nil, true, forwardErr(err, write)
	}
	return rep, true, nil
}

// forwardErr maps a failed forward to this package's errors: nothing done
// (ErrUnavailable) when it never reached the primary or was a read, else
// maybe done (ErrNoQuorum).
func forwardErr(err error, write bool) error {
	var re *replication.Error
	if !write || (errors.As(err, &re) && re.Code == "TRYAGAIN") {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %v", ErrNoQuorum, err)
}

// parseReply decodes the RESP2 replies STASH.* commands give: +OK,
// :n, $n value / $-1, and -ERR text (mapped back to this package's
// errors).
func parseReply(b []byte) (val []byte, num int64, null bool, err error) {
	if len(b) < 3 {
		return nil, 0, false, fmt.Errorf("stash: short reply %q", b)
	}
	line := b[1:]
	end := indexCRLF(line)
	if end < 0 {
		return nil, 0, false, fmt.Errorf("stash: malformed reply %q", b)
	}
	head := string(line[:end])
	switch b[0] {
	case '+':
		return nil, 0, false, nil
	case ':':
		num, err := strconv.ParseInt(head, 10, 64)
		return nil, num, false, err
	case '$':
		l, err := strconv.Atoi(head)
		if err != nil {
			return nil, 0, false, err
		}
		if l < 0 {
			return nil, 0, true, nil
		}
		body := line[end+2:]
		if len(body) < l {
			return nil, 0, false, fmt.Errorf("stash: truncated reply")
		}
		return append([]byte(nil), body[:l]...), 0, false, nil
	case '-':
		return nil, 0, false, replyError(head)
	}
	return nil, 0, false, fmt.Errorf("stash: unexpected reply %q", head)
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return -1
}

func replyError(msg string) error {
	code, _, _ := cutSpace(msg)
	switch code {
	case "BADTAG":
		return fmt.Errorf("%w: %s", ErrBadTag, msg)
	case "NOQUORUM":
		return fmt.Errorf("%w: %s", ErrNoQuorum, msg)
	case "TRYAGAIN", "CLUSTERDOWN", "LOADING":
		return fmt.Errorf("%w: %s", ErrUnavailable, msg)
	case "WRONGTYPE":
		return fmt.Errorf("%w: %s", ErrWrongType, msg)
	}
	return errors.New("stash: " + msg)
}

func cutSpace(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// registerMetrics adds the data plane's figures to the node's /metrics.
func (c *clusterPart) registerMetrics(reg *prometheus.Registry) {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		counter("stash_replicated_writes_total", "Writes this node, as primary, copied to backups and waited for.", &c.rep.Replicated),
		counter("stash_noquorum_writes_total", "Writes that did not reach the write quorum (answered NOQUORUM).", &c.rep.NoQuorum),
		counter("stash_reconciled_entries_total", "Entries fetched from other replicas while taking slots over.", &c.rep.Reconciled),
		counter("stash_repaired_entries_total", "Entries a backup fetched from its primary because its copy lacked them (catch-up, re-replication, anti-entropy).", &c.rep.Repaired),
		counter("stash_pruned_entries_total", "Entries a backup removed because its primary no longer had them (deleted while the backup was away, tombstone since removed).", &c.rep.Pruned),
		counter("stash_dropped_slots_total", "Copies of slots this node deleted some time after it stopped being one of their replicas.", &c.rep.DroppedSlots),
		counter("stash_carried_copies_total", "Writes forwarded by a backup of their slot whose copy for that backup travelled in the primary's reply.", &c.rep.Carried),
		counter("stash_uncarried_copies_total", "Carried copies the forwarding node did not confirm (refused, timed out, stream lost), re-sent to the backups.", &c.rep.Uncarried),
		counter("stash_recovered_stashes_total", "Stashes this node, as primary, had no record of and adopted from the node their tag names, shortly after a slot table change.", &c.rep.Recovered),
		counter("stash_fallback_reads_total", "Reads this node ran for a slot it had just handed over, for a new primary still taking the slot over.", &c.rep.FallbackReads),
		counter("stash_refused_stale_copies_total", "Copies refused because they came from a primary a newer table deposed.", &c.rep.Refused),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stash_catching_up_slots", Help: "Slots this node backs up whose copy is not in sync with the primary yet."},
			func() float64 { return float64(c.rep.Unsynced()) }),
	)
}

// ClusterStatus is what GET /v1/cluster returns: the control plane's view
// (members, leader, epoch, voters) and this node's data plane.
type ClusterStatus struct {
	cluster.Status
	// Ready is this node's readiness; Reason says what is missing.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// Serving counts the slots this node serves as primary now; Waiting
	// the slots it is primary for but still taking over.
	Serving int `json:"serving_slots"`
	Waiting int `json:"waiting_slots"`
	// CatchingUp counts the slots this node backs up whose copy is not
	// in sync with the primary yet (after a restart, a partition, or a
	// new replica place).
	CatchingUp int `json:"catching_up_slots"`
	// Resyncing: the node started without its data and does not count
	// as a replica of a slot until it has resynced it.
	Resyncing bool `json:"resyncing"`
	// UnderReplicated counts slots with fewer live copies than Replicas
	// (a member down, or fewer members than Replicas).
	UnderReplicated int `json:"under_replicated_slots"`
	// Drain is the progress of a drain under way (or finished).
	Drain *DrainStatus `json:"drain,omitempty"`
	// Counters since start.
	Forwarded  int64 `json:"forwarded"`
	Replicated int64 `json:"replicated_writes"`
	NoQuorum   int64 `json:"noquorum_writes"`
	Reconciled int64 `json:"reconciled_entries"`
	Refused    int64 `json:"refused_stale_copies"`
	// Repaired counts entries this node fetched as a backup because its
	// copy lacked them (catch-up, re-replication, anti-entropy).
	Repaired int64 `json:"repaired_entries"`
	// Pruned counts entries this node removed as a backup because its
	// primary no longer had them.
	Pruned int64 `json:"pruned_entries"`
}

func (c *clusterPart) status() ClusterStatus {
	st := ClusterStatus{Status: c.cn.Status()}
	st.Ready, st.Reason = c.rep.Ready()
	alive := map[ring.NodeID]bool{}
	for _, m := range c.cn.Members() {
		alive[m.Name] = m.Alive
	}
	if t := c.rep.Table(); t != nil {
		self := ring.NodeID(c.n.cfg.Name)
		for s := range ring.Slots {
			slot := uint16(s)
			reps := t.Replicas(slot)
			if reps[0] == self {
				if c.rep.SlotReady(slot) {
					st.Serving++
				} else {
					st.Waiting++
				}
			}
			live := 0
			for _, id := range reps {
				if alive[id] {
					live++
				}
			}
			if live < t.ReplicaCount() {
				st.UnderReplicated++
			}
		}
	}
	st.Forwarded = c.rep.Forwarded.Load()
	st.Replicated = c.rep.Replicated.Load()
	st.NoQuorum = c.rep.NoQuorum.Load()
	st.Reconciled = c.rep.Reconciled.Load()
	st.Refused = c.rep.Refused.Load()
	st.Repaired = c.rep.Repaired.Load()
	st.Pruned = c.rep.Pruned.Load()
	st.CatchingUp = c.rep.Unsynced()
	st.Resyncing = c.rep.Resyncing()
	st.Drain = c.drain.Load()
	return st
}

// ClusterStatus returns the node's view of its cluster; ok is false for a
// single node.
func (n *Node) ClusterStatus() (ClusterStatus, bool) {
	if n.cl == nil {
		return ClusterStatus{}, false
	}
	return n.cl.status(), true
}

// drainRoutes serves POST /v1/drain: a graceful shutdown, as SIGTERM
// starts one. In a cluster the node first hands its primaries off (see
// /v1/cluster for progress); the node then stops and Done is closed.
// With ?leave=true it leaves the cluster for good (Node.Leave).
func (n *Node) drainRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/drain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		leave := r.URL.Query().Get("leave") == "true"
		already := n.state.Load() != stateServing
		if !already {
			n.log.Info("drain requested over HTTP", "from", r.RemoteAddr, "leave", leave)
			if leave {
				go n.Leave(context.Background())
			} else {
				go n.Shutdown(context.Background())
			}
		}
		json.NewEncoder(w).Encode(map[string]any{
			"draining": true, "leave": leave, "already": already, "cluster": n.cl != nil,
			"drain_timeout_seconds": n.cfg.DrainTimeout.Seconds(),
		})
	})
}

// clusterRoutes serves GET /v1/cluster.
func (n *Node) clusterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		st, ok := n.ClusterStatus()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": "this node runs alone (no --join or --bootstrap-expect): there is no cluster"})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
}

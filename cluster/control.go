package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/stashcluster/stash/ring"
)

// run is the node's control loop, one goroutine for the node's life. It
// keeps this node's gossip meta current, bootstraps a new cluster when it
// is this node's turn, and, while this node leads, turns membership into
// committed rosters, tables and raft configurations (reconcile). It wakes
// on gossip events (debounced), committed changes, leadership changes and
// a ticker (for DownGrace expiry and retries).
func (n *Node) run() {
	defer n.wg.Done()
	tick := time.NewTicker(n.timing.tick)
	defer tick.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	var (
		settling   bool // a burst of gossip events is being debounced
		burstStart time.Time
		leading    bool
		leader     ring.NodeID
		boot       bootState
	)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.gossipKick:
			now := time.Now()
			if !settling {
				settling, burstStart = true, now
				debounce.Reset(n.cfg.Debounce)
			} else if now.Add(n.cfg.Debounce).Sub(burstStart) <= 4*n.cfg.Debounce {
				debounce.Reset(n.cfg.Debounce)
			}
		case <-debounce.C:
			settling = false
		case <-n.wake:
		case <-n.observe:
		case <-tick.C:
		}
		if l := n.Leader(); l != leader {
			leader = l
			if l != "" {
				n.log.Info("raft leader", "leader", l)
			}
		}
		n.maintainSelf()
		if !n.isClustered() {
			n.tryBootstrap(&boot)
			continue
		}
		if n.raft.State() != raft.Leader {
			leading = false
			continue
		}
		if !leading {
			// Apply everything earlier leaders committed before deciding
			// from the FSM's state.
			if err := n.raft.Barrier(n.timing.apply).Error(); err != nil {
				n.log.Warn("leader barrier failed", "err", err)
				continue
			}
			leading = true
			n.log.Info("leading the cluster")
		}
		if settling {
			continue
		}
		n.reconcile()
	}
}

func (n *Node) clusterID() string {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	return n.self.ClusterID
}

func (n *Node) isClustered() bool {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	return n.self.Clustered
}

func (n *Node) setClustered() {
	n.metaMu.Lock()
	n.self.Clustered = true
	n.metaMu.Unlock()
	n.ml.UpdateNode(metaNoWait)
}

// metaNoWait is how long the control loop waits for a meta broadcast to
// go out: hardly at all, since it is queued either way and a long wait
// would hold up Close.
const metaNoWait = 10 * time.Millisecond

// maintainSelf brings this node's gossip meta up to date: clustered once
// raft has state, the cluster ID once applied, and joining → active once
// the node is in a committed table.
func (n *Node) maintainSelf() {
	st, tbl := n.fsm.state()
	n.metaMu.Lock()
	m := n.self
	if !m.Clustered && n.raft.LastIndex() > 0 {
		m.Clustered = true
	}
	if st.ClusterID != "" {
		m.ClusterID = st.ClusterID
	}
	if m.State == StateJoining && tbl != nil && slices.Contains(tbl.Members(), n.name) {
		m.State = StateActive
		n.log.Info("in the slot table; now active", "epoch", tbl.Epoch())
	}
	changed := m != n.self
	n.self = m
	n.metaMu.Unlock()
	switch {
	case changed:
	case unheard(st.Roster, m, string(n.name)) && time.Since(n.announced) >= n.timing.metaUpdate:
		// Gossip hands a broadcast to a few random members a few
		// times; with dead members among them it can miss the leader,
		// which then learns the change only at the next push-pull
		// sync (30 s with ProfileLAN). Announce it again.
		n.log.Debug("committed roster does not reflect this node's state yet; announcing it again", "state", m.State, "leaving", m.Leaving)
	default:
		return
	}
	n.announced = time.Now()
	n.ml.UpdateNode(metaNoWait)
}

// unheard reports whether the committed roster names this node with a
// state other than its own, or at all while it is leaving.
func unheard(roster []rosterEntry, m meta, name string) bool {
	i := slices.IndexFunc(roster, func(e rosterEntry) bool { return e.Name == name })
	return i >= 0 && (m.Leaving || roster[i].State != m.State)
}

// bootState is tryBootstrap's memory between rounds.
type bootState struct {
	set     []string  // candidate set last seen, when this node leads it
	since   time.Time // since when set has been stable
	waiting bool      // "existing cluster found" was logged
	warned  map[string]bool
}

// tryBootstrap forms a new cluster when this node's turn has come: the
// fresh nodes (no raft state, not in a cluster, same BootstrapExpect)
// that gossip shows alive number at least BootstrapExpect, this node has
// the lowest name of the BootstrapExpect lowest, and that set has held
// for the settle time. It then bootstraps raft with exactly that set as
// voters; the others wait for the new leader to contact them. Nothing
// happens while any live node is already in a cluster: it will add us.
func (n *Node) tryBootstrap(b *bootState) {
	expect := n.cfg.BootstrapExpect
	if expect < 2 {
		return // 0: join only; 1: bootstrapped in Open
	}
	view := n.viewSnapshot()
	var cands []string
	for name, p := range view {
		if p.status != peerAlive || p.meta.Leaving {
			continue
		}
		if p.meta.Clustered || p.meta.ClusterID != "" {
			if !b.waiting {
				n.log.Info("found a node of an existing cluster; waiting to be added", "peer", name)
				b.waiting = true
			}
			b.set = nil
			return
		}
		if int(p.meta.Expect) != expect {
			if b.warned == nil {
				b.warned = map[string]bool{}
			}
			if !b.warned[name] {
				n.log.Warn("peer has another BootstrapExpect; not bootstrapping with it", "peer", name, "its", p.meta.Expect, "ours", expect)
				b.warned[name] = true
			}
			continue
		}
		cands = append(cands, name)
	}
	slices.Sort(cands)
	if len(cands) < expect || cands[0] != string(n.name) {
		b.set = nil
		return
	}
	set := cands[:expect]
	now := time.Now()
	if !slices.Equal(set, b.set) {
		b.set, b.since = slices.Clone(set), now
		return
	}
	if now.Sub(b.since) < n.timing.settle {
		return
	}
	servers := make([]raft.Server, len(set))
	for i, name := range set {
		servers[i] = raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(name), Address: raft.ServerAddress(view[name].meta.ClusterAddr)}
	}
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	switch {
	case err == nil:
		n.log.Info("bootstrapped a new cluster", "voters", set)
	case errors.Is(err, raft.ErrCantBootstrap):
		n.log.Info("not bootstrapping: raft already has state")
	default:
		n.log.Warn("bootstrap failed; will retry", "err", err)
		return
	}
	n.setClustered()
}

// reconcile is the leader's step: commit the roster and table that the
// gossip view calls for, then align raft's configuration with the roster.
func (n *Node) reconcile() {
	st, prev := n.fsm.state()
	now := time.Now()
	roster := planRoster(st.Roster, n.viewSnapshot(), st.ClusterID, now, n.cfg.DownGrace)
	tbl, err := planTable(roster, st.Roster, prev, n.cfg.Replicas)
	if err != nil {
		n.log.Error("cannot build a slot table", "err", err)
		return
	}
	id := st.ClusterID
	if id == "" {
		var b [16]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	if tbl != nil || id != st.ClusterID || !slices.Equal(roster, st.Roster) {
		c := command{Prev: st.Version, ClusterID: id, Roster: roster}
		if tbl != nil {
			if c.Table, err = tbl.MarshalBinary(); err != nil {
				n.log.Error("cannot encode the slot table", "err", err)
				return
			}
		}
		data, err := encodeCommand(&c)
		if err != nil {
			n.log.Error("cannot encode a control-plane command", "err", err)
			return
		}
		f := n.raft.Apply(data, n.timing.apply)
		if err := f.Error(); err != nil {
			n.log.Warn("commit failed; will retry", "err", err)
			return
		}
		if err, _ := f.Response().(error); err != nil {
			if errors.Is(err, errStale) {
				n.log.Debug("control-plane state moved on; recomputing")
			} else {
				n.log.Error("control-plane command refused", "err", err)
			}
			return
		}
		n.logRoster(st.Roster, roster)
		if tbl != nil {
			args := []any{"epoch", tbl.Epoch(), "members", len(roster), "moved", tbl.Moved(prev)}
			if d := notPrimary(roster); len(d) > 0 {
				args = append(args, "not_primary", d)
			}
			n.log.Info("committed slot table", args...)
		}
	}
	n.reconcileServers(roster)
}

// notPrimary lists the members a table must not make primary.
func notPrimary(roster []rosterEntry) []string {
	var out []string
	for _, e := range roster {
		if !e.eligible() {
			out = append(out, e.Name)
		}
	}
	return out
}

// logRoster logs the membership decisions between two rosters.
func (n *Node) logRoster(old, cur []rosterEntry) {
	oldBy := map[string]rosterEntry{}
	for _, e := range old {
		oldBy[e.Name] = e
	}
	for _, e := range cur {
		o, ok := oldBy[e.Name]
		delete(oldBy, e.Name)
		switch {
		case !ok:
			n.log.Info("member added", "member", e.Name, "zone", e.Zone, "state", e.State)
		case o.DownSince == 0 && e.DownSince != 0:
			n.log.Warn("member down: its primaries fail over; its replica places wait for DownGrace", "member", e.Name, "grace", n.cfg.DownGrace)
		case o.DownSince != 0 && e.DownSince == 0:
			n.log.Info("member back up", "member", e.Name)
		case o.State != e.State:
			n.log.Info("member state", "member", e.Name, "state", e.State)
		}
	}
	for name, o := range oldBy {
		if o.DownSince != 0 {
			n.log.Warn("member removed after DownGrace", "member", name, "down_for", time.Since(time.Unix(0, o.DownSince)).Round(time.Millisecond))
		} else {
			n.log.Info("member removed (left)", "member", name)
		}
	}
}

// reconcileServers applies planServers' changes one by one.
func (n *Node) reconcileServers(roster []rosterEntry) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		n.log.Warn("cannot read the raft configuration", "err", err)
		return
	}
	for _, c := range planServers(f.Configuration().Servers, roster, string(n.name), n.cfg.MaxVoters) {
		id, addr, t := raft.ServerID(c.id), raft.ServerAddress(c.addr), n.timing.apply
		var fut raft.IndexFuture
		switch c.op {
		case opAddNonvoter:
			fut = n.raft.AddNonvoter(id, addr, 0, t)
		case opAddVoter:
			fut = n.raft.AddVoter(id, addr, 0, t)
		case opRemove:
			fut = n.raft.RemoveServer(id, 0, t)
		}
		if err := fut.Error(); err != nil {
			n.log.Warn("raft configuration change failed; will retry", "change", c.op, "server", c.id, "err", err)
			return
		}
		n.log.Info("raft configuration changed", "change", c.op, "server", c.id)
	}
}

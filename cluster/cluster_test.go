package cluster

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stashcluster/stash/ring"
)

func TestSingleNode(t *testing.T) {
	log := testLogger(t)
	s := newSpec(t, "solo", false)
	n := open(t, s.config(t, log))

	tbl := n.Table()
	if got := tbl.Members(); !slices.Equal(got, ids("solo")) || tbl.Epoch() < 1 {
		t.Fatalf("table after Open: members %v, epoch %d", got, tbl.Epoch())
	}
	if pc := tbl.PrimaryCounts(); pc["solo"] != ring.Slots {
		t.Fatalf("primary counts %v", pc)
	}
	if !n.IsLeader() || n.Leader() != "solo" {
		t.Fatalf("IsLeader %v, Leader %q", n.IsLeader(), n.Leader())
	}
	waitFor(t, 5*time.Second, "self active", func() bool { return n.Self().State == StateActive })
	st := n.Status()
	if !slices.Equal(st.Voters, ids("solo")) || len(st.Members) != 1 || st.Members[0].Primaries != ring.Slots ||
		st.Members[0].Places != ring.Slots || st.Epoch != tbl.Epoch() || st.ClusterID == "" {
		t.Fatalf("Status %+v", st)
	}
	if b, err := json.Marshal(st); err != nil || !strings.Contains(string(b), `"state":"active"`) ||
		!strings.Contains(string(b), `"primaries":16384`) {
		t.Fatalf("Status as JSON: %s, %v", b, err)
	}
	if m := n.Members(); len(m) != 1 || m[0].Name != "solo" || !m[0].Alive || m[0].RESPAddr != "127.0.0.1:6380" {
		t.Fatalf("Members %+v", m)
	}

	// A data stream to itself through the cluster port.
	got := make(chan string, 1)
	go func() {
		c, err := n.DataListener().Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		b := make([]byte, 5)
		io.ReadFull(c, b)
		got <- string(b)
	}()
	c, err := n.DialData(ctxT(t, 5*time.Second), "solo")
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	if s := <-got; s != "hello" {
		t.Fatalf("data stream carried %q", s)
	}
	c.Close()
	if _, err := n.DialData(ctxT(t, time.Second), "nobody"); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("DialData(nobody): %v", err)
	}
	if err := n.SetState(ctxT(t, time.Second), StateJoining); !errors.Is(err, ErrBadState) {
		t.Fatalf("SetState(joining): %v", err)
	}

	// Draining a node that has no other replica changes nothing.
	ch := n.Changes()
	if err := n.SetState(ctxT(t, time.Second), StateDraining); err != nil {
		t.Fatal(err)
	}
	if n.Self().State != StateDraining {
		t.Fatalf("Self state %v", n.Self().State)
	}

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("Changes not closed by Close")
	}
	<-n.Changes()
	if n.Table() == nil || n.Table().Epoch() != tbl.Epoch() {
		t.Fatal("Table after Close")
	}
	if _, err := n.DialData(ctxT(t, time.Second), "solo"); !errors.Is(err, ErrClosed) {
		t.Fatalf("DialData after Close: %v", err)
	}
	if err := n.SetState(ctxT(t, time.Second), StateActive); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetState after Close: %v", err)
	}
	if err := n.Leave(ctxT(t, time.Second)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leave after Close: %v", err)
	}
	if _, err := n.DataListener().Accept(); err == nil {
		t.Fatal("DataListener accepts after Close")
	}
}

// A restarted node with raft state does not bootstrap again: it comes
// back as the same cluster with its table.
func TestSingleNodeRestart(t *testing.T) {
	log := testLogger(t)
	s := newSpec(t, "solo", true)
	n := open(t, s.config(t, log))
	id, epoch := n.Status().ClusterID, n.Table().Epoch()
	// Restart from a snapshot plus log entries after it.
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := n.SetState(ctxT(t, 5*time.Second), StateDraining); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "draining committed", func() bool {
		st, _ := n.fsm.state()
		return len(st.Roster) == 1 && st.Roster[0].State == StateDraining
	})
	n.Close()

	n2 := open(t, s.config(t, log))
	if got := n2.Status().ClusterID; got != id {
		t.Fatalf("cluster ID after restart %q, before %q: bootstrapped anew", got, id)
	}
	if e := n2.Table().Epoch(); e < epoch || !slices.Equal(n2.Table().Members(), ids("solo")) {
		t.Fatalf("table after restart: epoch %d (before %d), members %v", e, epoch, n2.Table().Members())
	}
	// The entries after the snapshot are applied once it leads again.
	waitFor(t, 5*time.Second, "log entries after the snapshot applied", func() bool {
		st, _ := n2.fsm.state()
		return st.Version >= 3
	})
}

// bootstrap starts len(specs) nodes made by mk in random order with
// random delays, and waits until they form one cluster.
func bootstrap(t *testing.T, specs []*spec, mk func(*spec) Config) []*Node {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	order := rng.Perm(len(specs))
	delays := make([]time.Duration, len(specs))
	for i := range delays {
		delays[i] = time.Duration(rng.IntN(400)) * time.Millisecond
	}
	t.Logf("seed %d: start order %v, delays %v", seed, order, delays)
	cfgs := make([]Config, len(specs))
	for i, s := range specs {
		cfgs[i] = mk(s)
	}
	nodes := make([]*Node, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, k := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(delays[i]) // a staggered start, not a wait for a condition
			nodes[k], errs[k] = Open(ctxT(t, 20*time.Second), cfgs[k])
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		if n != nil {
			t.Cleanup(func() { n.Close() })
		}
		if errs[i] != nil {
			t.Fatalf("Open(%s): %v", specs[i].name, errs[i])
		}
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	waitFor(t, 20*time.Second, "one cluster with one leader", func() bool {
		_, ok := converged(nodes, names...)
		return ok && len(leaders(nodes)) == 1
	})
	return nodes
}

func joinList(specs []*spec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.gossipAddr())
	}
	return out
}

func TestBootstrapJoinFailover(t *testing.T) {
	log := testLogger(t)
	const grace = 3 * time.Second
	specs := []*spec{newSpec(t, "alpha", false), newSpec(t, "bravo", false), newSpec(t, "charlie", false)}
	dspec := newSpec(t, "delta", false)
	join := joinList(append(slices.Clone(specs), dspec)) // every node gets the same list, itself included
	mk := func(s *spec) Config {
		cfg := s.config(t, log)
		cfg.Join = join
		cfg.BootstrapExpect = 3
		cfg.DownGrace = grace
		return cfg
	}
	start := time.Now()
	nodes := bootstrap(t, specs, mk)
	t.Logf("3 nodes formed one cluster in %v", time.Since(start).Round(time.Millisecond))

	id := nodes[0].Status().ClusterID
	lead := leaders(nodes)[0].name
	for _, n := range nodes {
		st := n.Status()
		if st.ClusterID != id || st.Leader != lead || len(st.Voters) != 3 {
			t.Fatalf("%s: status %+v; want cluster %s, leader %s, 3 voters", n.name, st, id, lead)
		}
	}
	t3 := nodes[0].Table()
	for name, c := range t3.PrimaryCounts() {
		if !within(c, ring.Slots/3, 0.05) {
			t.Fatalf("%s is primary for %d slots, want ≈%d", name, c, ring.Slots/3)
		}
	}

	// A fourth node with the same configuration is added by the leader.
	start = time.Now()
	d := open(t, mk(dspec))
	all := append(slices.Clone(nodes), d)
	waitFor(t, 15*time.Second, "4-node table everywhere", func() bool {
		_, ok := converged(all, "alpha", "bravo", "charlie", "delta")
		return ok
	})
	t.Logf("4th node in the table in %v", time.Since(start).Round(time.Millisecond))
	t4 := d.Table()
	if m := primariesMoved(t3, t4); !within(m, ring.Slots/4, 0.1) {
		t.Fatalf("join moved %d primaries, want ≈%d", m, ring.Slots/4)
	}
	if c := t4.PrimaryCounts()["delta"]; !within(c, ring.Slots/4, 0.05) {
		t.Fatalf("delta is primary for %d slots, want ≈%d", c, ring.Slots/4)
	}
	if p := placesOf(t4, "delta"); !within(p, ring.Slots*3/4, 0.05) {
		t.Fatalf("delta holds %d replica places, want ≈%d", p, ring.Slots*3/4)
	}
	waitFor(t, 5*time.Second, "delta active, a non-voter", func() bool {
		st := d.Status()
		return d.Self().State == StateActive && len(st.Voters) == 3 && !slices.Contains(st.Voters, "delta")
	})

	// Kill a voter that does not lead: its primaries fail over at once to
	// the next replica, its replica places stay until DownGrace.
	var victim *Node
	var rest []*Node
	for _, n := range all {
		if victim == nil && n != d && !n.IsLeader() {
			victim = n
		} else {
			rest = append(rest, n)
		}
	}
	vname := string(victim.name)
	before := rest[0].Table()
	victim.Close()
	killed := time.Now()
	waitFor(t, 10*time.Second, vname+"'s primaries to fail over", func() bool {
		e, ok := converged(rest, "alpha", "bravo", "charlie", "delta")
		return ok && e > before.Epoch() && rest[0].Table().PrimaryCounts()[ring.NodeID(vname)] == 0
	})
	t.Logf("%s's primaries failed over %v after it died", vname, time.Since(killed).Round(time.Millisecond))
	tf := rest[0].Table()
	if a, b := placesOf(before, vname), placesOf(tf, vname); a != b {
		t.Fatalf("%s held %d replica places before failover, %d after", vname, a, b)
	}
	for s := range ring.Slots {
		r := before.Replicas(uint16(s))
		if r[0] == ring.NodeID(vname) && tf.Primary(uint16(s)) != r[1] {
			t.Fatalf("slot %d: primary %s, want the next replica %s of %v", s, tf.Primary(uint16(s)), r[1], r)
		}
	}
	var downSince time.Time
	for _, m := range rest[0].Members() {
		if string(m.Name) == vname {
			downSince = m.DownSince
			if m.Alive || downSince.IsZero() {
				t.Fatalf("dead member %+v", m)
			}
		}
	}

	// After DownGrace it leaves the table, and a live non-voter replaces
	// it as a voter.
	names := []string{"alpha", "bravo", "charlie", "delta"}
	names = slices.DeleteFunc(names, func(s string) bool { return s == vname })
	waitFor(t, grace+10*time.Second, vname+" dropped after DownGrace", func() bool {
		_, ok := converged(rest, names...)
		return ok
	})
	if gone := time.Since(downSince); gone < grace {
		t.Fatalf("%s dropped %v after it was marked down, before DownGrace %v", vname, gone, grace)
	}
	t.Logf("%s dropped %v after it died", vname, time.Since(killed).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "delta promoted to voter", func() bool {
		st := rest[0].Status()
		return len(st.Voters) == 3 && slices.Contains(st.Voters, "delta") && !slices.Contains(st.Voters, ring.NodeID(vname))
	})

	// A graceful leave removes a node at once, no DownGrace.
	var leaver *Node
	var stay []*Node
	for _, n := range rest {
		if leaver == nil && !n.IsLeader() {
			leaver = n
		} else {
			stay = append(stay, n)
		}
	}
	// What must beat DownGrace is the others dropping the leaver from
	// their table; Leave itself also closes the node (raft and gossip
	// shutdown), which on a loaded machine can take seconds more.
	left := time.Now()
	leaveErr := make(chan error, 1)
	go func() { leaveErr <- leaver.Leave(ctxT(t, 10*time.Second)) }()
	names = slices.DeleteFunc(names, func(s string) bool { return s == string(leaver.name) })
	waitFor(t, 2*grace, string(leaver.name)+" removed after Leave", func() bool {
		_, ok := converged(stay, names...)
		return ok
	})
	if d := time.Since(left); d >= grace {
		t.Fatalf("the others dropped %s %v after Leave began, not faster than DownGrace", leaver.name, d)
	}
	t.Logf("%s out of the others' table %v after Leave began", leaver.name, time.Since(left).Round(time.Millisecond))
	if err := <-leaveErr; err != nil {
		t.Fatalf("Leave: %v", err)
	}
	t.Logf("Leave returned after %v", time.Since(left).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "leaver out of raft", func() bool {
		return !slices.Contains(stay[0].Status().Voters, leaver.name)
	})
}

func TestLeaderFailover(t *testing.T) {
	log := testLogger(t)
	specs := []*spec{newSpec(t, "n1", false), newSpec(t, "n2", false), newSpec(t, "n3", false)}
	join := joinList(specs)
	nodes := bootstrap(t, specs, func(s *spec) Config {
		cfg := s.config(t, log)
		cfg.Join = join
		cfg.BootstrapExpect = 3
		return cfg
	})
	old := leaders(nodes)[0]
	epoch := old.Table().Epoch()
	var rest []*Node
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	old.Close()
	killed := time.Now()
	waitFor(t, 15*time.Second, "a new leader that demoted the old one", func() bool {
		l := leaders(rest)
		if len(l) != 1 || rest[0].Leader() != rest[1].Leader() || rest[0].Leader() != l[0].name {
			return false
		}
		e, ok := converged(rest, "n1", "n2", "n3") // the old leader keeps its places for DownGrace
		return ok && e > epoch && rest[0].Table().PrimaryCounts()[old.name] == 0
	})
	t.Logf("new leader %s took over and failed %s's primaries over in %v",
		rest[0].Leader(), old.name, time.Since(killed).Round(time.Millisecond))
	for name, c := range rest[0].Table().PrimaryCounts() {
		if name != old.name && !within(c, ring.Slots/2, 0.1) {
			t.Fatalf("%s is primary for %d slots after failover", name, c)
		}
	}
}

// A node restarted within DownGrace, with its raft state, comes back into
// the same cluster without bootstrapping and gets primaries again.
func TestRestartWithinGrace(t *testing.T) {
	log := testLogger(t)
	specs := []*spec{newSpec(t, "r1", true), newSpec(t, "r2", true), newSpec(t, "r3", true)}
	join := joinList(specs)
	mk := func(s *spec) Config {
		cfg := s.config(t, log)
		cfg.Join = join
		cfg.BootstrapExpect = 3
		return cfg
	}
	nodes := bootstrap(t, specs, mk)
	id := nodes[0].Status().ClusterID
	k := slices.IndexFunc(nodes, func(n *Node) bool { return !n.IsLeader() })
	victim := nodes[k]
	rest := slices.Delete(slices.Clone(nodes), k, k+1)
	victim.Close()
	waitFor(t, 10*time.Second, "failover", func() bool {
		_, ok := converged(rest, "r1", "r2", "r3")
		return ok && rest[0].Table().PrimaryCounts()[victim.name] == 0
	})

	back := open(t, mk(specs[k]))
	all := append(rest, back)
	waitFor(t, 15*time.Second, "restarted node primary again", func() bool {
		_, ok := converged(all, "r1", "r2", "r3")
		return ok && back.Table().PrimaryCounts()[back.name] > 0 && len(leaders(all)) == 1
	})
	if got := back.Status().ClusterID; got != id {
		t.Fatalf("restarted node in cluster %q, want %q", got, id)
	}
	for _, m := range rest[0].Members() {
		if !m.Alive || !m.DownSince.IsZero() {
			t.Fatalf("member after restart: %+v", m)
		}
	}
}

func TestWrongSecretCannotJoin(t *testing.T) {
	log := testLogger(t)
	as := newSpec(t, "good", false)
	a := open(t, as.config(t, log))

	bs := newSpec(t, "intruder", false)
	cfg := bs.config(t, log)
	cfg.Secret = []byte("a-different-secret-0123456789")
	cfg.Join = []string{as.gossipAddr()}
	b := open(t, cfg)
	waitFor(t, 10*time.Second, "three join attempts", func() bool { return b.joinAttempts.Load() >= 3 })
	if m := a.Members(); len(m) != 1 || m[0].Name != "good" {
		t.Fatalf("cluster members %+v", m)
	}
	if m := b.Members(); len(m) != 1 || m[0].Name != "intruder" {
		t.Fatalf("intruder sees %+v", m)
	}
	if a.ml.NumMembers() != 1 || b.ml.NumMembers() != 1 {
		t.Fatalf("gossip members: %d, %d", a.ml.NumMembers(), b.ml.NumMembers())
	}
	if got := a.Table().Members(); !slices.Equal(got, ids("good")) {
		t.Fatalf("table members %v", got)
	}
	if b.Table().Epoch() != 0 {
		t.Fatalf("intruder holds a table of epoch %d", b.Table().Epoch())
	}
	// Its streams are refused too.
	if _, err := b.mux.Dial(ctxT(t, 5*time.Second), a.clusterAddr, 'D'); !errors.Is(err, ErrAuth) {
		t.Fatalf("intruder's data stream: %v", err)
	}
}

// Two clusters that share a secret still refuse to merge their gossip.
func TestClustersDoNotMerge(t *testing.T) {
	log := testLogger(t)
	as, bs := newSpec(t, "east", false), newSpec(t, "west", false)
	a := open(t, as.config(t, log))
	b := open(t, bs.config(t, log))
	waitFor(t, 5*time.Second, "cluster IDs gossiped", func() bool {
		return a.clusterID() != "" && b.clusterID() != ""
	})
	if a.clusterID() == b.clusterID() {
		t.Fatal("two clusters with one ID")
	}
	if _, err := b.ml.Join([]string{as.gossipAddr()}); err == nil {
		t.Fatal("gossip merge of two clusters accepted")
	}
	if a.ml.NumMembers() != 1 || b.ml.NumMembers() != 1 {
		t.Fatalf("gossip members: %d, %d", a.ml.NumMembers(), b.ml.NumMembers())
	}
}

// Four fresh nodes started together with BootstrapExpect 3 still form one
// cluster: the three lowest bootstrap, the fourth is added. Then draining
// takes a node's primaries (not its places) away, and activating gives
// them back.
func TestBootstrapExtraNodeAndDrain(t *testing.T) {
	log := testLogger(t)
	specs := []*spec{newSpec(t, "k1", false), newSpec(t, "k2", false), newSpec(t, "k3", false), newSpec(t, "k4", false)}
	join := joinList(specs)
	nodes := bootstrap(t, specs, func(s *spec) Config {
		cfg := s.config(t, log)
		cfg.Join = join
		cfg.BootstrapExpect = 3
		return cfg
	})
	id := nodes[0].Status().ClusterID
	for _, n := range nodes {
		if n.Status().ClusterID != id {
			t.Fatalf("%s in cluster %s, %s in %s", n.name, n.Status().ClusterID, nodes[0].name, id)
		}
	}
	waitFor(t, 5*time.Second, "three voters", func() bool { return len(nodes[0].Status().Voters) == 3 })

	d := nodes[3]
	before := d.Table()
	if err := d.SetState(ctxT(t, 5*time.Second), StateDraining); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "draining node primary nowhere", func() bool {
		e, ok := converged(nodes, "k1", "k2", "k3", "k4")
		return ok && e > before.Epoch() && nodes[0].Table().PrimaryCounts()[d.name] == 0
	})
	if a, b := placesOf(before, "k4"), placesOf(nodes[0].Table(), "k4"); a != b {
		t.Fatalf("draining changed k4's places from %d to %d", a, b)
	}
	if err := d.SetState(ctxT(t, 5*time.Second), StateActive); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "active again, primary again", func() bool {
		_, ok := converged(nodes, "k1", "k2", "k3", "k4")
		return ok && within(nodes[0].Table().PrimaryCounts()[d.name], ring.Slots/4, 0.05)
	})
}

// The only voter, which leads, leaves: its replacement is promoted first
// and takes over, and the cluster goes on with the rest.
func TestLeaderLeaves(t *testing.T) {
	log := testLogger(t)
	as, bs := newSpec(t, "first", false), newSpec(t, "second", false)
	a := open(t, as.config(t, log)) // a cluster of one
	cfg := bs.config(t, log)
	cfg.Join = []string{as.gossipAddr()}
	b := open(t, cfg)
	both := []*Node{a, b}
	waitFor(t, 10*time.Second, "second added as a non-voter", func() bool {
		_, ok := converged(both, "first", "second")
		st := a.Status()
		return ok && slices.Equal(st.Voters, ids("first")) && len(st.Members) == 2
	})
	if err := a.Leave(ctxT(t, 15*time.Second)); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, 10*time.Second, "second leads a cluster of one", func() bool {
		st := b.Status()
		return b.IsLeader() && slices.Equal(st.Voters, ids("second")) &&
			slices.Equal(b.Table().Members(), ids("second")) && len(st.Members) == 1
	})
}

// The whole cluster restarts at once, every node with its raft state but
// at a new cluster port (as pods get new addresses): the nodes find each
// other through gossip, elect a leader and record the new addresses; no
// node bootstraps again.
func TestFullRestartNewAddresses(t *testing.T) {
	if raceDetector {
		// hashicorp/raft (v1.7.3, v1.8.0) reads a follower's Server
		// without its lock after each append (updateLastAppended) while
		// the leader rewrites it under the lock when the follower's
		// address changes, which is what this test does. The race
		// detector flags that (rarely); .ci/run runs this test again
		// without it.
		t.Skip("raft's unlocked read of a peer whose address changed trips the race detector; run without -race")
	}
	log := testLogger(t)
	specs := []*spec{newSpec(t, "p1", true), newSpec(t, "p2", true), newSpec(t, "p3", true)}
	join := joinList(specs)
	mk := func(s *spec) Config {
		cfg := s.config(t, log)
		cfg.Join = join
		cfg.BootstrapExpect = 3
		return cfg
	}
	nodes := bootstrap(t, specs, mk)
	id := nodes[0].Status().ClusterID
	epoch := nodes[0].Table().Epoch()
	for _, n := range nodes {
		n.Close()
	}
	for _, s := range specs {
		s.clusterPort = 0 // a new port on restart
	}
	nodes = bootstrap(t, specs, mk)
	for _, n := range nodes {
		if got := n.Status().ClusterID; got != id {
			t.Fatalf("%s restarted into cluster %q, want %q", n.name, got, id)
		}
		if e := n.Table().Epoch(); e < epoch {
			t.Fatalf("%s: epoch %d after restart, %d before", n.name, e, epoch)
		}
	}
	waitFor(t, 10*time.Second, "raft configuration at the new addresses", func() bool {
		f := nodes[0].raft.GetConfiguration()
		if f.Error() != nil {
			return false
		}
		for _, srv := range f.Configuration().Servers {
			k := slices.IndexFunc(nodes, func(n *Node) bool { return string(n.name) == string(srv.ID) })
			if k < 0 || string(srv.Address) != nodes[k].clusterAddr {
				return false
			}
		}
		return len(f.Configuration().Servers) == 3
	})
}

// TestMembersChanged: MembersChanged wakes its waiter when gossip sees a
// member join, fail and come back, and Members already shows the change
// when it does (the RESP layer's address map relies on both).
func TestMembersChanged(t *testing.T) {
	log := testLogger(t)
	sa, sb := newSpec(t, "a", false), newSpec(t, "b", true)
	a := open(t, sa.config(t, log))
	select {
	case <-a.MembersChanged():
		t.Fatal("MembersChanged closed with no other member")
	default:
	}
	// until waits, from ch (taken before the event), for changes until
	// Members shows b as want says.
	until := func(ch <-chan struct{}, what string, want func(alive, known bool) bool) {
		t.Helper()
		for {
			select {
			case <-ch:
			case <-time.After(15 * time.Second):
				t.Fatalf("MembersChanged not closed 15 s after %s", what)
			}
			ch = a.MembersChanged()
			for _, m := range a.Members() {
				if m.Name == "b" && want(m.Alive, true) {
					return
				}
			}
			if want(false, false) {
				return
			}
		}
	}
	join := func() *Node {
		cfg := sb.config(t, log)
		cfg.Join = []string{sa.gossipAddr()}
		return open(t, cfg)
	}
	alive := func(alive, known bool) bool { return alive }
	down := func(alive, known bool) bool { return known && !alive }

	ch := a.MembersChanged()
	b := join()
	until(ch, "b joined", alive)
	waitFor(t, 15*time.Second, "b in the table", func() bool { return slices.Contains(a.Table().Members(), "b") })

	ch = a.MembersChanged()
	b.Close()
	until(ch, "b closed", down)

	ch = a.MembersChanged()
	join()
	until(ch, "b restarted", alive)
}

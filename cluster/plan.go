package cluster

import (
	"cmp"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/stashcluster/stash/ring"
)

// The leader's decisions, as pure functions of the committed state, the
// gossip view and the clock, so that they can be tested without a network.

// peerStatus is a node's gossip status.
type peerStatus uint8

const (
	peerAlive peerStatus = iota // alive or suspect
	peerDead                    // failed or gone (memberlist does not tell which)
)

// peer is one node in the gossip view.
type peer struct {
	meta       meta
	gossipAddr string
	status     peerStatus
}

// planRoster returns the roster the leader should commit, sorted by name:
// live peers (of this cluster, or of none yet) with their current meta;
// rostered members that failed, with DownSince set on first notice and
// dropped once they have been down for grace; members that announced
// they are leaving (meta.Leaving) dropped at once.
func planRoster(old []rosterEntry, view map[string]peer, clusterID string, now time.Time, grace time.Duration) []rosterEntry {
	oldBy := make(map[string]rosterEntry, len(old))
	names := make([]string, 0, len(old)+len(view))
	for _, e := range old {
		oldBy[e.Name] = e
		names = append(names, e.Name)
	}
	for name := range view {
		if _, ok := oldBy[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := make([]rosterEntry, 0, len(names))
	for _, name := range names {
		p, seen := view[name]
		if seen && p.meta.ClusterID != "" && clusterID != "" && p.meta.ClusterID != clusterID {
			seen = false // another cluster's node: never ours
		}
		if seen && p.meta.Leaving {
			continue
		}
		if seen && p.status == peerAlive {
			out = append(out, rosterEntry{
				Name:        name,
				Zone:        p.meta.Zone,
				GossipAddr:  p.gossipAddr,
				ClusterAddr: p.meta.ClusterAddr,
				RESPAddr:    p.meta.RESPAddr,
				AdminAddr:   p.meta.AdminAddr,
				State:       p.meta.State,
			})
			continue
		}
		e, ok := oldBy[name]
		if !ok {
			continue
		}
		if e.DownSince == 0 {
			e.DownSince = now.UnixNano()
		}
		if now.Sub(time.Unix(0, e.DownSince)) >= grace {
			continue
		}
		out = append(out, e)
	}
	return out
}

// planTable returns the table to commit for roster, or nil if the table
// in force (prev, built from oldRoster) still fits. A new table is built
// from prev with epoch prev+1 and then demoted: no member that is down or
// draining stays primary of a slot that has an eligible replica.
func planTable(roster, oldRoster []rosterEntry, prev *ring.Table, replicas int) (*ring.Table, error) {
	if len(roster) == 0 {
		return nil, nil
	}
	if prev != nil && prev.ReplicaCount() == replicas && sameInputs(roster, oldRoster) &&
		slices.Equal(prev.Members(), rosterIDs(roster)) {
		return nil, nil
	}
	members := make([]ring.Member, len(roster))
	out := map[ring.NodeID]bool{}
	for i, e := range roster {
		members[i] = ring.Member{ID: ring.NodeID(e.Name), Zone: e.Zone}
		if !e.eligible() {
			out[ring.NodeID(e.Name)] = true
		}
	}
	epoch := uint64(1)
	if prev != nil {
		epoch = prev.Epoch() + 1
	}
	t, err := ring.Build(members, replicas, epoch, prev)
	if err != nil {
		return nil, err
	}
	if len(out) > 0 {
		t = t.Demote(epoch, func(id ring.NodeID) bool { return out[id] })
	}
	if prev != nil && sameLayout(t, prev) {
		return nil, nil
	}
	return t, nil
}

func rosterIDs(roster []rosterEntry) []ring.NodeID {
	ids := make([]ring.NodeID, len(roster))
	for i, e := range roster {
		ids[i] = ring.NodeID(e.Name)
	}
	slices.Sort(ids)
	return ids
}

// sameInputs reports whether two rosters give Build and Demote the same
// input: the same names, zones and eligibility.
func sameInputs(a, b []rosterEntry) bool {
	return slices.EqualFunc(a, b, func(x, y rosterEntry) bool {
		return x.Name == y.Name && x.Zone == y.Zone && x.eligible() == y.eligible()
	})
}

// sameLayout reports whether two tables assign every slot the same
// replica list (epochs aside).
func sameLayout(a, b *ring.Table) bool {
	if a.ReplicaCount() != b.ReplicaCount() || !slices.Equal(a.Members(), b.Members()) {
		return false
	}
	for s := range ring.Slots {
		if !slices.Equal(a.Replicas(uint16(s)), b.Replicas(uint16(s))) {
			return false
		}
	}
	return true
}

// serverOp is a raft configuration change.
type serverOp uint8

const (
	opAddNonvoter serverOp = iota + 1
	opAddVoter             // add, promote, or update a voter's address
	opRemove
)

func (o serverOp) String() string {
	return [...]string{"?", "add non-voter", "add voter", "remove"}[o]
}

type serverChange struct {
	op   serverOp
	id   string
	addr string
}

// planServers returns the raft configuration changes that bring servers
// in line with roster: members that are up and missing are added as
// non-voters (or re-added at a changed address); servers no longer in the
// roster are removed (never self: a leaving leader hands leadership over
// and its successor removes it); live, non-draining non-voters are
// promoted, preferring zones with fewer voters, until there are
// min(maxVoters, up members) voters rounded down to an odd number. Voters
// are never demoted: a failed voter keeps its vote until DownGrace drops
// it from the roster.
func planServers(servers []raft.Server, roster []rosterEntry, self string, maxVoters int) []serverChange {
	var out []serverChange
	inRoster := make(map[string]*rosterEntry, len(roster))
	up := 0
	for i := range roster {
		inRoster[roster[i].Name] = &roster[i]
		if roster[i].DownSince == 0 {
			up++
		}
	}
	cfg := make(map[string]raft.Server, len(servers))
	voters := 0
	zoneVoters := map[string]int{}
	for _, s := range servers {
		id := string(s.ID)
		if inRoster[id] == nil && id != self {
			out = append(out, serverChange{op: opRemove, id: id})
			continue
		}
		cfg[id] = s
		// A leader that is leaving (out of the roster) still votes until
		// it hands over, but counts as gone: its replacement is promoted
		// first, so that the next leader has a quorum without it.
		if s.Suffrage == raft.Voter && inRoster[id] != nil {
			voters++
			if e := inRoster[id]; e != nil {
				zoneVoters[e.Zone]++
			}
		}
	}
	var candidates []*rosterEntry
	for i := range roster {
		e := &roster[i]
		if e.DownSince != 0 {
			continue
		}
		s, ok := cfg[e.Name]
		switch {
		case !ok:
			out = append(out, serverChange{op: opAddNonvoter, id: e.Name, addr: e.ClusterAddr})
		case string(s.Address) != e.ClusterAddr:
			op := opAddNonvoter
			if s.Suffrage == raft.Voter {
				op = opAddVoter
			}
			out = append(out, serverChange{op: op, id: e.Name, addr: e.ClusterAddr})
		case s.Suffrage != raft.Voter && e.State != StateDraining:
			candidates = append(candidates, e)
		}
	}
	target := min(maxVoters, up)
	if target%2 == 0 {
		target--
	}
	for voters < target && len(candidates) > 0 {
		best := 0
		for i, c := range candidates {
			b := candidates[best]
			if cmp.Or(cmp.Compare(zoneVoters[c.Zone], zoneVoters[b.Zone]), cmp.Compare(c.Name, b.Name)) < 0 {
				best = i
			}
		}
		c := candidates[best]
		candidates = slices.Delete(candidates, best, best+1)
		out = append(out, serverChange{op: opAddVoter, id: c.Name, addr: c.ClusterAddr})
		zoneVoters[c.Zone]++
		voters++
	}
	return out
}

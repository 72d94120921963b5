package cluster

import (
	"fmt"
	"time"

	"github.com/stashcluster/stash/ring"
)

// State is a member's declared lifecycle state, carried in gossip meta.
type State uint8

// Member states.
const (
	// StateJoining: the node has started but is not yet in the committed
	// slot table. Set by the node itself at start; it switches to
	// StateActive on its own once it sees itself in a table.
	StateJoining State = 1
	// StateActive: a full member.
	StateActive State = 2
	// StateDraining: the node is handing its work off before leaving. The
	// leader takes its primaries away (it keeps its replica places) until
	// it leaves or turns active again.
	StateDraining State = 3
)

func (s State) String() string {
	switch s {
	case StateJoining:
		return "joining"
	case StateActive:
		return "active"
	case StateDraining:
		return "draining"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText encodes s as its name, for JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a state name.
func (s *State) UnmarshalText(b []byte) error {
	for _, v := range []State{StateJoining, StateActive, StateDraining} {
		if string(b) == v.String() {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrBadState, b)
}

func (s State) valid() bool { return s >= StateJoining && s <= StateDraining }

// Member is one node as this node sees it: gossip for what is live, the
// committed roster for nodes that are down but not yet removed.
type Member struct {
	Name ring.NodeID `json:"name"`
	Zone string      `json:"zone,omitempty"`
	// GossipAddr is the memberlist address (host:port); empty for a
	// rostered member this node has never seen in gossip.
	GossipAddr string `json:"gossip_addr,omitempty"`
	// ClusterAddr is the cluster port (raft and data streams).
	ClusterAddr string `json:"cluster_addr"`
	RESPAddr    string `json:"resp_addr,omitempty"`
	AdminAddr   string `json:"admin_addr,omitempty"`
	State       State  `json:"state"`
	// Alive: gossip considers the node alive (or merely suspect).
	Alive bool `json:"alive"`
	// DownSince is when the leader recorded the node as failed; zero
	// while it is up or not yet noticed.
	DownSince time.Time `json:"down_since,omitzero"`
}

// Status is a JSON-able summary of the cluster as this node sees it.
type Status struct {
	Self      ring.NodeID `json:"self"`
	Leader    ring.NodeID `json:"leader"`
	ClusterID string      `json:"cluster_id,omitempty"`
	// Epoch is the epoch of the committed table this node holds; 0 before
	// it has one.
	Epoch    uint64 `json:"epoch"`
	Replicas int    `json:"replicas"`
	// Voters are the raft voters of the latest configuration known here.
	Voters  []ring.NodeID  `json:"voters"`
	Members []MemberStatus `json:"members"`
}

// MemberStatus is a Member with its place in the raft group and the table.
type MemberStatus struct {
	Member
	Voter bool `json:"voter"`
	// Primaries and Places count the slots the member is primary for and
	// the slots it replicates (primary included) in the table.
	Primaries int `json:"primaries"`
	Places    int `json:"places"`
}

package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// fleet is the run's nodes: every node started (so that all are stopped at
// the end) and the members, the nodes that are meant to be in the cluster
// now. The membership nemesis adds members and removes them for good;
// clients follow the members. Safe for concurrent use.
type fleet struct {
	mu      sync.Mutex // guards all fields
	all     []*Node
	members []*Node
	version int // grows on every change of members
}

func newFleet(nodes []*Node) *fleet {
	return &fleet{all: slices.Clone(nodes), members: slices.Clone(nodes)}
}

// Members returns the current members, in the order they joined.
func (f *fleet) Members() []*Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.members)
}

// All returns every node ever started.
func (f *fleet) All() []*Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.all)
}

// add records a new node (not yet a member: see join).
func (f *fleet) add(n *Node) {
	f.mu.Lock()
	f.all = append(f.all, n)
	f.mu.Unlock()
}

func (f *fleet) join(n *Node) {
	f.mu.Lock()
	f.members = append(f.members, n)
	f.version++
	f.mu.Unlock()
}

func (f *fleet) leave(n *Node) {
	f.mu.Lock()
	f.members = slices.DeleteFunc(f.members, func(m *Node) bool { return m == n })
	f.version++
	f.mu.Unlock()
}

// nodeFor is the member client i talks to (i mod members), and the
// version of the membership it was chosen from.
func (f *fleet) nodeFor(i int) (*Node, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.members[i%len(f.members)], f.version
}

// Version changes whenever the members do.
func (f *fleet) Version() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version
}

// clusterView is the part of a node's GET /v1/cluster the harness reads.
type clusterView struct {
	Leader  string `json:"leader"`
	Epoch   uint64 `json:"epoch"`
	Members []struct {
		Name   string `json:"name"`
		Alive  bool   `json:"alive"`
		Places int    `json:"places"`
	} `json:"members"`
	Ready           bool `json:"ready"`
	UnderReplicated int  `json:"under_replicated_slots"`
}

// Cluster reads the node's view of its cluster.
func (n *Node) Cluster(ctx context.Context) (*clusterView, error) {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: n.nw.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s:%d/v1/cluster", n.IP, AdminPort), nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: /v1/cluster: HTTP %d", n.Name, resp.StatusCode)
	}
	var v clusterView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: /v1/cluster: %w", n.Name, err)
	}
	return &v, nil
}

// settled reports whether v shows exactly the given members holding
// replica places, no slot under-replicated, and the node ready; if not,
// why.
func (v *clusterView) settled(members []*Node) (bool, string) {
	var placed []string
	for _, m := range v.Members {
		if m.Places > 0 {
			placed = append(placed, m.Name)
		}
	}
	want := make([]string, 0, len(members))
	for _, n := range members {
		want = append(want, n.Name)
	}
	slices.Sort(placed)
	slices.Sort(want)
	switch {
	case !slices.Equal(placed, want):
		return false, fmt.Sprintf("table places on %v, want %v", placed, want)
	case v.UnderReplicated > 0:
		return false, fmt.Sprintf("%d slots under-replicated", v.UnderReplicated)
	case !v.Ready:
		return false, "not ready"
	}
	return true, ""
}

// waitSettled waits until every member sees the members, and only them,
// in its slot table with every slot fully replicated, and is ready.
func waitSettled(ctx context.Context, members []*Node) error {
	why := "no answer"
	for {
		ok := true
		for _, n := range members {
			v, err := n.Cluster(ctx)
			if err != nil {
				ok, why = false, err.Error()
				break
			}
			if s, w := v.settled(members); !s {
				ok, why = false, n.Name+": "+w
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("membership not settled (%s): %w", why, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

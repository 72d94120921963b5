package cluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/stashcluster/stash/ring"
)

func alive(name, zone string, st State) peer {
	return peer{meta: meta{State: st, Name: name, Zone: zone, ClusterAddr: name + ":7380"}, gossipAddr: name + ":7946"}
}

func entry(name string, downSince int64) rosterEntry {
	return rosterEntry{Name: name, ClusterAddr: name + ":7380", GossipAddr: name + ":7946", State: StateActive, DownSince: downSince}
}

func TestPlanRoster(t *testing.T) {
	now := time.Unix(1000, 0)
	grace := time.Minute
	view := map[string]peer{
		"a":   alive("a", "", StateActive),
		"b":   alive("b", "", StateActive),
		"new": alive("new", "z1", StateJoining),
	}
	dead := alive("c", "", StateActive)
	dead.status = peerDead
	view["c"] = dead
	view["gone"] = peer{meta: meta{Name: "gone", ClusterAddr: "gone:1", State: StateActive}, status: peerDead}
	leaving := alive("l", "", StateActive)
	leaving.meta.Leaving = true
	view["l"] = leaving
	foreign := alive("f", "", StateActive)
	foreign.meta.ClusterID = "other"
	view["f"] = foreign

	old := []rosterEntry{
		entry("a", 0),
		entry("b", now.Add(-10*time.Second).UnixNano()), // was down, is back
		entry("c", 0), // just failed
		entry("d", now.Add(-30*time.Second).UnixNano()), // down within grace, not in view
		entry("e", now.Add(-grace).UnixNano()),          // down for grace: out
		entry("l", 0),                                   // leaving: out at once
		entry("f", 0),                                   // now claims another cluster: treated as gone
	}
	got := planRoster(old, view, "mine", now, grace)
	want := []rosterEntry{
		{Name: "a", ClusterAddr: "a:7380", GossipAddr: "a:7946", State: StateActive},
		{Name: "b", ClusterAddr: "b:7380", GossipAddr: "b:7946", State: StateActive},
		entry("c", now.UnixNano()),
		entry("d", now.Add(-30*time.Second).UnixNano()),
		entry("f", now.UnixNano()),
		{Name: "new", Zone: "z1", ClusterAddr: "new:7380", GossipAddr: "new:7946", State: StateJoining},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("planRoster:\n got %+v\nwant %+v", got, want)
	}
	// Idempotent: the same view a moment later changes nothing but time.
	if again := planRoster(got, view, "mine", now.Add(time.Second), grace); !slices.Equal(again, got) {
		t.Fatalf("second pass changed the roster:\n%+v\n%+v", again, got)
	}
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i+1)
	}
	return out
}

func roster(ns ...string) []rosterEntry {
	out := make([]rosterEntry, len(ns))
	for i, n := range ns {
		out[i] = entry(n, 0)
	}
	return out
}

func TestPlanTable(t *testing.T) {
	r3 := roster(names(3)...)
	t1, err := planTable(r3, nil, nil, 3)
	if err != nil || t1 == nil || t1.Epoch() != 1 {
		t.Fatalf("first table: %v, %v", t1, err)
	}
	// Nothing changed: no table.
	if t2, _ := planTable(r3, r3, t1, 3); t2 != nil {
		t.Fatal("unchanged roster gave a new table")
	}
	// A state change that keeps eligibility: no table.
	joining := slices.Clone(r3)
	joining[0].State = StateJoining
	if t2, _ := planTable(joining, r3, t1, 3); t2 != nil {
		t.Fatal("joining → active gave a new table")
	}

	// n2 down: same members, n2 primary nowhere, places kept.
	down := slices.Clone(r3)
	down[1].DownSince = 1
	t2, err := planTable(down, r3, t1, 3)
	if err != nil || t2 == nil || t2.Epoch() != 2 {
		t.Fatalf("down: %v, %v", t2, err)
	}
	if pc := t2.PrimaryCounts(); pc["n2"] != 0 || !slices.Equal(t2.Members(), t1.Members()) {
		t.Fatalf("down: primaries %v, members %v", pc, t2.Members())
	}
	// Still down a tick later: no new table (no churn while it is down).
	if t3, _ := planTable(down, down, t2, 3); t3 != nil {
		t.Fatal("unchanged down roster gave a new table")
	}
	// A fourth node joins while n2 is down: n2 still primary nowhere.
	down4 := append(slices.Clone(down), entry("n4", 0))
	t3, err := planTable(down4, down, t2, 3)
	if err != nil || t3 == nil || t3.PrimaryCounts()["n2"] != 0 || t3.PrimaryCounts()["n4"] == 0 {
		t.Fatalf("join while down: %v, %v", t3, err)
	}
	// n2 back: it gets primaries again.
	back := slices.Clone(down4)
	back[1].DownSince = 0
	t4, err := planTable(back, down4, t3, 3)
	if err != nil || t4 == nil || !within(t4.PrimaryCounts()["n2"], ring.Slots/4, 0.05) {
		t.Fatalf("back: %v, %v", t4.PrimaryCounts(), err)
	}
	// Draining behaves like down for primaries.
	drain := slices.Clone(back)
	drain[0].State = StateDraining
	t5, _ := planTable(drain, back, t4, 3)
	if t5 == nil || t5.PrimaryCounts()["n1"] != 0 {
		t.Fatal("draining node kept primaries")
	}
	// Dropped from the roster: out of the table.
	t6, _ := planTable(drain[1:], drain, t5, 3)
	if t6 == nil || slices.Contains(t6.Members(), "n1") || t6.PrimaryCounts()["n2"] == 0 {
		t.Fatal("dropped member still in the table")
	}
	// A replica count change rebuilds.
	if t7, _ := planTable(drain[1:], drain[1:], t6, 2); t7 == nil || t7.ReplicaCount() != 2 {
		t.Fatal("replica change did not rebuild")
	}
}

func servers(spec string) []raft.Server {
	// spec: "a:v b:n" — v voter, n non-voter; address name:7380.
	var out []raft.Server
	for _, f := range strings.Fields(spec) {
		s := raft.Server{ID: raft.ServerID(f[:len(f)-2]), Address: raft.ServerAddress(f[:len(f)-2] + ":7380"), Suffrage: raft.Nonvoter}
		if f[len(f)-1] == 'v' {
			s.Suffrage = raft.Voter
		}
		out = append(out, s)
	}
	return out
}

func TestPlanServers(t *testing.T) {
	fmtChanges := func(cs []serverChange) string {
		s := ""
		for _, c := range cs {
			s += fmt.Sprintf("%v %s; ", c.op, c.id)
		}
		return s
	}
	zoned := func(r []rosterEntry, zones ...string) []rosterEntry {
		for i := range r {
			r[i].Zone = zones[i]
		}
		return r
	}
	downAt := func(r []rosterEntry, i int) []rosterEntry { r[i].DownSince = 1; return r }
	drainAt := func(r []rosterEntry, i int) []rosterEntry { r[i].State = StateDraining; return r }
	moved := roster("a", "b")
	moved[1].ClusterAddr = "b:9999"
	tests := []struct {
		name    string
		servers string
		roster  []rosterEntry
		want    string
	}{
		{"steady", "a:v b:v c:v", roster("a", "b", "c"), ""},
		{"new node", "a:v b:v c:v", roster("a", "b", "c", "d"), "add non-voter d; "},
		{"fourth stays non-voter", "a:v b:v c:v d:n", roster("a", "b", "c", "d"), ""},
		{"fifth makes five voters", "a:v b:v c:v d:n e:n", roster("a", "b", "c", "d", "e"), "add voter d; add voter e; "},
		{"never beyond five", "a:v b:v c:v d:v e:v f:n g:n", roster("a", "b", "c", "d", "e", "f", "g"), ""},
		{"grow from one", "a:v b:n c:n", roster("a", "b", "c"), "add voter b; add voter c; "},
		{"two stay one voter", "a:v b:n", roster("a", "b"), ""},
		{"down voter keeps vote", "a:v b:v c:v d:n", downAt(roster("a", "b", "c", "d"), 2), ""},
		{"voter past grace replaced", "a:v b:v c:v d:n", roster("a", "b", "d"), "remove c; add voter d; "},
		{"down non-voter not promoted", "a:v b:v d:n", downAt(roster("a", "b", "d"), 2), ""},
		{"draining not promoted", "a:v b:v d:n e:n", drainAt(roster("a", "b", "d", "e"), 2), "add voter e; "},
		{"never remove self", "a:v b:v", roster("b"), ""},
		{"leaving leader replaced first", "a:v b:n", roster("b"), "add voter b; "},
		{"leaving leader of three", "a:v b:v c:v d:n", roster("b", "c", "d"), "add voter d; "},
		{"zones preferred", "a:v b:v c:n d:n", zoned(roster("a", "b", "c", "d"), "z1", "z2", "z1", "z3"), "add voter d; "},
		{"address change", "a:v b:v", moved, "add voter b; "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmtChanges(planServers(servers(tt.servers), tt.roster, "a", 5)); got != tt.want {
				t.Fatalf("planServers = %q, want %q", got, tt.want)
			}
		})
	}
}

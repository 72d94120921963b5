package ring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// roster returns n members named n000, n001, … spread round-robin over
// zones zones ("" when zones is 0).
func roster(n, zones int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i].ID = NodeID(fmt.Sprintf("n%03d", i))
		if zones > 0 {
			ms[i].Zone = fmt.Sprintf("z%d", i%zones)
		}
	}
	return ms
}

// randomRoster returns n members with random names and, when zones > 0,
// random zones among zones.
func randomRoster(rng *rand.Rand, n, zones int) []Member {
	ms := make([]Member, 0, n)
	for len(ms) < n {
		id := NodeID(fmt.Sprintf("node-%x", rng.Uint32()))
		if slices.ContainsFunc(ms, func(m Member) bool { return m.ID == id }) {
			continue
		}
		m := Member{ID: id}
		if zones > 0 {
			m.Zone = fmt.Sprintf("zone-%d", rng.IntN(zones))
		}
		ms = append(ms, m)
	}
	return ms
}

func mustBuild(tb testing.TB, ms []Member, replicas int, epoch uint64, prev *Table) *Table {
	tb.Helper()
	t, err := Build(ms, replicas, epoch, prev)
	if err != nil {
		tb.Fatalf("Build(%d members, %d replicas): %v", len(ms), replicas, err)
	}
	return t
}

// checkTable verifies every invariant Build promises for ms and replicas.
func checkTable(tb testing.TB, t *Table, ms []Member, replicas int) {
	tb.Helper()
	n := len(ms)
	w := min(replicas, n)
	members := t.Members()
	if len(members) != n || !slices.IsSorted(members) {
		tb.Fatalf("Members() = %d entries (sorted: %v), want %d sorted", len(members), slices.IsSorted(members), n)
	}
	// Zones by member index; a node without a zone is a zone of its own.
	zoneIdx := make(map[string]int)
	zone := make([]int, n)
	var zsize []int
	for _, m := range ms {
		i, ok := slices.BinarySearch(members, m.ID)
		if !ok {
			tb.Fatalf("member %q missing from Members()", m.ID)
		}
		z, ok := zoneIdx[m.Zone]
		if !ok || m.Zone == "" {
			z = len(zsize)
			zsize = append(zsize, 0)
			zoneIdx[m.Zone] = z
		}
		zone[i] = z
		zsize[z]++
	}
	load := make([]int, n)
	zc := make([]int, len(zsize))
	seen := make([]int, n)
	for s := range Slots {
		reps := t.Replicas(uint16(s))
		if len(reps) != w {
			tb.Fatalf("slot %d: %d replicas, want %d", s, len(reps), w)
		}
		if t.Primary(uint16(s)) != reps[0] {
			tb.Fatalf("slot %d: Primary %q != Replicas[0] %q", s, t.Primary(uint16(s)), reps[0])
		}
		present := 0
		row := t.rows[s*w : (s+1)*w]
		for k, id := range reps {
			i := int(row[k])
			if i >= n || members[i] != id {
				tb.Fatalf("slot %d: replica %q is not a member", s, id)
			}
			if seen[i] == s+1 {
				tb.Fatalf("slot %d: replica %q twice in %v", s, id, reps)
			}
			seen[i] = s + 1
			load[i]++
			if zc[zone[i]] == 0 {
				present++
			}
			zc[zone[i]]++
		}
		// Most even zone spread: no zone holds two more than a zone
		// that still has a spare node.
		hi, lo := 0, w
		if present < len(zsize) {
			lo = 0 // an absent zone has a spare node
		}
		for _, i := range row {
			c := zc[zone[i]]
			hi = max(hi, c)
			if c < zsize[zone[i]] {
				lo = min(lo, c)
			}
		}
		if hi > lo+1 {
			tb.Fatalf("slot %d: uneven zone spread %v", s, reps)
		}
		for _, i := range row {
			zc[zone[i]] = 0
		}
	}
	// Primaries: within ±5 % of the fair share, and in fact within one.
	pc := t.PrimaryCounts()
	fair := float64(Slots) / float64(n)
	plo, phi := Slots, 0
	for _, m := range ms {
		c := pc[m.ID]
		plo, phi = min(plo, c), max(phi, c)
		if d := float64(c) - fair; d > 0.05*fair+1 || d < -0.05*fair-1 {
			tb.Fatalf("%s has %d primaries, fair share %.1f", m.ID, c, fair)
		}
	}
	if phi-plo > 1 {
		tb.Errorf("primary counts range over [%d, %d]", plo, phi)
	}
	// Replica loads: even within each zone, and everywhere when zones do
	// not constrain.
	if len(zsize) == 1 || len(zsize) == n {
		if lo, hi := slices.Min(load), slices.Max(load); hi-lo > 1 {
			tb.Errorf("replica loads range over [%d, %d]", lo, hi)
		}
	}
	for z := range zsize {
		lo, hi := Slots*w, 0
		for i := range n {
			if zone[i] == z {
				lo, hi = min(lo, load[i]), max(hi, load[i])
			}
		}
		if hi-lo > 1 {
			tb.Errorf("replica loads in one zone range over [%d, %d]", lo, hi)
		}
	}
}

// primaryMoves counts slots whose primary differs.
func primaryMoves(a, b *Table) int {
	n := 0
	for s := range Slots {
		if a.Primary(uint16(s)) != b.Primary(uint16(s)) {
			n++
		}
	}
	return n
}

// placementMoves counts replica places (slot, node) present in b but not in a.
func placementMoves(a, b *Table) int {
	n := 0
	for s := range Slots {
		ra := a.Replicas(uint16(s))
		for _, id := range b.Replicas(uint16(s)) {
			if !slices.Contains(ra, id) {
				n++
			}
		}
	}
	return n
}

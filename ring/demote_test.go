package ring

import (
	"bytes"
	"slices"
	"testing"
)

func TestDemote(t *testing.T) {
	ms := roster(5, 0)
	tab := mustBuild(t, ms, 3, 4, nil)
	down := map[NodeID]bool{"n001": true, "n003": true}
	d := tab.Demote(5, func(id NodeID) bool { return down[id] })
	if d.Epoch() != 5 || d.ReplicaCount() != 3 || !slices.Equal(d.Members(), tab.Members()) {
		t.Fatalf("Demote: epoch %d, replicas %d, members %v", d.Epoch(), d.ReplicaCount(), d.Members())
	}
	if tab.Epoch() != 4 {
		t.Fatalf("Demote changed its receiver's epoch to %d", tab.Epoch())
	}
	for s := range Slots {
		before, after := tab.Replicas(uint16(s)), d.Replicas(uint16(s))
		if !sameSet(before, after) {
			t.Fatalf("slot %d: replica set %v became %v", s, before, after)
		}
		if !down[before[0]] {
			if !slices.Equal(before, after) {
				t.Fatalf("slot %d: live primary's list %v changed to %v", s, before, after)
			}
			continue
		}
		// The first live replica moves to the front; the rest keep order.
		i := slices.IndexFunc(before, func(id NodeID) bool { return !down[id] })
		if i < 0 {
			if !slices.Equal(before, after) {
				t.Fatalf("slot %d: all-demoted list %v changed to %v", s, before, after)
			}
			continue
		}
		want := append([]NodeID{before[i]}, slices.Delete(slices.Clone(before), i, i+1)...)
		if !slices.Equal(after, want) {
			t.Fatalf("slot %d: %v demoted to %v, want %v", s, before, after, want)
		}
	}
	pc := d.PrimaryCounts()
	if pc["n001"] != 0 || pc["n003"] != 0 {
		t.Fatalf("demoted nodes still primary: %v", pc)
	}
	// The result encodes and decodes like any table.
	enc, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Table
	if err := back.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	enc2, _ := back.MarshalBinary()
	if !bytes.Equal(enc, enc2) || back.Moved(d) != 0 {
		t.Fatal("demoted table does not round-trip")
	}
}

func TestDemoteAllOrNone(t *testing.T) {
	ms := roster(3, 0)
	tab := mustBuild(t, ms, 3, 1, nil)
	for _, all := range []bool{false, true} {
		d := tab.Demote(2, func(NodeID) bool { return all })
		for s := range Slots {
			if !slices.Equal(tab.Replicas(uint16(s)), d.Replicas(uint16(s))) {
				t.Fatalf("all=%v: slot %d changed", all, s)
			}
		}
	}
	var zero Table
	if z := zero.Demote(3, func(NodeID) bool { return true }); z.Replicas(0) != nil || z.Epoch() != 3 {
		t.Fatal("Demote of the zero Table")
	}
}

// Rebuilding from a demoted table keeps the promoted primaries of the
// other nodes, and demoting again restores the invariant.
func TestDemoteThenBuild(t *testing.T) {
	ms := roster(4, 0)
	tab := mustBuild(t, ms, 3, 1, nil)
	out := func(id NodeID) bool { return id == "n002" }
	d := tab.Demote(2, out)
	next := mustBuild(t, ms, 3, 3, d).Demote(3, out)
	if next.PrimaryCounts()["n002"] != 0 {
		t.Fatal("n002 primary after rebuild and demote")
	}
	if m := next.Moved(d); m > Slots/4 {
		t.Fatalf("rebuild of an unchanged roster moved %d slots", m)
	}
}

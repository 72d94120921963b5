package ring

import "slices"

// NodeID names a node. It is unique within a roster and never empty.
type NodeID string

// Member is one entry of the roster given to [Build].
type Member struct {
	// ID names the node; unique and non-empty.
	ID NodeID
	// Zone is the node's failure domain (rack, availability zone). Build
	// spreads each slot's replicas over zones as evenly as possible. The
	// empty zone means "unknown": such a node counts as a zone of its own.
	Zone string
}

// Limits accepted by [Build] and [Table.UnmarshalBinary].
const (
	// MaxMembers is the largest roster Build accepts.
	MaxMembers = 1024
	// MaxReplicas is the largest replica count Build accepts.
	MaxReplicas = 16
)

// Table maps every slot to an ordered replica list, primary first. It is
// immutable once returned by [Build] or filled by [Table.UnmarshalBinary],
// and safe for concurrent use; to change the table, build a new one and
// swap it in (for example with an atomic.Pointer).
//
// The zero Table has no members: Replicas returns nil and Primary "".
type Table struct {
	epoch    uint64
	replicas int      // requested replica count
	width    int      // entries per slot: min(replicas, len(members))
	members  []NodeID // sorted ascending, distinct
	ids      []NodeID // Slots*width entries; slot s at [s*width, (s+1)*width)
	rows     []uint16 // the same as indices into members
}

// Epoch returns the epoch the table was built with.
func (t *Table) Epoch() uint64 { return t.epoch }

// ReplicaCount returns the replica count the table was built with. Each
// slot's replica list has min(ReplicaCount, len(Members)) entries.
func (t *Table) ReplicaCount() int { return t.replicas }

// Replicas returns slot's replicas, primary first, then the backups. The
// returned slice is shared with the table: the caller must not modify it.
// It panics if slot >= Slots.
func (t *Table) Replicas(slot uint16) []NodeID {
	if t.width == 0 {
		return nil
	}
	i := int(slot) * t.width
	j := i + t.width
	return t.ids[i:j:j]
}

// Primary returns slot's primary. It panics if slot >= Slots.
func (t *Table) Primary(slot uint16) NodeID {
	if t.width == 0 {
		return ""
	}
	return t.ids[int(slot)*t.width]
}

// Members returns the table's nodes, sorted by ID, in a new slice.
func (t *Table) Members() []NodeID { return slices.Clone(t.members) }

// PrimaryCounts returns, for every member, the number of slots it is
// primary for (members without a primary slot map to 0). The map is new.
func (t *Table) PrimaryCounts() map[NodeID]int {
	m := make(map[NodeID]int, len(t.members))
	for _, id := range t.members {
		m[id] = 0
	}
	if t.width == 0 {
		return m
	}
	for s := range Slots {
		m[t.ids[s*t.width]]++
	}
	return m
}

// Moved returns the number of slots whose primary or replica set (ignoring
// the order of backups) differs between t and other. A nil other differs
// in every slot.
func (t *Table) Moved(other *Table) int {
	if other == nil || t.width == 0 || other.width == 0 {
		if other != nil && t.width == 0 && other.width == 0 {
			return 0
		}
		return Slots
	}
	n := 0
	for s := range Slots {
		a, b := t.Replicas(uint16(s)), other.Replicas(uint16(s))
		if a[0] != b[0] || !sameSet(a, b) {
			n++
		}
	}
	return n
}

// sameSet reports whether a and b, each free of duplicates, hold the same
// elements.
func sameSet(a, b []NodeID) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

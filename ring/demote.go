package ring

// Demote returns a copy of t with the given epoch in which no slot has a
// demoted node as primary while one of its replicas is not demoted: in
// every such slot the first replica in list order that is not demoted
// becomes primary, and the others keep their relative order. A demoted
// node keeps all its replica places; a slot whose replicas are all demoted
// is left as it is. demoted is called with member IDs only and must be a
// pure function of its argument.
//
// Demote is how the control plane takes primaries away from a node that is
// down or draining without moving any data: the promoted node is the
// slot's next replica, which already holds the slot. Build with the result
// as prev keeps these primaries where they are (a slot keeps prev's
// primary while it is a replica) but, balancing primaries, hands some back
// to a demoted node; callers demote again after every Build for as long as
// a node must not be primary.
//
// On the zero Table it returns another zero Table.
func (t *Table) Demote(epoch uint64, demoted func(NodeID) bool) *Table {
	out := &Table{epoch: epoch, replicas: t.replicas, width: t.width, members: t.members}
	if t.width == 0 {
		return out
	}
	down := make([]bool, len(t.members))
	some := false
	for i, id := range t.members {
		down[i] = demoted(id)
		some = some || down[i]
	}
	out.rows = make([]uint16, len(t.rows))
	copy(out.rows, t.rows)
	if some {
		w := t.width
		for s := range Slots {
			row := out.rows[s*w : (s+1)*w]
			if !down[row[0]] {
				continue
			}
			for k := 1; k < w; k++ {
				if !down[row[k]] {
					p := row[k]
					copy(row[1:k+1], row[:k])
					row[0] = p
					break
				}
			}
		}
	}
	out.ids = make([]NodeID, len(out.rows))
	for i, x := range out.rows {
		out.ids[i] = t.members[x]
	}
	return out
}

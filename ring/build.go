package ring

import (
	"cmp"
	"fmt"
	"slices"
)

// Builder computes slot tables. The zero value is ready to use; it is what
// [Build] uses.
type Builder struct {
	// Hash maps a node ID to 64 bits from which the node's per-slot
	// rendezvous scores are derived (see the package documentation). It
	// must be a pure function. Nil means FNV-1a 64 followed by a SplitMix64
	// finaliser. Tests may inject a degenerate hash to make scores, and so
	// a fresh table, computable by hand; balance never depends on the hash.
	Hash func(NodeID) uint64
}

// Build computes the slot table for members with the given replica count
// and epoch, starting from prev (nil for the first table). It is
// [Builder.Build] of the zero Builder.
func Build(members []Member, replicas int, epoch uint64, prev *Table) (*Table, error) {
	return Builder{}.Build(members, replicas, epoch, prev)
}

// Build computes the slot table for members with the given replica count
// and epoch. When prev is not nil the new table keeps as much of prev as
// balance allows, so that about 1/N of the slots move when one of N nodes
// joins or leaves. The result depends only on the arguments, not on the
// order of members. Build does not keep or modify members or prev.
//
// Build returns ErrNoMembers, ErrTooManyMembers, ErrBadReplicas,
// ErrEmptyID or ErrDuplicateID (wrapped) for a bad roster.
func (b Builder) Build(members []Member, replicas int, epoch uint64, prev *Table) (*Table, error) {
	switch {
	case len(members) == 0:
		return nil, ErrNoMembers
	case len(members) > MaxMembers:
		return nil, fmt.Errorf("%w: %d > %d", ErrTooManyMembers, len(members), MaxMembers)
	case replicas < 1 || replicas > MaxReplicas:
		return nil, fmt.Errorf("%w: %d not in [1, %d]", ErrBadReplicas, replicas, MaxReplicas)
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	for i, m := range ms {
		if m.ID == "" {
			return nil, ErrEmptyID
		}
		if i > 0 && ms[i-1].ID == m.ID {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateID, m.ID)
		}
	}
	if prev != nil && prev.width == 0 {
		prev = nil
	}
	hash := b.Hash
	if hash == nil {
		hash = defaultHash
	}
	p := newPlanner(ms, replicas, hash)
	if prev != nil {
		p.seed(prev)
	}
	p.fill(prev == nil)
	p.balance()
	prim := p.primaries(prev)
	return p.table(epoch, replicas, prim), nil
}

// defaultHash is FNV-1a 64 of id, finalised with mix.
func defaultHash(id NodeID) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return mix(h)
}

// mix is the SplitMix64 finaliser: a bijection with good avalanche.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// planner is the mutable state of one Build. Nodes are indices into the
// roster sorted by ID; every tie is broken by that index, which makes the
// result independent of the caller's member order.
type planner struct {
	n, w int      // members; entries per slot
	ids  []NodeID // sorted roster
	h    []uint64 // Hash(ids[i])
	idx  map[NodeID]int32
	// fromPrev maps prev's member indices to ours (-1: departed).
	fromPrev []int32

	// Zones. Each slot's per-zone replica counts c_z must satisfy
	// c_z <= min(zsize[z], lvl) and #{z : c_z == lvl} <= extra: the most
	// even spread the zone sizes allow (distinct zones when there are at
	// least w zones).
	zone   []int32 // node -> zone index
	zsize  []int32 // zone -> number of nodes
	zfixed []bool  // zone's per-slot count is the same in every valid slot
	zoned  bool    // false when the zone rule cannot bind
	lvl    int32
	extra  int32
	zc     []int32 // scratch zone counts, all zero between calls

	rows []int32 // Slots*w node indices, -1 = empty; entries packed first
	load []int32 // node -> number of slots it replicates
	// has[0][i] lists the slots where node i sits at row position 0 (the
	// previous or rendezvous primary), has[1][i] those where it sits
	// further back; exact sets, any order. cur holds a scan cursor for
	// each list.
	has [2][][]int32
	cur [2][]int
	// hpos[s*w+k] is the index of slot s in the has list of row(s)[k].
	hpos []int32
	// fairLo and fairHi: the average load rounded down and up (set by
	// balance; moves keep the total).
	fairLo, fairHi int32
	scratch        []int32
}

func newPlanner(ms []Member, replicas int, hash func(NodeID) uint64) *planner {
	n := len(ms)
	p := &planner{
		n:    n,
		w:    min(replicas, n),
		ids:  make([]NodeID, n),
		h:    make([]uint64, n),
		idx:  make(map[NodeID]int32, n),
		zone: make([]int32, n),
		load: make([]int32, n),
	}
	zones := make(map[string]int32)
	for i, m := range ms {
		p.ids[i] = m.ID
		p.h[i] = hash(m.ID)
		p.idx[m.ID] = int32(i)
		z, ok := zones[m.Zone]
		if !ok || m.Zone == "" {
			z = int32(len(p.zsize))
			p.zsize = append(p.zsize, 0)
			if m.Zone != "" {
				zones[m.Zone] = z
			}
		}
		p.zone[i] = z
		p.zsize[z]++
	}
	nz := len(p.zsize)
	p.zc = make([]int32, nz)
	p.zfixed = make([]bool, nz)
	p.zoned = nz > 1 && nz < n
	// lvl: the smallest level L with sum_z min(zsize, L) >= w.
	sumAt := func(l int32) (s int32) {
		for _, sz := range p.zsize {
			s += min(sz, l)
		}
		return s
	}
	p.lvl = 1
	for sumAt(p.lvl) < int32(p.w) {
		p.lvl++
	}
	p.extra = int32(p.w) - sumAt(p.lvl-1)
	flex := int32(0)
	for _, sz := range p.zsize {
		if sz >= p.lvl {
			flex++
		}
	}
	for z, sz := range p.zsize {
		p.zfixed[z] = sz < p.lvl || p.extra == flex
	}
	p.rows = make([]int32, Slots*p.w)
	for i := range p.rows {
		p.rows[i] = -1
	}
	p.hpos = make([]int32, Slots*p.w)
	for k := range p.has {
		p.has[k] = make([][]int32, n)
		p.cur[k] = make([]int, n)
		for i := range n {
			c := Slots / n
			if k == 1 {
				c *= p.w - 1
			}
			p.has[k][i] = make([]int32, 0, c+c/4+8)
		}
	}
	return p
}

func (p *planner) row(s int) []int32 { return p.rows[s*p.w : (s+1)*p.w] }

// slack is how far above the least loaded choice fill and primaries may
// go to keep a run of slots on one node: large with few nodes, where a
// node's share is thousands of slots, and down to 0 (ties only) from 46
// nodes on, where an uneven spread would have balancing move more than
// the ≈1/N it may.
func (p *planner) slack() int32 { return int32(Slots / (8 * p.n * p.n)) }

// scoreRun is how many consecutive slots share their rendezvous scores.
// A fresh table then hands slots out in runs rather than one by one, so
// CLUSTER SLOTS lists a few hundred ranges instead of one per slot or so
// (3 nodes: about 200, not 13,500), which every Redis Cluster client
// fetches and keeps. Balancing and refilling keep runs together too
// (moveFrom, extend, fill).
const scoreRun = 64

// score is node i's rendezvous score for slot s.
func (p *planner) score(s int, i int32) uint64 {
	return runScore(p.h[i], s)
}

func runScore(h uint64, s int) uint64 {
	return mix(h ^ (uint64(s/scoreRun)+1)*0x9e3779b97f4a7c15)
}

// fits reports whether row, less skip (-1: nothing) plus u, still obeys
// the zone rule. Without skip, row may be partial: fits then says whether
// it can still be completed.
func (p *planner) fits(row []int32, skip, u int32) bool {
	if !p.zoned {
		return true
	}
	zu := p.zone[u]
	if skip >= 0 && p.zone[skip] == zu {
		return true
	}
	for _, x := range row {
		if x >= 0 && x != skip {
			p.zc[p.zone[x]]++
		}
	}
	ok := true
	if c := p.zc[zu] + 1; c > p.zsize[zu] || c > p.lvl {
		ok = false
	} else if c == p.lvl {
		at := int32(0) // entries in zones already at lvl
		for _, x := range row {
			if x >= 0 && x != skip && p.zc[p.zone[x]] == p.lvl {
				at++
			}
		}
		ok = at/p.lvl+1 <= p.extra
	}
	for _, x := range row {
		if x >= 0 && x != skip {
			p.zc[p.zone[x]]--
		}
	}
	return ok
}

func (p *planner) add(s int, k int, u int32) {
	p.row(s)[k] = u
	p.load[u]++
	b := min(k, 1)
	p.hpos[s*p.w+k] = int32(len(p.has[b][u]))
	p.has[b][u] = append(p.has[b][u], int32(s))
}

// seed copies prev's replica lists, in order, dropping departed nodes,
// entries beyond the new width and entries that break the zone rule (a
// member may have changed zone).
func (p *planner) seed(prev *Table) {
	p.fromPrev = make([]int32, len(prev.members))
	for i, id := range prev.members {
		if u, ok := p.idx[id]; ok {
			p.fromPrev[i] = u
		} else {
			p.fromPrev[i] = -1
		}
	}
	pw := prev.width
	for s := range Slots {
		row, k := p.row(s), 0
		for _, i := range prev.rows[s*pw : (s+1)*pw] {
			if k == p.w {
				break
			}
			if u := p.fromPrev[i]; u >= 0 && p.fits(row[:k], -1, u) {
				p.add(s, k, u)
				k++
			}
		}
	}
}

// fill completes every row. Fresh (no prev): in rendezvous order, the
// highest-scoring nodes the zone rule admits. Otherwise: the least loaded
// admissible node, ties to the higher score, so that the places of a
// departed node spread evenly and balance needs no further moves.
func (p *planner) fill(fresh bool) {
	sc := make([]uint64, p.n)
	taken := make([]bool, p.n)
	top := make([]scored, 0, min(p.n, 4*p.w))
	lastRow, lastK := make([]int32, p.w), -1 // row of the slot before, as filled; its kept places
	for s := range Slots {
		row := p.row(s)
		k := 0
		for k < p.w && row[k] >= 0 {
			k++
		}
		if k == p.w {
			lastK = -1
			continue
		}
		if fresh && k == 0 && p.fillTop(s, top) {
			continue
		}
		if fresh {
			for i := range p.n {
				sc[i] = p.score(s, int32(i))
			}
			clear(taken)
			for _, x := range row[:k] {
				taken[x] = true
			}
			for k < p.w {
				best := int32(-1)
				for i := range int32(p.n) {
					if !taken[i] && (best < 0 || sc[i] > sc[best]) {
						best = i
					}
				}
				if best < 0 {
					panic("ring: no admissible node") // unreachable: rows are always completable
				}
				taken[best] = true
				if p.fits(row[:k], -1, best) {
					p.add(s, k, best)
					k++
				}
			}
			continue
		}
		// Within a score run, a slot whose kept places were those of
		// the slot before gets the same new ones where their loads are
		// within slack of the least loaded choice, so runs stay whole.
		same := s%scoreRun != 0 && k == lastK && slices.Equal(row[:k], lastRow[:k])
		kept := k
		for k < p.w {
			best, bestScore := int32(-1), uint64(0)
			for i := range int32(p.n) {
				if slices.Contains(row[:k], i) {
					continue
				}
				if best >= 0 && p.load[i] > p.load[best] {
					continue
				}
				si := p.score(s, i)
				if best >= 0 && p.load[i] == p.load[best] && si <= bestScore {
					continue
				}
				if p.fits(row[:k], -1, i) {
					best, bestScore = i, si
				}
			}
			if best < 0 {
				panic("ring: no admissible node") // unreachable: rows are always completable
			}
			if c := lastRow[k]; same && c != best && p.load[c] <= p.load[best]+p.slack() &&
				!slices.Contains(row[:k], c) && p.fits(row[:k], -1, c) {
				best = c
			} else if c != best {
				same = false
			}
			p.add(s, k, best)
			k++
		}
		copy(lastRow, row)
		lastK = kept
	}
}

type scored struct {
	score uint64
	node  int32
}

// fillTop fills the empty row of slot s from the cap(top) highest-scoring
// nodes, greedily in descending score order as fill does, and reports
// whether they sufficed (the zone rule may skip many). It is fill's fast
// path: one pass over the nodes instead of one per replica.
func (p *planner) fillTop(s int, top []scored) bool {
	top = top[:0]
	for i := range int32(p.n) {
		c := scored{p.score(s, i), i}
		if len(top) == cap(top) {
			if c.score <= top[len(top)-1].score {
				continue // ties go to the lower index, already in
			}
			top = top[:len(top)-1]
		}
		j := len(top)
		top = append(top, c)
		for j > 0 && top[j-1].score < c.score {
			top[j] = top[j-1]
			j--
		}
		top[j] = c
	}
	row, k := p.row(s), 0
	for _, c := range top {
		if k == p.w {
			break
		}
		if p.fits(row[:k], -1, c.node) {
			row[k] = c.node
			k++
		}
	}
	if k < p.w {
		for i := range row {
			row[i] = -1
		}
		return false
	}
	for i, u := range row {
		row[i] = -1
		p.add(s, i, u)
	}
	return true
}

// balance evens out replica loads by moving single replica places from the
// most loaded node to the least loaded one it can give to (loads differing
// by at least two), until no such move is possible. Each move lowers the
// sum of squared loads, so the loop ends; without binding zone constraints
// it ends with every load within one of every other, having moved only the
// surplus.
func (p *planner) balance() {
	n := p.n
	total := int32(0)
	for _, l := range p.load {
		total += l
	}
	p.fairLo, p.fairHi = total/int32(n), (total+int32(n)-1)/int32(n)
	p.scratch = make([]int32, 0, p.w)
	dead := make([]uint64, (n*n+63)/64) // (o,u) pairs with no possible move
	isDead := func(o, u int) bool { return dead[(o*n+u)/64]&(1<<((o*n+u)%64)) != 0 }
	exhausted := make([]bool, n)
	for {
		progress := false
		clear(exhausted)
		for {
			o := -1
			for i := range n {
				if !exhausted[i] && (o < 0 || p.load[i] > p.load[o]) {
					o = i
				}
			}
			if o < 0 {
				break
			}
			moved := false
			for {
				u := -1
				for i := range n {
					if p.load[i] <= p.load[o]-2 && (u < 0 || p.load[i] < p.load[u]) &&
						!isDead(o, i) && !p.pruned(o, i) {
						u = i
					}
				}
				if u < 0 {
					break
				}
				if p.move(int32(o), int32(u)) {
					moved = true
					break
				}
				dead[(o*n+u)/64] |= 1 << ((o*n + u) % 64)
			}
			if moved {
				progress = true
			} else {
				exhausted[o] = true
			}
		}
		if !progress {
			return
		}
	}
}

// pruned reports whether no move from o to u can ever obey the zone rule:
// a cross-zone move changes two zones' counts, impossible if either is
// fixed.
func (p *planner) pruned(o, u int) bool {
	zo, zu := p.zone[o], p.zone[u]
	return p.zoned && zo != zu && (p.zfixed[zo] || p.zfixed[zu])
}

// move hands one of o's slots to u and reports whether it found one it
// may. It prefers a slot where o sits at position 0 (the slot's previous
// or rendezvous primary) exactly when u holds fewer such places than its
// fair share of primaries and o more: the primary then travels with the
// place, and the primary pass needs no shifts for it. Otherwise it prefers
// a backup place, which leaves the slot's primary alone.
func (p *planner) move(o, u int32) bool {
	fair := Slots / p.n // primaries per node, rounded down
	first := 1
	if len(p.has[0][u]) < fair && len(p.has[0][o]) > fair {
		first = 0
	}
	return p.moveFrom(first, o, u) || p.moveFrom(1-first, o, u)
}

// moveFrom moves to u one of the places of o listed in has[b][o], scanning
// round-robin from the list's cursor so that successive moves spread over
// o's slots. It then moves the same place in the neighbouring slots of the
// same score run whose replica list was the same, as long as o keeps at
// least its fair share and u gets no more than its own (see extend), so
// that slots keep moving in runs and CLUSTER SLOTS stays short.
func (p *planner) moveFrom(b int, o, u int32) bool {
	list := p.has[b][o]
	for k := range len(list) {
		j := (p.cur[b][o] + k) % len(list)
		s := int(list[j])
		row := p.row(s)
		if slices.Contains(row, u) || !p.fits(row, o, u) {
			continue
		}
		orig := append(p.scratch[:0], row...)
		p.reassign(s, slices.Index(row, o), u)
		p.cur[b][o] = j
		p.extend(b, orig, s, o, u)
		return true
	}
	return false
}

// reassign gives place k of slot s, held by o = row(s)[k], to u.
func (p *planner) reassign(s, k int, u int32) {
	row := p.row(s)
	o := row[k]
	b := min(k, 1)
	list := p.has[b][o]
	j := p.hpos[s*p.w+k]
	last := int32(len(list) - 1)
	if j != last {
		moved := int(list[last])
		list[j] = list[last]
		p.hpos[moved*p.w+slices.Index(p.row(moved), o)] = j
	}
	p.has[b][o] = list[:last]
	row[k] = u
	p.load[o]--
	p.load[u]++
	p.hpos[s*p.w+k] = int32(len(p.has[b][u]))
	p.has[b][u] = append(p.has[b][u], int32(s))
}

// extend follows a move of o's place in slot s to u by the same move in
// the slots around s, within s's score run, whose replica list was orig
// too, while the move stays within both nodes' fair shares: o keeps at
// least the ceiling of the average load and u reaches at most its floor
// (and, for primary places, o keeps more than the fair share of primaries
// and u fewer). Such a move is one balance would make too; it only
// chooses which of o's places go.
func (p *planner) extend(b int, orig []int32, s int, o, u int32) {
	fair := Slots / p.n
	room := func() bool {
		if p.load[o]-1 < p.fairHi || p.load[u]+1 > p.fairLo {
			return false
		}
		return b == 1 || (len(p.has[0][u]) < fair && len(p.has[0][o]) > fair)
	}
	k := slices.Index(orig, o)
	start := s / scoreRun * scoreRun
	end := min(start+scoreRun, Slots)
	// orig already passed fits for this move in moveFrom.
	try := func(s2 int) bool {
		if !room() || !slices.Equal(p.row(s2), orig) {
			return false
		}
		p.reassign(s2, k, u)
		return true
	}
	for s2 := s + 1; s2 < end && try(s2); s2++ {
	}
	for s2 := s - 1; s2 >= start && try(s2); s2-- {
	}
}

// primaries chooses each slot's primary among its replicas: prev's primary
// when it is still a replica; otherwise (fresh) the row's first entry or
// (after a change) the replica with the fewest primaries so far. Then it
// evens out primary counts by shifting primaries along chains of slots
// (see shift) until counts differ by at most one or no chain exists.
func (p *planner) primaries(prev *Table) []int32 {
	prim := make([]int32, Slots)
	pcount := make([]int32, p.n)
	pl := make([][]int32, p.n) // node -> slots it is primary for (may hold stale entries)
	for i := range pl {
		pl[i] = make([]int32, 0, Slots/p.n+Slots/(4*p.n)+8)
	}
	for s := range Slots {
		row := p.row(s)
		pr := int32(-1)
		if prev != nil {
			if u := p.fromPrev[prev.rows[s*prev.width]]; u >= 0 && slices.Contains(row, u) {
				pr = u
			}
		}
		prim[s] = pr
		if pr >= 0 {
			pcount[pr]++
			pl[pr] = append(pl[pr], int32(s))
		}
	}
	chosen := make([]bool, Slots) // primary picked below, not kept from prev
	for s := range Slots {
		if prim[s] >= 0 {
			continue
		}
		row := p.row(s)
		pr := row[0]
		if prev != nil {
			for _, x := range row[1:] {
				if pcount[x] < pcount[pr] {
					pr = x
				}
			}
			// Within a score run, slots with one replica list keep one
			// primary while its count is within slack of the least, so
			// the run stays one range.
			if s%scoreRun != 0 && chosen[s-1] && slices.Equal(row, p.row(s-1)) && pcount[prim[s-1]] <= pcount[pr]+p.slack() {
				pr = prim[s-1]
			}
		}
		chosen[s] = true
		prim[s] = pr
		pcount[pr]++
		pl[pr] = append(pl[pr], int32(s))
	}
	sh := shifter{p: p, prim: prim, pcount: pcount, pl: pl,
		mark: make([]int32, p.n), par: make([]int32, p.n), pslot: make([]int32, p.n)}
	stuck := make([]bool, p.n)
	nodirect := make([]int32, p.n) // count at which direct last failed, -1: never
	for i := range nodirect {
		nodirect[i] = -1
	}
	for {
		progress := false
		clear(stuck)
		for {
			hi, lo := int32(-1), pcount[0]
			for i := range p.n {
				lo = min(lo, pcount[i])
				if !stuck[i] {
					hi = max(hi, pcount[i])
				}
			}
			if hi-lo <= 1 {
				break
			}
			// Any most-loaded node that shares a slot with an underloaded
			// one sheds a primary directly; only if none does, search for
			// a chain from the first of them.
			done, o := false, int32(-1)
			for i := range int32(p.n) {
				if stuck[i] || pcount[i] != hi {
					continue
				}
				if o < 0 {
					o = i
				}
				if nodirect[i] == hi {
					continue
				}
				if sh.direct(i, lo) {
					done = true
					break
				}
				// No neighbour has hi-2 or fewer. Donors only drop to
				// hi-1 and receivers only rise, so this stays so while hi
				// does, unless a chain rewires i's slots.
				nodirect[i] = hi
			}
			if !done && sh.chain(o) {
				done = true
				for i := range nodirect {
					nodirect[i] = -1
				}
			}
			if done {
				progress = true
			} else {
				stuck[o] = true
			}
		}
		if !progress {
			return prim
		}
	}
}

// shifter moves primaries. An edge a→b exists when a is primary of a slot
// that b replicates; shifting along a path o→…→v makes each node the
// primary of the next edge's slot, so o loses one primary, v gains one and
// the nodes between keep their counts.
type shifter struct {
	p      *planner
	prim   []int32
	pcount []int32
	pl     [][]int32
	mark   []int32 // BFS visit stamp per node
	stamp  int32
	par    []int32 // BFS parent node
	pslot  []int32 // BFS slot of the edge from parent
	queue  []int32
}

func (sh *shifter) reassign(s, from, to int32) {
	sh.prim[s] = to
	sh.pcount[from]--
	sh.pcount[to]++
	sh.pl[to] = append(sh.pl[to], s)
}

// slotsOf returns the slots a is primary for, dropping stale entries. A
// slot a lost and regained may be listed twice; callers do not mind.
func (sh *shifter) slotsOf(a int32) []int32 {
	l := sh.pl[a][:0]
	for _, s := range sh.pl[a] {
		if sh.prim[s] == a {
			l = append(l, s)
		}
	}
	sh.pl[a] = l
	return l
}

// direct moves one of o's primaries to a replica of the same slot that
// has at least two fewer primaries, preferring the fewest (lo is the
// current minimum), and reports whether there was one.
func (sh *shifter) direct(o, lo int32) bool {
	target := sh.pcount[o] - 2
	best, bs := int32(-1), int32(-1)
	list := sh.pl[o]
	for j := 0; j < len(list); {
		s := list[j]
		if sh.prim[s] != o { // stale: drop it
			list[j] = list[len(list)-1]
			list = list[:len(list)-1]
			continue
		}
		j++
		for _, x := range sh.p.row(int(s)) {
			if x != o && sh.pcount[x] <= target && (best < 0 || sh.pcount[x] < sh.pcount[best]) {
				best, bs = x, s
			}
		}
		if best >= 0 && sh.pcount[best] == lo {
			break
		}
	}
	sh.pl[o] = list
	if best < 0 {
		return false
	}
	sh.reassign(bs, o, best)
	return true
}

// chain moves one primary away from o to a node with at least two fewer
// along the shortest path found by breadth-first search, and reports
// whether there was one.
func (sh *shifter) chain(o int32) bool {
	p := sh.p
	target := sh.pcount[o] - 2
	sh.stamp++
	sh.mark[o] = sh.stamp
	sh.queue = append(sh.queue[:0], o)
	for qi := 0; qi < len(sh.queue); qi++ {
		a := sh.queue[qi]
		for _, s := range sh.slotsOf(a) {
			for _, x := range p.row(int(s)) {
				if sh.mark[x] == sh.stamp {
					continue
				}
				sh.mark[x] = sh.stamp
				sh.par[x], sh.pslot[x] = a, s
				if sh.pcount[x] <= target {
					for v := x; v != o; v = sh.par[v] {
						sh.reassign(sh.pslot[v], sh.par[v], v)
					}
					return true
				}
				sh.queue = append(sh.queue, x)
			}
		}
	}
	return false
}

// table assembles the result: each row reordered primary first, the
// backups keeping their relative order.
func (p *planner) table(epoch uint64, replicas int, prim []int32) *Table {
	t := &Table{
		epoch:    epoch,
		replicas: replicas,
		width:    p.w,
		members:  p.ids,
		ids:      make([]NodeID, Slots*p.w),
		rows:     make([]uint16, Slots*p.w),
	}
	for s := range Slots {
		out := t.rows[s*p.w : (s+1)*p.w]
		out[0] = uint16(prim[s])
		k := 1
		for _, x := range p.row(s) {
			if x != prim[s] {
				out[k] = uint16(x)
				k++
			}
		}
	}
	for i, x := range t.rows {
		t.ids[i] = p.ids[x]
	}
	return t
}

package replication

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

// takeover is a slot this node is primary for but does not serve yet.
type takeover struct {
	notBefore time.Time // the old primary's lease has run out by then
	// prev is the slot's replica list in the table before the one that
	// made this node primary (nil when unknown, as after a restart):
	// acknowledged writes are on a quorum of it.
	prev []ring.NodeID
	// tried: a reconciliation round ran before the lease wait was over
	// (see startTakeOver).
	tried bool
}

// follow applies each new table: it sets the store's epoch, stops
// serving slots this node lost, and takes over the slots it gained
// (lease wait, then reconciliation). It also drops every slot after a
// gap in what it knows: tables it never saw (another node may have been
// primary meanwhile) or a time out of contact.
func (r *Replicator) follow() {
	defer r.wg.Done()
	var seen uint64
	due := make(map[uint16]takeover)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	contact := true
	// Reconciliation runs on its own goroutine, one round at a time, so
	// a slow peer never delays applying a new table.
	results := make(chan takeoverResult, 1)
	busy := false
	for {
		ch := r.cl.Changes()
		if t := r.cl.Table(); t != nil && t.Epoch() != seen {
			gap := seen != 0 && t.Epoch() != seen+1
			seen = t.Epoch()
			r.apply(t, due, gap)
		}
		now := r.cl.InContact()
		lapses := r.cl.Lapses()
		if !now || lapses != r.lapsesSeen.Load() {
			r.cutOff.Store(true)
		}
		switch {
		case !now && contact:
			r.log.Warn("lost contact with the cluster: not serving as primary until it is back")
			contact = false
		case now && r.cutOff.Load():
			// The table may have moved while we were cut off; take
			// everything over again (the lease wait lets a newer
			// table arrive first). Readiness is dropped before the
			// cut-off mark, so Serving never pairs old readiness
			// with restored contact.
			r.log.Info("back in contact with the cluster: taking primaries over again")
			contact = true
			r.lapsesSeen.Store(lapses)
			if t := r.table.Load(); t != nil {
				r.apply(t, due, true)
			}
			r.cutOff.Store(false)
		}
		if !busy && len(due) > 0 {
			busy = r.startTakeOver(due, results)
		}
		select {
		case <-r.stop:
			if busy {
				<-results
			}
			return
		case res := <-results:
			busy = false
			r.finishTakeOver(res, due)
		case <-ch:
		case <-tick.C:
		}
	}
}

// apply makes t the table acted on. With gap, slots this node was
// serving are taken over again as if newly gained.
func (r *Replicator) apply(t *ring.Table, due map[uint16]takeover, gap bool) {
	prevT := r.table.Load()
	// Stop serving what t takes away (or, after a gap, everything)
	// before t becomes visible: Serving must never pair the new table
	// with readiness earned under an older one.
	lost := 0
	for s := range ring.Slots {
		slot := uint16(s)
		var handed uint64 // see handedOver
		if t.Primary(slot) != r.cfg.Self {
			if r.ready[slot].Swap(false) && !r.cutOff.Load() {
				lost++
				if !gap {
					handed = t.Epoch()
				}
			}
			delete(due, slot)
		} else if gap {
			r.ready[slot].Store(false)
		}
		r.handedOver[slot].Store(handed)
	}
	if gap || prevT == nil || prevT.Epoch() == t.Epoch() {
		r.prevTable.Store(nil)
	} else {
		r.prevTable.Store(prevT)
	}
	r.gen++ // a reconciliation round under way reports for an older state
	notBefore := time.Now().Add(r.cl.LeaseTimeout())
	if gap {
		for s, d := range due {
			d.notBefore = notBefore
			due[s] = d
		}
	}
	r.store.SetEpoch(uint32(t.Epoch()))
	r.syncMu.Lock()
	if prevT != nil && !gap && prevT.Epoch() != t.Epoch() {
		r.dropStaleGained(prevT, t)
	}
	r.table.Store(t)
	r.tableAt.Store(time.Now().UnixNano())
	r.markSynced(prevT, t, gap)
	r.syncMu.Unlock()
	gained := 0
	for s := range ring.Slots {
		slot := uint16(s)
		if t.Primary(slot) != r.cfg.Self || r.ready[slot].Load() {
			continue
		}
		if _, ok := due[slot]; !ok {
			var prev []ring.NodeID
			if prevT != nil && prevT.Epoch() != t.Epoch() {
				prev = prevT.Replicas(slot)
			}
			due[slot] = takeover{notBefore: notBefore, prev: prev}
			gained++
		}
	}
	r.log.Info("applied slot table", "epoch", t.Epoch(), "primaries_gained", gained, "primaries_lost", lost, "gap", gap)
}

// dropStaleGained empties this node's copy of every slot t makes it
// primary of that prev did not make it a replica of, before t is visible.
// Such a copy is left from an older table: it is not one a takeover
// counts, no primary sent it writes under prev or t, and keys deleted
// since it was last a replica (their tombstones gone) would come back
// through it, as the takeover merges what it fetches into this copy.
// Backup places it gains are cleaned by catch-up (prune) instead: a
// primary ahead of this node may already have had copies acknowledged
// here. syncMu is held.
func (r *Replicator) dropStaleGained(prev, t *ring.Table) {
	var stale []uint16
	for s := range ring.Slots {
		slot := uint16(s)
		if t.Primary(slot) == r.cfg.Self && !slices.Contains(prev.Replicas(slot), r.cfg.Self) && r.store.SlotEntries(slot) > 0 {
			stale = append(stale, slot)
		}
	}
	if len(stale) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.store.DropSlots(ctx, stale); err != nil {
		r.log.Warn("emptying old copies of slots gained as primary", "slots", len(stale), "err", err)
		return
	}
	r.DroppedSlots.Add(int64(len(stale)))
	r.log.Info("emptied old copies of slots gained as primary", "slots", len(stale), "epoch", t.Epoch())
}

// takeoverResult is one reconciliation round: the slots that heard from
// enough replicas, under table t.
type takeoverResult struct {
	t    *ring.Table
	gen  uint64
	done []uint16
}

// startTakeOver starts reconciling the due slots whose lease wait is
// over, and those not tried yet, and reports whether it did. A slot
// whose lease wait is not over is served early only when its old
// primary, consulted in the round, had already applied this table (it
// handed the slot over: a drain) and so can no longer acknowledge
// anything for it. Slots it cannot reconcile (too few replicas
// reachable) stay due and are tried again in a later round.
func (r *Replicator) startTakeOver(due map[uint16]takeover, results chan<- takeoverResult) bool {
	t := r.table.Load()
	now := time.Now()
	plans := make(map[uint16]takeover)
	var slots []uint16
	for s, d := range due {
		if !now.Before(d.notBefore) || !d.tried {
			slots = append(slots, s)
			plans[s] = d
			d.tried = true
			due[s] = d
		}
	}
	if len(slots) == 0 || !r.inContact() {
		return false
	}
	slices.Sort(slots)
	gen := r.gen
	go func() { results <- takeoverResult{t: t, gen: gen, done: r.reconcile(t, slots, plans)} }()
	return true
}

// finishTakeOver marks the reconciled slots ready, unless the table
// changed meanwhile (the slots are then planned again under the new one).
func (r *Replicator) finishTakeOver(res takeoverResult, due map[uint16]takeover) {
	if r.table.Load() != res.t || r.gen != res.gen {
		return
	}
	for _, s := range res.done {
		if _, ok := due[s]; ok && res.t.Primary(s) == r.cfg.Self {
			r.synced[s].Store(true) // reconciled from enough replicas: it has every acknowledged write
			r.ready[s].Store(true)
			delete(due, s)
		}
	}
	if len(res.done) > 0 {
		r.log.Info("serving slots as primary", "slots", len(res.done), "waiting", len(due), "epoch", res.t.Epoch())
	}
}

// plan says whom a takeover must consult: acknowledged writes are on W
// of the slot's replicas in the table they were written under (prev,
// or the current one when prev is unknown), so this node must cover
// n−W+1 of them, itself included if it is one and has not lost its
// data (selfValid).
func (r *Replicator) plan(cur, prev []ring.NodeID, selfValid bool) (sources []ring.NodeID, need int) {
	base := prev
	if base == nil {
		base = cur
	}
	n := len(base)
	w := r.quorum(n)
	need = n - w + 1
	if selfValid && slices.Contains(base, r.cfg.Self) {
		need--
	}
	if r.cfg.Async || w <= 1 {
		need = min(need, 1) // no promise to keep; one peer is enough
	}
	for _, id := range base {
		if id != r.cfg.Self {
			sources = append(sources, id)
		}
	}
	// Current replicas that were not in base hold nothing older, but
	// asking them too does no harm when they are reachable.
	for _, id := range cur {
		if id != r.cfg.Self && !slices.Contains(sources, id) {
			sources = append(sources, id)
		}
	}
	return sources, max(need, 0)
}

// reconcile brings slots up to date from their other replicas and
// returns the ones that heard from enough of them.
func (r *Replicator) reconcile(t *ring.Table, slots []uint16, due map[uint16]takeover) []uint16 {
	heard := make(map[uint16]int, len(slots))
	lostHeard := make(map[uint16]int, len(slots)) // base replicas that answered having lost their data
	others := make(map[uint16]int, len(slots))    // base replicas other than this node
	needs := make(map[uint16]int, len(slots))
	counts := make(map[uint16]map[ring.NodeID]bool, len(slots))
	bySource := make(map[ring.NodeID][]uint16)
	var done []uint16
	for _, s := range slots {
		d := due[s]
		selfValid := r.valid(s)
		sources, need := r.plan(t.Replicas(s), d.prev, selfValid)
		if need == 0 {
			if !time.Now().Before(d.notBefore) { // nobody to ask, so nobody to confirm a handover
				done = append(done, s)
			}
			continue
		}
		needs[s] = need
		base := d.prev
		if base == nil {
			base = t.Replicas(s)
		}
		counts[s] = make(map[ring.NodeID]bool)
		for _, id := range base {
			counts[s][id] = true // only these count towards need
		}
		others[s] = len(base)
		if slices.Contains(base, r.cfg.Self) {
			others[s]--
		}
		for _, id := range sources {
			bySource[id] = append(bySource[id], s)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	fenced := make(map[uint16]bool) // the old primary answered having applied t
	var newest uint64               // the newest table epoch a peer answered with
	for id, ss := range bySource {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, epoch := r.syncFrom(id, ss, "takeover", &r.Reconciled)
			mu.Lock()
			newest = max(newest, epoch)
			for s := range ok {
				if prev := due[s].prev; len(prev) > 0 && prev[0] == id && epoch >= t.Epoch() {
					fenced[s] = true
				}
			}
			for s, st := range ok {
				switch {
				case !counts[s][id]:
				case st&wire.SlotLost == 0:
					heard[s]++
				default:
					lostHeard[s]++
				}
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if newest > t.Epoch() {
		// A peer already acts on a newer table: this node's control
		// plane is behind (as right after a partition heals, when the
		// first heartbeat comes before the entries it missed), and the
		// slots may have moved meanwhile. Serve nothing on t.
		r.log.Info("takeover: a peer has a newer table; waiting for it", "ours", t.Epoch(), "theirs", newest)
		return nil
	}
	short, early := 0, 0
	now := time.Now()
	for _, s := range slots {
		n, ok := needs[s]
		if now.Before(due[s].notBefore) {
			if !fenced[s] {
				continue // the old primary may still be acknowledging: wait out its lease
			}
			early++
		}
		switch {
		case !ok:
		case heard[s] >= n:
			done = append(done, s)
		case heard[s]+lostHeard[s] == others[s]:
			// Every replica the writes could be on answered, some having
			// lost their data (or the cluster is new and nothing was
			// written yet): this node now holds all that is left
			// anywhere, and waiting would not bring anything back.
			short++
			done = append(done, s)
		}
	}
	if early > 0 {
		r.log.Debug("takeover: old primary handed over; not waiting out its lease", "slots", early)
	}
	if short > 0 {
		// Normal when a cluster is new; otherwise a write acknowledged
		// only by replicas that lost their data is gone.
		r.log.Info("takeover: every replica answered, too few with their data intact; taking over with all that is left",
			"slots", short)
	}
	return done
}

// syncFrom compares the digests of slots with peer id, fetches the ones
// that differ and applies them newer-wins, counting applied entries in
// applied. It returns the slots it brought up to date (all of them
// unless the peer failed), each with the peer's wire.Slot* state for it.
// why names the caller in logs.
func (r *Replicator) syncFrom(id ring.NodeID, slots []uint16, why string, applied *atomic.Int64) (map[uint16]byte, uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { // Close must not wait out a slow fetch
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	p := r.peer(id)
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	rep, err := p.call(dctx, &wire.Msg{Kind: wire.KindDigest, Slots: slots})
	dcancel()
	if err != nil || len(rep.Digests) != len(slots) {
		r.log.Debug(why+": digests unavailable", "peer", id, "err", err)
		return nil, 0
	}
	states := make(map[uint16]byte, len(slots))
	for i, s := range slots {
		if i < len(rep.States) {
			states[s] = rep.States[i]
		} else {
			states[s] = wire.SlotComplete // a sender that predates States
		}
	}
	var differ []uint16
	for i, s := range slots {
		if rep.Digests[i] != r.store.Digest(s) {
			differ = append(differ, s)
		}
	}
	if len(differ) == 0 {
		return states, rep.Epoch
	}
	// A backup catching up from its primary also drops what the primary
	// no longer has (prune): entries the stream of a slot lacked, at or
	// below the slot's mark. Only from a primary that serves the slot
	// (it has every acknowledged write), and never at a takeover, which
	// merges several copies.
	prune := why == "catch-up"
	seen := make(map[uint16]map[string]struct{}) // keys streamed, of slots not complete yet
	n, pruned := 0, 0
	err = p.stream(ctx, &wire.Msg{Kind: wire.KindFetch, Slots: differ}, func(m *wire.Msg) error {
		for _, e := range m.Entries {
			slot := ring.Slot(e.Key)
			ok, err := r.store.Apply(ctx, slot, fromEntry(e), e.Deleted)
			if err != nil {
				return err
			}
			if ok {
				n++
			}
			if prune {
				if seen[slot] == nil {
					seen[slot] = make(map[string]struct{})
				}
				seen[slot][e.Key] = struct{}{}
			}
		}
		if prune && len(m.Marks) == 2*len(m.Slots) {
			for i, s := range m.Slots {
				if states[s]&wire.SlotComplete == 0 {
					continue
				}
				mark := storage.Version{Epoch: uint32(m.Marks[2*i]), Seq: m.Marks[2*i+1]}
				keys := seen[s]
				k, err := r.store.PruneSlot(ctx, s, mark, func(key string) bool { _, ok := keys[key]; return ok })
				if err != nil {
					return err
				}
				pruned += k
			}
		}
		for _, s := range m.Slots {
			delete(seen, s) // complete: a batch may go on with the next slot's first entries
		}
		return nil
	})
	if err != nil {
		r.log.Warn(why+": fetching slots failed", "peer", id, "slots", len(differ), "err", err)
		return nil, 0
	}
	applied.Add(int64(n))
	r.Pruned.Add(int64(pruned))
	if n > 0 || pruned > 0 || why == "takeover" {
		r.log.Info(why+": fetched differing slots", "peer", id, "slots", len(differ), "entries_applied", n, "entries_pruned", pruned)
	}
	return states, rep.Epoch
}

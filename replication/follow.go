package replication

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
)

// follow applies each new table: it sets the store's epoch, stops
// serving slots this node lost, and takes over the slots it gained
// (lease wait, then reconciliation).
func (r *Replicator) follow() {
	defer r.wg.Done()
	var seen uint64
	// due: slots this node is primary for but not serving yet, with the
	// earliest time it may serve them.
	due := make(map[uint16]time.Time)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := r.cl.Changes()
		if t := r.cl.Table(); t != nil && t.Epoch() != seen {
			seen = t.Epoch()
			r.apply(t, due)
		}
		if len(due) > 0 {
			r.takeOver(due)
		}
		select {
		case <-r.stop:
			return
		case <-ch:
		case <-tick.C:
		}
	}
}

func (r *Replicator) apply(t *ring.Table, due map[uint16]time.Time) {
	r.store.SetEpoch(uint32(t.Epoch()))
	r.table.Store(t)
	notBefore := time.Now().Add(r.cl.LeaseTimeout())
	gained, lost := 0, 0
	for s := range ring.Slots {
		slot := uint16(s)
		if t.Primary(slot) != r.cfg.Self {
			if r.ready[slot].Swap(false) {
				lost++
			}
			delete(due, slot)
			continue
		}
		if !r.ready[slot].Load() {
			if _, ok := due[slot]; !ok {
				due[slot] = notBefore
				gained++
			}
		}
	}
	r.log.Info("applied slot table", "epoch", t.Epoch(), "primaries_gained", gained, "primaries_lost", lost)
}

// takeOver reconciles the due slots whose lease wait is over and marks
// them ready. Slots it cannot reconcile yet (too few replicas reachable)
// stay due and are retried on the next tick.
func (r *Replicator) takeOver(due map[uint16]time.Time) {
	t := r.table.Load()
	now := time.Now()
	var slots []uint16
	for s, nb := range due {
		if !now.Before(nb) {
			slots = append(slots, s)
		}
	}
	if len(slots) == 0 || !r.cl.InContact() {
		return
	}
	slices.Sort(slots)
	done := r.reconcile(t, slots)
	for _, s := range done {
		if r.table.Load() == t && t.Primary(s) == r.cfg.Self {
			r.ready[s].Store(true)
		}
		delete(due, s)
	}
	if len(done) > 0 {
		r.log.Info("serving slots as primary", "slots", len(done), "waiting", len(due), "epoch", t.Epoch())
	}
}

// need returns how many other replicas of a slot with n replicas must be
// consulted at takeover: with them, this node covers n−W+1 replicas,
// which meet every set of W that may hold an acknowledged write.
func (r *Replicator) need(n int) int {
	w := r.quorum(n)
	k := n - w
	if r.cfg.Async || w <= 1 {
		k = min(k, 1) // no promise to keep; one peer is enough
	}
	return k
}

// reconcile brings slots up to date from their other replicas and
// returns the ones that heard from enough of them.
func (r *Replicator) reconcile(t *ring.Table, slots []uint16) []uint16 {
	heard := make(map[uint16]int, len(slots))
	bySource := make(map[ring.NodeID][]uint16)
	var done []uint16
	for _, s := range slots {
		reps := t.Replicas(s)
		if r.need(len(reps)) == 0 {
			done = append(done, s)
			continue
		}
		for _, id := range reps {
			if id != r.cfg.Self {
				bySource[id] = append(bySource[id], s)
			}
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, ss := range bySource {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := r.syncFrom(id, ss)
			mu.Lock()
			for _, s := range ok {
				heard[s]++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, s := range slots {
		if n := r.need(len(t.Replicas(s))); n > 0 && heard[s] >= n {
			done = append(done, s)
		}
	}
	return done
}

// syncFrom compares the digests of slots with peer id, fetches the ones
// that differ and applies them newer-wins. It returns the slots it
// brought up to date (all of them unless the peer failed).
func (r *Replicator) syncFrom(id ring.NodeID, slots []uint16) []uint16 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := r.peer(id)
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	rep, err := p.call(dctx, &wire.Msg{Kind: wire.KindDigest, Slots: slots})
	dcancel()
	if err != nil || len(rep.Digests) != len(slots) {
		r.log.Debug("takeover: digests unavailable", "peer", id, "err", err)
		return nil
	}
	var differ []uint16
	for i, s := range slots {
		if rep.Digests[i] != r.store.Digest(s) {
			differ = append(differ, s)
		}
	}
	if len(differ) == 0 {
		return slots
	}
	applied := 0
	err = p.stream(ctx, &wire.Msg{Kind: wire.KindFetch, Slots: differ}, func(m *wire.Msg) error {
		for _, e := range m.Entries {
			slot := ring.Slot(e.Key)
			ok, err := r.store.Apply(ctx, slot, fromEntry(e), e.Deleted)
			if err != nil {
				return err
			}
			if ok {
				applied++
			}
		}
		return nil
	})
	if err != nil {
		r.log.Warn("takeover: fetching slots failed", "peer", id, "slots", len(differ), "err", err)
		return nil
	}
	r.Reconciled.Add(int64(applied))
	r.log.Info("takeover: reconciled slots", "peer", id, "slots", len(differ), "entries_applied", applied)
	return slots
}

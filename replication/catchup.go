package replication

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
)

// A backup's copy of a slot is "in sync" when it holds every write
// acknowledged in the slot. It stops being so when the node becomes a
// replica of the slot it was not before (scale-out, re-replication after
// a node stayed away past the down grace), when the node restarts (it
// may have missed writes while down, or lost its disk), and after a gap
// (lost contact, skipped tables: the others may have gone on without
// it). A background loop then compares per-slot digests with the slot's
// primary and fetches the slots that differ: rejoin catch-up and
// re-replication are the same operation. The same loop compares every
// backup slot again at AntiEntropy intervals and repairs what differs.
//
// A node is ready (Ready) only when all its slots are in sync, so a
// rolling deploy that waits for readiness never takes down the last
// up-to-date copy of a slot.

// markSynced updates the in-sync flags for table t, which replaces prev
// (nil after a restart); it is called with syncMu held, as t is stored.
func (r *Replicator) markSynced(prev, t *ring.Table, gap bool) {
	for s := range ring.Slots {
		slot := uint16(s)
		kept := prev != nil && !gap && slices.Contains(prev.Replicas(slot), r.cfg.Self)
		if !kept || !slices.Contains(t.Replicas(slot), r.cfg.Self) {
			r.synced[s].Store(false)
		}
	}
}

// streamLost is called when a stream that carried copies from primary
// id ends: copies sent after it broke never arrived, so the slots id
// leads are caught up again (cheap when nothing was missed: the digests
// agree).
func (r *Replicator) streamLost(id ring.NodeID) {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	t := r.table.Load()
	if t == nil {
		return
	}
	for s := range ring.Slots {
		if t.Primary(uint16(s)) == id {
			r.synced[s].Store(false)
		}
	}
}

// missed records that a copy for slot may not have reached backup id;
// the catch-up loop tells id to compare the slot with this node.
func (r *Replicator) missed(id ring.NodeID, slot uint16) {
	r.missedMu.Lock()
	if r.missedBy == nil {
		r.missedBy = make(map[ring.NodeID]map[uint16]struct{})
	}
	if r.missedBy[id] == nil {
		r.missedBy[id] = make(map[uint16]struct{})
	}
	r.missedBy[id][slot] = struct{}{}
	r.missedMu.Unlock()
}

// missedExcept records slot as missed by every backup not in heard.
func (r *Replicator) missedExcept(backups []ring.NodeID, heard []string, slot uint16) {
	for _, id := range backups {
		if !slices.Contains(heard, string(id)) {
			r.missed(id, slot)
		}
	}
}

// tellMissed sends each backup the slots whose copies may not have
// reached it; what cannot be sent is kept for the next round.
func (r *Replicator) tellMissed() {
	r.missedMu.Lock()
	all := r.missedBy
	r.missedBy = nil
	r.missedMu.Unlock()
	for id, set := range all {
		slots := slices.Sorted(maps.Keys(set))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := r.peer(id).call(ctx, &wire.Msg{Kind: wire.KindReplicate, Slots: slots})
		cancel()
		if err != nil {
			for _, s := range slots {
				r.missed(id, s)
			}
			continue
		}
		r.log.Debug("told a backup to catch up slots", "backup", id, "slots", len(slots))
	}
}

// resync marks slots as not in sync, on a primary's word.
func (r *Replicator) resync(slots []uint16) {
	r.syncMu.Lock()
	for _, s := range slots {
		if int(s) < ring.Slots {
			r.synced[s].Store(false)
		}
	}
	r.syncMu.Unlock()
}

// backupSlot reports whether t makes this node a backup of slot.
func (r *Replicator) backupSlot(t *ring.Table, slot uint16) bool {
	return t.Primary(slot) != r.cfg.Self && slices.Contains(t.Replicas(slot), r.cfg.Self)
}

// Unsynced counts the slots this node backs up whose copy is not known
// to be complete yet.
func (r *Replicator) Unsynced() int {
	t := r.table.Load()
	if t == nil {
		return 0
	}
	n := 0
	for s := range ring.Slots {
		if r.backupSlot(t, uint16(s)) && !r.synced[s].Load() {
			n++
		}
	}
	return n
}

// catchUp brings backup slots in sync and runs anti-entropy.
func (r *Replicator) catchUp() {
	defer r.wg.Done()
	tick := time.NewTicker(r.cfg.CatchUpInterval)
	defer tick.Stop()
	nextFull := time.Now().Add(r.cfg.AntiEntropy)
	lastPending := -1
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		t := r.table.Load()
		if t == nil || !r.cl.InContact() {
			continue
		}
		r.tellMissed()
		full := r.cfg.AntiEntropy > 0 && !time.Now().Before(nextFull)
		bySource := make(map[ring.NodeID][]uint16)
		pending := 0
		for s := range ring.Slots {
			slot := uint16(s)
			if !r.backupSlot(t, slot) {
				continue
			}
			if !r.synced[s].Load() {
				pending++
			} else if !full {
				continue
			}
			bySource[t.Primary(slot)] = append(bySource[t.Primary(slot)], slot)
		}
		if pending != lastPending && pending > 0 {
			r.log.Info("catching up backup slots from their primaries", "slots", pending, "epoch", t.Epoch())
		}
		lastPending = pending
		if full {
			nextFull = time.Now().Add(r.cfg.AntiEntropy)
		}
		start := time.Now()
		for _, src := range slices.Sorted(maps.Keys(bySource)) {
			ok := r.syncFrom(src, bySource[src], "catch-up", &r.Repaired)
			r.syncMu.Lock()
			if r.table.Load() == t {
				for _, s := range ok {
					r.synced[s].Store(true)
				}
			}
			r.syncMu.Unlock()
		}
		if pending > 0 {
			if left := r.Unsynced(); left == 0 {
				r.log.Info("backup slots in sync", "slots", pending, "took", time.Since(start).Round(time.Millisecond), "epoch", t.Epoch())
				lastPending = 0
			}
		}
	}
}

package replication

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
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

// Resyncing reports whether this node started without its data and has
// not resynced every slot yet.
func (r *Replicator) Resyncing() bool { return r.lost.Load() }

// valid reports whether this node's copy of slot counts as a replica
// that has the writes it acknowledged: always, unless the node lost its
// data and has not resynced the slot since.
func (r *Replicator) valid(slot uint16) bool {
	return !r.lost.Load() || r.synced[slot].Load()
}

// slotState is what this node tells a peer about its copy of slot.
func (r *Replicator) slotState(t *ring.Table, slot uint16) byte {
	var st byte
	if t != nil {
		if t.Primary(slot) == r.cfg.Self {
			if r.ready[slot].Load() {
				st |= wire.SlotComplete
			}
		} else if r.synced[slot].Load() && slices.Contains(t.Replicas(slot), r.cfg.Self) {
			st |= wire.SlotComplete
		}
	}
	if !r.valid(slot) {
		st |= wire.SlotLost
	}
	return st
}

// markerName is the file, in Config.Dir, that says this node lost its
// data and has not resynced yet; it survives a restart in between.
const markerName = "resync-pending"

// initLost decides whether this node starts having lost its data: its
// store is fresh (a new node, or one whose disk was wiped), or an
// earlier start had and did not finish resyncing.
func (r *Replicator) initLost() error {
	lost := r.store.Fresh()
	if r.cfg.Dir == "" {
		r.lost.Store(lost)
		return nil
	}
	path := filepath.Join(r.cfg.Dir, markerName)
	if _, err := os.Stat(path); err == nil {
		lost = true
	}
	if lost {
		if err := os.WriteFile(path, []byte("this node started without its data; it resyncs from its peers before it counts as a replica\n"), 0o644); err != nil {
			return fmt.Errorf("replication: writing %s: %w", path, err)
		}
		r.log.Info("started without earlier data: not counted as a replica of a slot until it is resynced")
	}
	r.lost.Store(lost)
	return nil
}

// foundAgain ends the lost state once every slot is in sync.
func (r *Replicator) foundAgain() {
	if r.cfg.Dir != "" {
		if err := os.Remove(filepath.Join(r.cfg.Dir, markerName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("cannot remove the resync marker; will try again", "err", err)
			return
		}
	}
	r.lost.Store(false)
	r.log.Info("resynced every slot: counted as a full replica")
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
		if t == nil || !r.inContact() {
			continue
		}
		r.tellMissed()
		r.dropUnheld(time.Now())
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
			ok, _ := r.syncFrom(src, bySource[src], "catch-up", &r.Repaired)
			r.syncMu.Lock()
			if r.table.Load() == t {
				for s, st := range ok {
					// Only a primary that serves the slot has every
					// acknowledged write; one still taking over is asked
					// again next round.
					if st&wire.SlotComplete != 0 {
						r.synced[s].Store(true)
					}
				}
			}
			r.syncMu.Unlock()
		}
		if r.lost.Load() {
			if ok, _ := r.Ready(); ok {
				r.foundAgain()
			}
		}
		if pending > 0 {
			if left := r.Unsynced(); left == 0 {
				r.log.Info("backup slots in sync", "slots", pending, "took", time.Since(start).Round(time.Millisecond), "epoch", t.Epoch())
				lastPending = 0
			}
		}
	}
}

// dropUnheld deletes this node's copies of slots it has not been a
// replica of for DropAfter, in the tables it applied, while in contact.
// The check is repeated under syncMu, which table changes take: a slot a
// new table gives back is never dropped after that table is visible, so
// a takeover or catch-up for it only ever adds to an emptied copy.
func (r *Replicator) dropUnheld(now time.Time) {
	if r.cfg.DropAfter < 0 {
		return
	}
	var due []uint16
	for s := range ring.Slots {
		slot := uint16(s)
		if r.Holds(slot) || r.store.SlotEntries(slot) == 0 {
			r.unheld[s] = time.Time{}
			continue
		}
		switch {
		case r.unheld[s].IsZero():
			r.unheld[s] = now
		case now.Sub(r.unheld[s]) >= r.cfg.DropAfter && r.handedOver[s].Load() == 0:
			due = append(due, slot)
		}
	}
	if len(due) == 0 {
		return
	}
	r.syncMu.Lock()
	due = slices.DeleteFunc(due, r.Holds)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := r.store.DropSlots(ctx, due)
	cancel()
	r.syncMu.Unlock()
	if err != nil {
		r.log.Warn("dropping copies of slots this node no longer replicates", "slots", len(due), "err", err)
		return
	}
	for _, s := range due {
		r.unheld[s] = time.Time{}
	}
	r.DroppedSlots.Add(int64(len(due)))
	r.log.Info("dropped copies of slots this node no longer replicates", "slots", len(due), "after", r.cfg.DropAfter)
}

// WaitCopies waits until, for every given slot, each replica table t
// names (other than this node) reports a complete copy: the primary
// serves the slot, the backups are in sync with it. A node leaving the
// cluster for good calls it with the table that no longer names it, so
// that it goes only once its slots have their full replica count
// elsewhere. progress, if not nil, gets the number of slots still short
// after each round.
func (r *Replicator) WaitCopies(ctx context.Context, t *ring.Table, slots []uint16, progress func(left int)) error {
	for {
		bySource := make(map[ring.NodeID][]uint16)
		for _, s := range slots {
			for _, id := range t.Replicas(s) {
				if id != r.cfg.Self {
					bySource[id] = append(bySource[id], s)
				}
			}
		}
		short := make(map[uint16]bool)
		for id, ss := range bySource {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			rep, err := r.peer(id).call(cctx, &wire.Msg{Kind: wire.KindDigest, Slots: ss})
			cancel()
			for i, s := range ss {
				if err != nil || i >= len(rep.States) || rep.States[i]&wire.SlotComplete == 0 {
					short[s] = true
				}
			}
		}
		if progress != nil {
			progress(len(short))
		}
		if len(short) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d slots still short of copies: %w", len(short), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

package replication

import (
	"context"
	"slices"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
	"github.com/stashcluster/stash/tag"
)

// defaultRecoverWindow is how long after applying a slot table a primary
// that has no record of a stash asks the node its tag names (see
// KV.Recover).
const recoverWindow = 2 * time.Minute

// defaultRecoverAsk bounds each question to a hinted node: a miss costs
// a client at most this much more.
const defaultRecoverAsk = 250 * time.Millisecond

// Recover is called by a primary that has no live stash under key, for a
// stash whose tag names hint as the node that minted it. While a slot
// table change is recent (recoverWindow), and only when this node holds
// no record of the key at all (no expired stash, no tombstone: either
// would make the miss authoritative), it asks the current members whose
// hint matches for their copy. A live copy is adopted: stored here
// through the normal write path, so it reaches W copies before anything
// is answered from it, and the caller reads it again. It reports whether
// it adopted one. A copy that never reached W copies can only exist
// where a write's quorum was not required (Async, W=1) or was lost with
// a majority of its replicas; the hint is the last place to look.
func (kv *KV) Recover(ctx context.Context, slot uint16, key string, hint uint32) (bool, error) {
	r := kv.r
	t := r.table.Load()
	// Only a primary adopts; a replica read (READONLY, or a fallback
	// read for a primary still taking over) answers from its copy.
	if hint == 0 || t == nil || slot >= ring.Slots || !r.Serving(slot) || time.Since(time.Unix(0, r.tableAt.Load())) > recoverWindow {
		return false, nil
	}
	if _, held := r.store.Lookup(slot, key); held {
		return false, nil
	}
	var best *wire.Entry
	var from ring.NodeID
	for _, id := range hinted(t, r.prevTable.Load(), hint, r.cfg.Self) {
		e, err := r.lookupAt(ctx, id, slot, key)
		if err != nil {
			r.log.Debug("asking a tag's node for a stash this primary lacks", "node", id, "slot", slot, "err", err)
			continue
		}
		if e == nil {
			continue
		}
		if e.Deleted {
			return false, nil // deleted there: nothing to bring back
		}
		if best == nil || (storage.Version{Epoch: best.Epoch, Seq: best.Seq}).Less(storage.Version{Epoch: e.Epoch, Seq: e.Seq}) {
			best, from = e, id
		}
	}
	if best == nil || (best.ExpireAt != 0 && best.ExpireAt <= time.Now().UnixMilli()) {
		return false, nil
	}
	st := fromEntry(*best)
	st.Version = storage.Version{} // a new version under this primary
	op, err := kv.Update(ctx, slot, key, func(_ storage.Stash, ok bool) (storage.Stash, storage.Op) {
		if ok {
			return storage.Stash{}, storage.OpKeep // written meanwhile: that wins
		}
		return st, storage.OpPut
	})
	if err != nil {
		return false, err
	}
	if op == storage.OpPut {
		r.Recovered.Add(1)
		r.log.Info("recovered a stash from the node its tag names", "slot", slot, "from", from, "epoch", t.Epoch())
	}
	return true, nil
}

// hinted lists the members of t and prev, other than self, whose hint is
// hint (hints can collide: all of them).
func hinted(t, prev *ring.Table, hint uint32, self ring.NodeID) []ring.NodeID {
	var out []ring.NodeID
	add := func(tb *ring.Table) {
		if tb == nil {
			return
		}
		for _, id := range tb.Members() {
			if id != self && tag.HintFor(string(id)) == hint && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	add(t)
	add(prev)
	return out
}

// lookupAt asks node id what it holds for key in slot: nil when nothing.
func (r *Replicator) lookupAt(ctx context.Context, id ring.NodeID, slot uint16, key string) (*wire.Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, r.recoverAsk)
	defer cancel()
	rep, err := r.peer(id).call(ctx, &wire.Msg{Kind: wire.KindLookup, Slot: slot, Args: [][]byte{[]byte(key)}})
	if err != nil {
		return nil, err
	}
	if rep.Err != "" {
		return nil, errString(rep.Err)
	}
	if len(rep.Entries) == 0 {
		return nil, nil
	}
	return &rep.Entries[0], nil
}

// handleLookup answers lookupAt from this node's store.
func (r *Replicator) handleLookup(m *wire.Msg) *wire.Msg {
	rep := &wire.Msg{Kind: wire.KindEntries, ID: m.ID, Last: true}
	if m.Slot >= ring.Slots || len(m.Args) != 1 {
		rep.Err = "ERR malformed lookup"
		return rep
	}
	if st, ok := r.store.Lookup(m.Slot, string(m.Args[0])); ok {
		rep.Entries = []wire.Entry{toEntry(st)}
	}
	return rep
}

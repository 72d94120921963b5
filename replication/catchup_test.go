package replication

import (
	"context"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

// TestBackupCatchesUpAfterPartition: writes acknowledged by A and B
// while C was cut off reach C once the partition heals, through C's
// catch-up, without any new write to those keys.
func TestBackupCatchesUpAfterPartition(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{AntiEntropy: -1})
	a, c := tn.node("A"), tn.node("C")
	ctx := context.Background()
	keys := keysWith(t, tb, "cu", 30, primaryIs("A"))
	c.partition()
	for i, k := range keys {
		if err := a.set(ctx, k, "v"+strconv.Itoa(i)); err != nil {
			t.Fatalf("set %s with C partitioned: %v", k, err)
		}
	}
	// Copies to C were sent on goroutines of their own; one that runs
	// only after the heal would deliver its copy directly, and C would
	// not have to repair it.
	waitFor(t, 5*time.Second, "A's copies to C to give up", func() bool { return a.rep.copying.Load() == 0 })
	if _, ok := c.lookup(keys[0]); ok {
		t.Fatal("C holds a key written while it was partitioned: the harness did not partition it")
	}
	c.heal() // A tells C which slots it missed once it can reach it
	waitFor(t, 10*time.Second, "C to catch up", func() bool {
		for _, k := range keys {
			want, _ := a.lookup(k)
			got, ok := c.lookup(k)
			if !ok || got != want {
				return false
			}
		}
		return true
	})
	c.waitReady(t)
	if n := c.rep.Repaired.Load(); n < int64(len(keys)) {
		t.Fatalf("C repaired %d entries, want >= %d", n, len(keys))
	}
}

// TestAntiEntropyRepairsSilentLoss: a change the primary made without
// sending a copy (as if the copy was lost without the stream breaking)
// reaches the backups by anti-entropy, and a delete the same way.
func TestAntiEntropyRepairsSilentLoss(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{AntiEntropy: 200 * time.Millisecond})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	ctx := context.Background()
	keys := keysWith(t, tb, "ae", 10, primaryIs("A"))
	gone := keys[len(keys)-1]
	if err := a.set(ctx, gone, "soon deleted"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, gone+" on every replica", func() bool {
		_, okB := b.lookup(gone)
		_, okC := c.lookup(gone)
		return okB && okC
	})
	// Straight into A's store: no copy is sent.
	for i, k := range keys[:len(keys)-1] {
		_, _, err := a.store.Change(ctx, ring.Slot(k), k, func(storage.Stash, bool) (storage.Stash, storage.Op) {
			return storage.Stash{Kind: storage.KindString, Value: "silent" + strconv.Itoa(i)}, storage.OpPut
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.store.Change(ctx, ring.Slot(gone), gone, func(storage.Stash, bool) (storage.Stash, storage.Op) {
		return storage.Stash{}, storage.OpDelete
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.lookup(keys[0]); ok {
		t.Fatal("B holds a key A changed without replicating it")
	}
	for _, n := range []*testNode{b, c} {
		waitFor(t, 10*time.Second, string(n.id)+" to be repaired by anti-entropy", func() bool {
			for _, k := range keys {
				want, _ := a.lookup(k)
				got, ok := n.lookup(k)
				if !ok || got.Version != want.Version || got.Value != want.Value || got.Deleted != want.Deleted {
					return false
				}
			}
			return true
		})
		if n.rep.Repaired.Load() < int64(len(keys)) {
			t.Fatalf("%s counted %d repaired entries, want >= %d", n.id, n.rep.Repaired.Load(), len(keys))
		}
	}
}

// TestNewReplicaIsFilled: when a table gives a slot a replica it did not
// have (re-replication after a node left), the new replica copies the
// slot's data from the primary and is Ready only once it has.
func TestNewReplicaIsFilled(t *testing.T) {
	t.Parallel()
	tn, _ := newCluster(t, harnessConfig{Nodes: []ring.NodeID{"A", "B", "C", "D"}, NoWait: true})
	// Start with D out of the table: three nodes hold everything.
	t1, err := ring.Build([]ring.Member{{ID: "A"}, {ID: "B"}, {ID: "C"}}, 3, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tn.all() {
		n.setTable(t1)
	}
	for _, n := range tn.all() {
		n.waitTable(t, 2)
	}
	for _, n := range tn.all() {
		if !waitUntil(10*time.Second, func() bool { ok, _ := n.rep.Ready(); return ok }) {
			for _, m := range tn.all() {
				ok, why := m.rep.Ready()
				t.Logf("%s ready=%v (%s) resyncing=%v", m.id, ok, why, m.rep.Resyncing())
			}
			t.FailNow()
		}
	}
	a := tn.node("A")
	ctx := context.Background()
	keys := keysWith(t, t1, "nr", 200, func([]ring.NodeID) bool { return true })
	for i, k := range keys {
		p := tn.node(t1.Primary(ring.Slot(k)))
		if err := p.set(ctx, k, "v"+strconv.Itoa(i)); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	// C leaves; D takes its places.
	t2, err := ring.Build([]ring.Member{{ID: "A"}, {ID: "B"}, {ID: "D"}}, 3, 3, t1)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tn.all() {
		n.setTable(t2)
	}
	d := tn.node("D")
	d.waitTable(t, 3)
	// C, leaving, waits until its slots have their copies elsewhere; by
	// then D holds them.
	var cSlots []uint16
	for s := range ring.Slots {
		if containsID(t1.Replicas(uint16(s)), "C") {
			cSlots = append(cSlots, uint16(s))
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := tn.node("C").rep.WaitCopies(wctx, t2, cSlots, nil); err != nil {
		t.Fatalf("WaitCopies: %v", err)
	}
	for _, k := range keys {
		if containsID(t2.Replicas(ring.Slot(k)), "D") {
			if _, ok := d.lookup(k); !ok {
				t.Fatalf("WaitCopies returned before D held %s", k)
			}
		}
	}
	waitFor(t, 10*time.Second, "D to hold every key it replicates", func() bool {
		for _, k := range keys {
			if !containsID(t2.Replicas(ring.Slot(k)), "D") || t2.Primary(ring.Slot(k)) == "D" {
				continue
			}
			want, _ := tn.node(t2.Primary(ring.Slot(k))).lookup(k)
			got, ok := d.lookup(k)
			if !ok || got != want {
				return false
			}
		}
		return true
	})
	d.waitReady(t)
	_ = a
}

func containsID(ids []ring.NodeID, id ring.NodeID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// restartEmpty restarts n with an empty store, as a node whose disk was
// wiped comes back under the same name and address.
func (n *testNode) restartEmpty(t *testing.T) {
	t.Helper()
	n.rep.Close()
	n.cl.cut()
	n.store.Close()
	var ln net.Listener
	waitFor(t, 5*time.Second, "the old address to be free", func() bool {
		var err error
		ln, err = net.Listen("tcp", n.cl.addr)
		return err == nil
	})
	n.cl.ln = &testListener{Listener: ln, cl: n.cl}
	st, err := storage.Open(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := New(Config{Self: n.id, Cluster: n.cl, Store: st, Timeout: time.Second, CatchUpInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n.store, n.rep, n.kv = st, rep, rep.KV()
	t.Cleanup(func() {
		ln.Close()
		rep.Close()
		n.cl.cut()
		st.Close()
	})
	rep.Start(engine(rep))
}

// TestLostNodeDoesNotCountAsReplica: writes acknowledged by A and B
// only; B then loses its data and A is cut off. C, made primary, must
// not take B's empty copy for one of the two replicas it has to consult:
// it waits for A, and serves every write once A is back.
func TestLostNodeDoesNotCountAsReplica(t *testing.T) {
	t.Parallel()
	const lease = 100 * time.Millisecond
	tn, t1 := newCluster(t, harnessConfig{Lease: lease})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	for _, n := range tn.all() {
		waitFor(t, 5*time.Second, string(n.id)+" to count as a full replica", func() bool { return !n.rep.lost.Load() })
	}
	ctx := context.Background()
	keys := keysWith(t, t1, "lost", 20, primaryIs("A", "C", "B"))
	c.partition()
	for i, k := range keys {
		if err := a.set(ctx, k, "v"+strconv.Itoa(i)); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	// A goes away before C ever got the writes; B loses them.
	a.partition()
	a.cl.contact.Store(false)
	c.heal()
	b.restartEmpty(t)
	if !b.rep.lost.Load() {
		t.Fatal("B restarted with an empty store but does not consider its data lost")
	}
	t2 := t1.Demote(2, func(id ring.NodeID) bool { return id == "A" })
	b.setTable(t2)
	c.setTable(t2)
	slot := ring.Slot(keys[0])
	if got := t2.Primary(slot); got != "C" {
		t.Fatalf("primary of slot %d in t2 is %s, want C", slot, got)
	}
	c.waitTable(t, 2)
	time.Sleep(10 * lease)
	if c.rep.Serving(slot) {
		t.Fatalf("C serves slot %d having heard only from B, which lost its data (C holds %s: %v)",
			slot, keys[0], func() bool { _, ok := c.lookup(keys[0]); return ok }())
	}
	a.heal()
	waitFor(t, 10*time.Second, "C to serve after A is back", func() bool { return c.rep.Serving(slot) })
	for _, k := range keys {
		if _, ok := c.lookup(k); !ok {
			t.Fatalf("C serves without %s, acknowledged before B lost its data", k)
		}
	}
	waitFor(t, 10*time.Second, "B to resync and count again", func() bool { return !b.rep.lost.Load() })
}

// TestFreshSingleAndPairServe: a new cluster of one or two nodes, all
// starting without data, serves: with every replica lost there is
// nothing to wait for.
func TestFreshSingleAndPairServe(t *testing.T) {
	t.Parallel()
	for _, nodes := range [][]ring.NodeID{{"A"}, {"A", "B"}} {
		tn, _ := newCluster(t, harnessConfig{Nodes: nodes}) // waits for Ready
		for _, n := range tn.all() {
			waitFor(t, 5*time.Second, string(n.id)+" to count as a full replica", func() bool { return !n.rep.Resyncing() })
		}
	}
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// TestBackupPrunesWhatItsPrimaryForgot: keys deleted while a backup was
// away, whose tombstones were removed before it came back, are removed
// from the backup when it catches up. Fetching alone cannot do it (the
// primary sends nothing for them), and the backup would keep them for
// good, and serve them again if it ever became primary.
func TestBackupPrunesWhatItsPrimaryForgot(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{AntiEntropy: -1, TombstoneTTL: 200 * time.Millisecond})
	a, c := tn.node("A"), tn.node("C")
	ctx := context.Background()
	keys := keysWith(t, tb, "pr", 6, primaryIs("A"))
	for _, k := range keys {
		if err := a.set(ctx, k, "v-"+k); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "every key on C", func() bool {
		for _, k := range keys {
			if _, ok := c.lookup(k); !ok {
				return false
			}
		}
		return true
	})
	c.partition()
	deleted, kept := keys[:3], keys[3:]
	for _, k := range deleted {
		if _, err := a.del(ctx, k); err != nil {
			t.Fatalf("del %s with C partitioned: %v", k, err)
		}
	}
	waitFor(t, 5*time.Second, "A's copies to C to give up", func() bool { return a.rep.copying.Load() == 0 })
	waitFor(t, 10*time.Second, "the tombstones to be removed on A and B", func() bool {
		for _, n := range []*testNode{a, tn.node("B")} {
			for _, k := range deleted {
				if _, ok := n.lookup(k); ok {
					return false
				}
			}
		}
		return true
	})
	if st, ok := c.lookup(deleted[0]); !ok || st.Deleted {
		t.Fatalf("C has %+v (%v) for a key deleted while it was partitioned: the harness did not partition it", st, ok)
	}
	c.heal()
	waitFor(t, 10*time.Second, "C to drop the keys deleted while it was away", func() bool {
		for _, k := range deleted {
			if _, ok := c.lookup(k); ok {
				return false
			}
		}
		return true
	})
	for _, k := range kept {
		if st, ok := c.lookup(k); !ok || st.Value != "v-"+k {
			t.Fatalf("C lost %s, which was never deleted: %+v, %v", k, st, ok)
		}
	}
	if n := c.rep.Pruned.Load(); n != int64(len(deleted)) {
		t.Fatalf("C pruned %d entries, want %d", n, len(deleted))
	}
	c.waitReady(t)
	for s := range ring.Slots {
		if d, e := a.store.Digest(uint16(s)), c.store.Digest(uint16(s)); d != e {
			t.Fatalf("slot %d: digests differ after catch-up (A %x, C %x)", s, d, e)
		}
	}
}

// TestDropsCopiesOfSlotsItNoLongerHolds: data a node holds for a slot it
// is not a replica of (left from an older table) is deleted DropAfter
// later; copies of the slots it replicates are kept.
func TestDropsCopiesOfSlotsItNoLongerHolds(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{Nodes: []ring.NodeID{"A", "B", "C", "D"}, AntiEntropy: -1, DropAfter: 300 * time.Millisecond})
	c := tn.node("C")
	ctx := context.Background()
	notC := func(reps []ring.NodeID) bool { return !slices.Contains(reps, "C") }
	withC := func(reps []ring.NodeID) bool { return slices.Contains(reps, "C") }
	stale := keysWith(t, tb, "stale", 3, notC)
	held := keysWith(t, tb, "held", 3, withC)
	for _, k := range held {
		if err := tn.node(tb.Primary(ring.Slot(k))).set(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	// As if left from a table in which C held these slots.
	for _, k := range stale {
		if _, _, err := c.store.Change(ctx, ring.Slot(k), k, func(storage.Stash, bool) (storage.Stash, storage.Op) {
			return storage.Stash{Kind: storage.KindString, Value: "old"}, storage.OpPut
		}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "C to drop the slots it does not replicate", func() bool {
		for _, k := range stale {
			if c.store.SlotEntries(ring.Slot(k)) != 0 {
				return false
			}
		}
		return true
	})
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("dropped after %v, before DropAfter", d)
	}
	for _, k := range held {
		if _, ok := c.lookup(k); !ok {
			t.Fatalf("C dropped %s, of a slot it replicates", k)
		}
	}
	slots := map[uint16]bool{}
	for _, k := range stale {
		slots[ring.Slot(k)] = true
	}
	if n := c.rep.DroppedSlots.Load(); n != int64(len(slots)) {
		t.Fatalf("DroppedSlots = %d, want %d", n, len(slots))
	}
}

// TestGainedPrimaryStartsFromItsPeersCopies: a node made primary of a
// slot it was not a replica of empties what it held of the slot from an
// older table before taking it over, so a key deleted since (tombstone
// gone) does not come back through it; acknowledged writes arrive from
// the previous replicas.
func TestGainedPrimaryStartsFromItsPeersCopies(t *testing.T) {
	t.Parallel()
	tn, t1 := newCluster(t, harnessConfig{Nodes: []ring.NodeID{"A", "B", "C", "D"}, AntiEntropy: -1})
	c := tn.node("C")
	ctx := context.Background()
	t2, err := ring.Build([]ring.Member{{ID: "A"}, {ID: "B"}, {ID: "C"}}, 3, t1.Epoch()+1, t1)
	if err != nil {
		t.Fatal(err)
	}
	gained := func(reps []ring.NodeID) bool { return !slices.Contains(reps, "C") }
	var stale, fresh string
	for _, k := range keysWith(t, t1, "gp", 200, gained) {
		if t2.Primary(ring.Slot(k)) == "C" {
			stale = k
			break
		}
	}
	if stale == "" {
		t.Fatal("no key whose slot C gains as primary")
	}
	slot := ring.Slot(stale)
	for i := 0; fresh == ""; i++ {
		if k := "gp-fresh-" + strconv.Itoa(i); ring.Slot(k) == slot {
			fresh = k
		}
	}
	// Left on C from a table in which it replicated the slot; deleted
	// since, tombstone gone everywhere.
	if _, _, err := c.store.Change(ctx, slot, stale, func(storage.Stash, bool) (storage.Stash, storage.Op) {
		return storage.Stash{Kind: storage.KindString, Value: "deleted long ago"}, storage.OpPut
	}); err != nil {
		t.Fatal(err)
	}
	if err := tn.node(t1.Primary(slot)).set(ctx, fresh, "acknowledged"); err != nil {
		t.Fatal(err)
	}
	for _, n := range tn.all() {
		n.setTable(t2)
	}
	waitFor(t, 10*time.Second, "C to serve the slot it gained", func() bool { return c.rep.Serving(slot) })
	if st, ok := c.lookup(stale); ok {
		t.Fatalf("C, now primary, still holds %s: %+v", stale, st)
	}
	if st, ok := c.lookup(fresh); !ok || st.Value != "acknowledged" {
		t.Fatalf("C, now primary, lacks the acknowledged %s: %+v, %v", fresh, st, ok)
	}
}

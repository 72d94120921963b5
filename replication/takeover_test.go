package replication

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
)

// Regression tests for takeover defects found with the harness (both
// failed against the first version of follow.go).

// TestTakeoverAfterShrink: when a node leaves and the table shrinks a
// slot's replica set from 3 to 2, the new primary C must still reconcile
// with B: writes were acknowledged by W = 2 of the old set {A, B, C}, so
// {A, B} may hold one C lacks. (The first follow.go computed need from
// the new set, 2 − W(2) = 0, and served at once without them.)
func TestTakeoverAfterShrink(t *testing.T) {
	t.Parallel()
	tn, t1 := newCluster(t, harnessConfig{})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	t2, err := ring.Build([]ring.Member{{ID: "B"}, {ID: "C"}}, 3, 2, t1)
	if err != nil {
		t.Fatal(err)
	}
	var k string
	for _, key := range keysWith(t, t1, "sh", 200, primaryIs("A")) {
		if t2.Primary(ring.Slot(key)) == "C" {
			k = key
			break
		}
	}
	if k == "" {
		t.Fatal("no key moving from A to C")
	}
	c.partition()
	if err := a.set(context.Background(), k, "acked by A and B"); err != nil {
		t.Fatalf("set with C partitioned: %v", err)
	}
	a.partition()
	a.cl.contact.Store(false)
	c.heal()
	b.setTable(t2)
	c.setTable(t2)
	slot := ring.Slot(k)
	waitFor(t, 5*time.Second, "C to serve the slot", func() bool { return c.rep.Serving(slot) })
	if _, ok := c.kv.Get(slot, k); !ok {
		want, _ := b.lookup(k)
		t.Fatalf("C serves slot %d (replicas now %v) without the acknowledged write %+v that B holds", slot, t2.Replicas(slot), want)
	}
}

// TestTakeoverAfterUnseenEpoch: a node primary at epoch 1, cut off while
// epoch 2 made another node primary (which took writes), that next sees
// epoch 3 making it primary again must take the slot over anew (lease
// wait, reconciliation), not serve on its epoch-1 readiness. Tables can
// be skipped: Cluster.Table returns only the latest. (The first
// follow.go kept the ready flag and missed the writes; see also
// TestTakeoverBackAfterLosingSlot, where the node sees epoch 2.)
func TestTakeoverAfterUnseenEpoch(t *testing.T) {
	t.Parallel()
	tn, t1 := newCluster(t, harnessConfig{})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	k := keysWith(t, t1, "ue", 1, primaryIs("C", "A", "B"))[0]
	slot := ring.Slot(k)
	if !c.rep.Serving(slot) {
		t.Fatal("C does not serve its slot at epoch 1")
	}

	// Epoch 2, which C never sees: A is primary and takes a write.
	c.partition()
	c.cl.contact.Store(false)
	t2 := t1.Demote(2, func(id ring.NodeID) bool { return id == "C" })
	a.setTable(t2)
	b.setTable(t2)
	waitFor(t, 5*time.Second, "A to serve at epoch 2", func() bool { return a.rep.Serving(slot) })
	if err := a.set(context.Background(), k, "written at epoch 2"); err != nil {
		t.Fatalf("set on A at epoch 2: %v", err)
	}

	// Epoch 3 gives the slot back to C.
	t3 := t1.Demote(3, func(ring.NodeID) bool { return false })
	a.setTable(t3)
	b.setTable(t3)
	c.heal()
	c.setTable(t3)
	c.cl.contact.Store(true)
	c.waitTable(t, 3)
	waitFor(t, 5*time.Second, "C to serve at epoch 3", func() bool { return c.rep.Serving(slot) })
	if _, ok := c.kv.Get(slot, k); !ok {
		t.Fatalf("C serves slot %d at epoch 3 without the write A acknowledged at epoch 2 (Reconciled = %d)", slot, c.rep.Reconciled.Load())
	}
}

// TestReadOfInDoubtWrite: after a write misses its quorum, a read through
// the read gate (KV.Settled, as the RESP server does) answers TRYAGAIN
// instead of the value in doubt, which a failover could undo (doc.go: a
// value is never returned before it is acknowledged-durable on W nodes);
// once the retry put it on W copies the read returns it.
func TestReadOfInDoubtWrite(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	tn, tb := newCluster(t, harnessConfig{Timeout: timeout})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	k := keysWith(t, tb, "ug", 1, primaryIs("A"))[0]
	slot := ring.Slot(k)
	ctx := context.Background()
	get := func() string { return string(engine(a.rep)(ctx, 2, [][]byte{[]byte("GET"), []byte(k)})) }
	// The short timeout can fail the first write, which dials the
	// backups, on a busy machine.
	waitFor(t, 10*time.Second, "a first write to be acknowledged", func() bool { return a.set(ctx, k, "acked") == nil })
	b.partition()
	c.partition()
	if err := a.set(ctx, k, "unacked"); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("set: %v, want ErrNoQuorum", err)
	}
	if err := a.kv.Settled(slot, k); !errors.Is(err, ErrInDoubt) {
		t.Fatalf("Settled of a key whose write missed its quorum: %v, want ErrInDoubt", err)
	}
	if got := get(); !strings.HasPrefix(got, "-TRYAGAIN ") {
		t.Fatalf("GET of a key whose write is on 1 copy (W = 2): %q, want -TRYAGAIN", got)
	}
	b.heal()
	c.heal()
	waitFor(t, 5*time.Second, "the in-doubt write to settle", func() bool {
		return get() == "$7\r\nunacked\r\n"
	})
}

// TestHandoverSkipsLeaseWait: when the old primary has applied the table
// that moved its slot (a drain hands primaries over this way), the new
// primary serves without waiting out the old one's lease; when the old
// primary has not (it may still acknowledge), the new one waits.
func TestHandoverSkipsLeaseWait(t *testing.T) {
	t.Parallel()
	const lease = 3 * time.Second
	tn, t1 := newCluster(t, harnessConfig{Lease: lease})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	keys := keysWith(t, t1, "ho", 5, primaryIs("A", "C", "B"))
	slot := ring.Slot(keys[0])
	ctx := context.Background()
	for _, k := range keys {
		if err := a.set(ctx, k, "before "+k); err != nil {
			t.Fatal(err)
		}
	}
	// Handed over: A applies t2 first.
	t2 := t1.Demote(2, func(id ring.NodeID) bool { return id == "A" })
	a.setTable(t2)
	a.waitTable(t, 2)
	start := time.Now()
	b.setTable(t2)
	c.setTable(t2)
	waitFor(t, 2*lease, "C to serve the handed-over slot", func() bool { return c.rep.Serving(slot) })
	if took := time.Since(start); took >= lease {
		t.Fatalf("C served %v after the handover, not before A's lease (%v) ran out", took, lease)
	}
	for _, k := range keys {
		if st, ok := c.lookup(k); !ok || st.Value != "before "+k {
			t.Fatalf("C serves %s as %+v, %v", k, st, ok)
		}
	}
	// Not handed over: C, cut off, never applies t3 and might still be
	// acknowledging; the slot's new primary waits out C's lease.
	t3 := t2.Demote(3, func(id ring.NodeID) bool { return id == "C" })
	if t3.Primary(slot) == "C" {
		t.Fatalf("t3 keeps C primary of slot %d", slot)
	}
	newP := tn.node(t3.Primary(slot))
	c.partition() // C never sees t3 and may still think it serves
	start = time.Now()
	for _, n := range []*testNode{a, b} {
		n.setTable(t3)
	}
	waitFor(t, 3*lease, string(newP.id)+" to serve after C's lease", func() bool { return newP.rep.Serving(slot) })
	if took := time.Since(start); took < lease-200*time.Millisecond {
		t.Fatalf("%s served %v after the table change, before C's lease (%v) could have run out", newP.id, took, lease)
	}
}

// TestNoServingOnStaleReadinessAfterContactReturns: a primary cut off
// from the cluster and back must not serve its slots on the readiness it
// had before, even for the moment between the first heartbeat and the
// newer tables arriving (a jepsen partition run read a lost value from
// such a node).
func TestNoServingOnStaleReadinessAfterContactReturns(t *testing.T) {
	t.Parallel()
	const lease = 400 * time.Millisecond
	tn, t1 := newCluster(t, harnessConfig{Lease: lease})
	a := tn.node("A")
	slot := ring.Slot(keysWith(t, t1, "sr", 1, primaryIs("A"))[0])
	if !a.rep.Serving(slot) {
		t.Fatal("A does not serve its slot")
	}
	a.cl.contact.Store(false)
	time.Sleep(300 * time.Millisecond) // nobody asks A anything meanwhile
	a.cl.contact.Store(true)           // the heartbeat is back; A's table is still t1
	deadline := time.Now().Add(lease / 2)
	for time.Now().Before(deadline) {
		if a.rep.Serving(slot) {
			t.Fatal("A serves its slot on readiness from before it lost contact")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNoTakeoverOnATableBehindPeers: back in contact, a node whose
// control plane has not caught up yet (heartbeats arrive before the
// entries it missed) must not take its old slots over again on the old
// table when the peers it consults act on a newer one.
func TestNoTakeoverOnATableBehindPeers(t *testing.T) {
	t.Parallel()
	tn, t1 := newCluster(t, harnessConfig{Lease: 100 * time.Millisecond})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	slot := ring.Slot(keysWith(t, t1, "tb", 1, primaryIs("A"))[0])
	a.cl.contact.Store(false)
	time.Sleep(300 * time.Millisecond)
	t2 := t1.Demote(2, func(id ring.NodeID) bool { return id == "A" })
	b.setTable(t2)
	c.setTable(t2)
	b.waitTable(t, 2)
	c.waitTable(t, 2)
	a.cl.contact.Store(true) // A's control plane still holds t1
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if a.rep.Serving(slot) {
			t.Fatal("A serves its old slot on table 1 while its peers act on table 2")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestFallbackReadDuringTakeover: while the new primary of a slot takes
// it over, reads arriving there run at the previous primary (which still
// serves the slot, or handed it over in exactly that table) instead of
// answering TRYAGAIN; writes still get TRYAGAIN. Once the new primary
// has sent a copy of a write, the old one refuses fallback reads: its
// copy is no longer the slot's whole state.
func TestFallbackReadDuringTakeover(t *testing.T) {
	t.Parallel()
	tn, t1 := newCluster(t, harnessConfig{Lease: 5 * time.Second})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	k := keysWith(t, t1, "fb", 1, primaryIs("A", "C", "B"))[0]
	slot := ring.Slot(k)
	ctx := context.Background()
	get := [][]byte{[]byte("GET"), []byte(k)}
	if err := a.set(ctx, k, "v1"); err != nil {
		t.Fatal(err)
	}

	// Epoch 2 makes C primary. A has not applied it, so C must wait out
	// A's lease before it serves.
	t2 := t1.Demote(2, func(id ring.NodeID) bool { return id == "A" })
	if t2.Primary(slot) != "C" {
		t.Fatalf("epoch 2 gives slot %d to %s, want C", slot, t2.Primary(slot))
	}
	b.setTable(t2)
	c.setTable(t2)
	c.waitTable(t, 2)
	if c.rep.Serving(slot) {
		t.Fatal("C serves at once although A's lease has not run out")
	}
	if d := c.rep.Route(slot, true, false); !strings.HasPrefix(d.Err, "TRYAGAIN ") {
		t.Fatalf("write on C while taking over: %+v, want TRYAGAIN", d)
	}
	if d := c.rep.Route(slot, false, false); !d.Fallback || d.Primary != "A" {
		t.Fatalf("read on C while taking over: %+v, want a fallback to A", d)
	}
	read := func(what string) {
		t.Helper()
		rep, err := c.rep.Forward(ctx, slot, 2, get)
		if err != nil || string(rep) != "$2\r\nv1\r\n" {
			t.Fatalf("fallback read %s: %q, %v", what, rep, err)
		}
	}
	read("while A still serves")

	// A applies epoch 2: it handed the slot over and still serves
	// fallback reads of it (C's lease wait is not over yet).
	a.setTable(t2)
	a.waitTable(t, 2)
	if c.rep.Serving(slot) {
		t.Fatal("C serves before its lease wait ended")
	}
	read("after A handed the slot over")
	if n := a.rep.FallbackReads.Load(); n != 2 {
		t.Fatalf("A ran %d fallback reads, want 2", n)
	}
	fallback := func(from string) string {
		m := &wire.Msg{Kind: wire.KindForward, ID: 1, From: from, Slot: slot, Epoch: 2, Args: get, Fallback: true}
		return string(a.rep.handleForward(ctx, m, &carries{}).Reply)
	}
	if got := fallback("B"); !strings.HasPrefix(got, "-TRYAGAIN ") {
		t.Fatalf("fallback read asked by B, which is not the slot's primary: %q", got)
	}

	waitFor(t, 10*time.Second, "C to serve the slot", func() bool { return c.rep.Serving(slot) })
	if d := c.rep.Route(slot, false, false); !d.Local {
		t.Fatalf("read on C once it serves: %+v, want local", d)
	}
	if err := c.set(ctx, k, "v2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A to get C's copy", func() bool { st, _ := a.lookup(k); return st.Value == "v2" })
	if got := fallback("C"); !strings.HasPrefix(got, "-TRYAGAIN ") {
		t.Fatalf("fallback read after C's first copy reached A: %q, want TRYAGAIN", got)
	}
}

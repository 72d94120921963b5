package replication

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

// copiesOf counts the replicas of key in tb whose store holds exactly
// want (same value, version and deletion).
func copiesOf(tn *testNet, tb *ring.Table, key string, want storage.Stash) (n int, who []ring.NodeID) {
	for _, id := range tb.Replicas(ring.Slot(key)) {
		st, ok := tn.node(id).lookup(key)
		if ok && st.Version == want.Version && st.Value == want.Value && st.Deleted == want.Deleted {
			n++
			who = append(who, id)
		}
	}
	return n, who
}

// TestWriteReachesQuorumBeforeReturn: once KV.Update returns nil on the
// primary, at least W replicas (default W = 2 of 3) hold the value at the
// primary's version, without waiting; with W = 3 every backup does.
func TestWriteReachesQuorumBeforeReturn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		w    int
		want int
	}{
		{"majority", 0, 2},
		{"all", 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn, tb := newCluster(t, harnessConfig{WriteQuorum: tc.w})
			a := tn.node("A")
			ctx := context.Background()
			for i, k := range keysWith(t, tb, "w", 30, primaryIs("A")) {
				v := "v" + strconv.Itoa(i)
				if err := a.set(ctx, k, v); err != nil {
					t.Fatalf("set %s: %v", k, err)
				}
				want, ok := a.lookup(k)
				if !ok || want.Value != v {
					t.Fatalf("primary holds %+v, %v after set", want, ok)
				}
				if n, who := copiesOf(tn, tb, k, want); n < tc.want {
					t.Fatalf("key %s: Update returned with %d copies (%v) of version %v; want >= %d", k, n, who, want.Version, tc.want)
				}
			}
		})
	}
}

// TestWriteWithOneBackupPartitioned: W = 2 of 3 still acknowledges with
// one backup cut off, and the reachable backup holds the write.
func TestWriteWithOneBackupPartitioned(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	c.partition()
	ctx := context.Background()
	for _, k := range keysWith(t, tb, "p", 10, primaryIs("A")) {
		if err := a.set(ctx, k, "x"); err != nil {
			t.Fatalf("set %s with one backup partitioned: %v", k, err)
		}
		want, _ := a.lookup(k)
		if st, ok := b.lookup(k); !ok || st != want {
			t.Fatalf("reachable backup B holds %+v, %v; want %+v", st, ok, want)
		}
		if st, ok := c.lookup(k); ok {
			t.Fatalf("partitioned backup C holds %+v: the harness did not partition it", st)
		}
	}
	if n := a.rep.NoQuorum.Load(); n != 0 {
		t.Fatalf("NoQuorum = %d, want 0", n)
	}
}

// TestLazyCopy: with W = 2 of 3, the primary sends the copy W needs at
// once and queues the other (see lazyFlush). The queued copy still
// reaches its backup with nothing else sent after it, and when the
// backup sent the first copy is slow, the queued copy completes the
// quorum instead of the write waiting for the slow one.
func TestLazyCopy(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{})
	a, b := tn.node("A"), tn.node("B")
	ctx := context.Background()
	// Replicas A, B, C in this order: B gets the first copy, C the lazy one.
	keys := keysWith(t, tb, "z", 10, primaryIs("A", "B", "C"))
	allCopies := func(k string) {
		t.Helper()
		want, _ := a.lookup(k)
		deadline := time.Now().Add(2 * time.Second)
		for {
			n, who := copiesOf(tn, tb, k, want)
			if n == 3 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("key %s: %d copies (%v) of %+v 2 s after the write; the queued copy never went", k, n, who, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, k := range keys[:5] {
		if err := a.set(ctx, k, "quiet"); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
		allCopies(k)
	}

	const slow = 700 * time.Millisecond // below the 1 s replication timeout
	b.slowDown(slow)
	for _, k := range keys[5:] {
		t0 := time.Now()
		if err := a.set(ctx, k, "b-slow"); err != nil {
			t.Fatalf("set %s with B slow: %v", k, err)
		}
		if d := time.Since(t0); d >= slow {
			t.Fatalf("set %s took %v with B answering after %v: it waited for B instead of C's queued copy", k, d, slow)
		}
		allCopies(k)
	}
	if n := a.rep.NoQuorum.Load(); n != 0 {
		t.Fatalf("NoQuorum = %d, want 0", n)
	}
}

// TestNoQuorum: with both backups unreachable a write fails with
// ErrNoQuorum, promptly when they refuse and after about Config.Timeout
// when they do not answer; the write is on the primary only; a concurrent
// read of the key does not return before the write's outcome is known.
func TestNoQuorum(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	for _, mode := range []string{"refused", "blackhole"} {
		t.Run(mode, func(t *testing.T) {
			tn, tb := newCluster(t, harnessConfig{Timeout: timeout})
			a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
			k := keysWith(t, tb, "nq", 1, primaryIs("A"))[0]
			ctx := context.Background()
			for _, n := range []*testNode{b, c} {
				if mode == "refused" {
					n.partition()
				} else {
					n.blackhole()
				}
			}

			start := time.Now()
			setDone := make(chan time.Time, 1)
			var setErr error
			go func() {
				setErr = a.set(ctx, k, "lost?")
				setDone <- time.Now()
			}()
			// Read as soon as the change is visible on the primary.
			waitFor(t, 2*time.Second, "the change on the primary", func() bool {
				_, ok := a.lookup(k)
				return ok
			})
			getStart := time.Now()
			getDone := make(chan time.Time, 1)
			var getReply []byte
			go func() {
				getReply = engine(a.rep)(ctx, 2, [][]byte{[]byte("GET"), []byte(k)})
				getDone <- time.Now()
			}()

			setAt := <-setDone
			if !errors.Is(setErr, ErrNoQuorum) {
				t.Fatalf("set with both backups unreachable: %v, want ErrNoQuorum", setErr)
			}
			var re *Error
			if !errors.As(setErr, &re) || re.Code != "NOQUORUM" {
				t.Fatalf("error %v is not a *Error with code NOQUORUM", setErr)
			}
			took := setAt.Sub(start)
			if took > timeout+time.Second {
				t.Fatalf("ErrNoQuorum after %v, want about Timeout %v", took, timeout)
			}
			if mode == "blackhole" && took < timeout*3/4 {
				t.Fatalf("ErrNoQuorum after %v with silent backups: it did not wait for Timeout %v", took, timeout)
			}
			// The read waits for the pending change, but only up to
			// Timeout from its own start, not for the outcome itself:
			// when the outcome takes the whole Timeout the two end
			// together, in either order. Either way it must not return
			// the value in doubt.
			getAt := <-getDone
			if getAt.Before(setAt.Add(-100 * time.Millisecond)) {
				t.Fatalf("GET returned %v before the write's outcome was known", setAt.Sub(getAt))
			}
			if w := getAt.Sub(getStart); w < timeout*3/4 {
				t.Fatalf("GET of a key whose write is in doubt returned after %v; want it to wait (Timeout %v)", w, timeout)
			}
			if !strings.HasPrefix(string(getReply), "-TRYAGAIN ") {
				t.Fatalf("GET of a key whose write is in doubt: %q, want -TRYAGAIN", getReply)
			}
			if n := a.rep.NoQuorum.Load(); n != 1 {
				t.Fatalf("NoQuorum counter = %d, want 1", n)
			}
			if _, ok := a.lookup(k); !ok {
				t.Fatal("the failed write is not on the primary (doc: it is)")
			}
			for _, n := range []*testNode{b, c} {
				if st, ok := n.lookup(k); ok {
					t.Fatalf("unreachable backup %s holds %+v", n.id, st)
				}
			}
		})
	}
}

// TestNoQuorumRetriedAfterHeal: a write that missed its quorum is offered
// to the backups again in the background, so once they are reachable W
// copies hold it and reads of the key stop waiting.
func TestNoQuorumRetriedAfterHeal(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	tn, tb := newCluster(t, harnessConfig{Timeout: timeout})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	k := keysWith(t, tb, "rt", 1, primaryIs("A"))[0]
	ctx := context.Background()
	b.partition()
	c.partition()
	if err := a.set(ctx, k, "later"); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("set: %v, want ErrNoQuorum", err)
	}
	b.heal()
	c.heal()
	want, _ := a.lookup(k)
	// Retry stops once W copies hold it: a backup healed a moment later
	// may be left out (no promise covers it; see doc.go, Limits).
	waitFor(t, 5*time.Second, "the retried write on W = 2 copies", func() bool {
		n, _ := copiesOf(tn, tb, k, want)
		return n >= 2
	})
	waitFor(t, 5*time.Second, "a read that does not wait", func() bool {
		t0 := time.Now()
		a.kv.Get(ring.Slot(k), k)
		return time.Since(t0) < timeout/3
	})
}

// TestLeaseLost: a primary out of contact with the cluster answers
// TRYAGAIN and refuses writes with ErrNotServing, applying nothing.
func TestLeaseLost(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{})
	a := tn.node("A")
	k := keysWith(t, tb, "l", 1, primaryIs("A"))[0]
	slot := ring.Slot(k)
	if d := a.rep.Route(slot, true, false); !d.Local {
		t.Fatalf("Route before losing contact: %+v, want Local", d)
	}
	a.cl.contact.Store(false)
	d := a.rep.Route(slot, true, false)
	if d.Local || !strings.HasPrefix(d.Err, "TRYAGAIN") {
		t.Fatalf("Route out of contact: %+v, want Err TRYAGAIN…", d)
	}
	if ok, why := a.rep.Ready(); ok {
		t.Fatal("Ready out of contact")
	} else if why == "" {
		t.Fatal("Ready gives no reason")
	}
	err := a.set(context.Background(), k, "v")
	if !errors.Is(err, ErrNotServing) {
		t.Fatalf("set out of contact: %v, want ErrNotServing", err)
	}
	for _, id := range tb.Replicas(slot) {
		if st, ok := tn.node(id).lookup(k); ok {
			t.Fatalf("%s holds %+v after a refused write", id, st)
		}
	}
	// Back in contact, A may take the slot over again (lease wait)
	// before it serves.
	a.cl.contact.Store(true)
	waitFor(t, 5*time.Second, "A to serve again", func() bool { return a.rep.Serving(slot) })
	if err := a.set(context.Background(), k, "v"); err != nil {
		t.Fatalf("set after regaining contact: %v", err)
	}
}

// TestUnseenLapseCutsOff: a lapse of contact that ended before anything
// asked InContact (a stopped node resumes, and the new leader's first
// heartbeat refreshes its contact before the tables it missed arrive)
// still cuts the primary off: it stops serving at once and serves again
// only after taking the slot over anew (lease wait).
func TestUnseenLapseCutsOff(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{})
	a := tn.node("A")
	k := keysWith(t, tb, "u", 1, primaryIs("A"))[0]
	slot := ring.Slot(k)
	waitFor(t, 5*time.Second, "A to serve", func() bool { return a.rep.Serving(slot) })
	a.cl.lapses.Add(1) // InContact stays true throughout
	lapsed := time.Now()
	if a.rep.Serving(slot) {
		t.Fatal("A serves right after a lapse of contact")
	}
	if d := a.rep.Route(slot, false, false); d.Local || !strings.HasPrefix(d.Err, "TRYAGAIN") {
		t.Fatalf("Route of a read right after a lapse: %+v, want Err TRYAGAIN…", d)
	}
	if err := a.set(context.Background(), k, "v"); !errors.Is(err, ErrNotServing) {
		t.Fatalf("set right after a lapse: %v, want ErrNotServing", err)
	}
	waitFor(t, 5*time.Second, "A to serve again", func() bool { return a.rep.Serving(slot) })
	if d := time.Since(lapsed); d < a.cl.lease {
		t.Fatalf("A served again %v after the lapse, before a lease (%v) had passed", d, a.cl.lease)
	}
	if err := a.set(context.Background(), k, "v"); err != nil {
		t.Fatalf("set after taking the slot over again: %v", err)
	}
}

// TestLeaseLostDuringWrite: a primary whose lease runs out while it waits
// for its backups does not acknowledge the write, even if the backups
// then answer: the new primary may already be serving.
func TestLeaseLostDuringWrite(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	k := keysWith(t, tb, "ld", 1, primaryIs("A"))[0]
	b.slowDown(300 * time.Millisecond)
	c.slowDown(300 * time.Millisecond)
	errc := make(chan error, 1)
	go func() { errc <- a.set(context.Background(), k, "late ack") }()
	waitFor(t, 2*time.Second, "the change on the primary", func() bool {
		_, ok := a.lookup(k)
		return ok
	})
	a.cl.contact.Store(false)
	if err := <-errc; !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("write whose acks came after the lease ran out: %v, want ErrNoQuorum", err)
	}
	want, _ := a.lookup(k)
	if n, _ := copiesOf(tn, tb, k, want); n < 2 {
		t.Fatalf("only %d copies: the backups never acknowledged, so the test proved nothing", n)
	}
}

// TestFencing: backups whose newer table no longer names the sender as
// primary refuse its copies, so a deposed primary that still believes it
// serves gets ErrNoQuorum and no copy of its write lands.
func TestFencing(t *testing.T) {
	t.Parallel()
	tn, t1 := newCluster(t, harnessConfig{Timeout: 300 * time.Millisecond})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	k := keysWith(t, t1, "f", 1, primaryIs("A"))[0]
	slot := ring.Slot(k)
	t2 := t1.Demote(2, func(id ring.NodeID) bool { return id == "A" })
	if t2.Primary(slot) == "A" {
		t.Fatalf("Demote left A primary of slot %d", slot)
	}
	// A has not seen t2 (and its lease is still good): it still serves.
	b.setTable(t2)
	c.setTable(t2)
	b.waitTable(t, 2)
	c.waitTable(t, 2)
	if !a.rep.Serving(slot) {
		t.Fatal("A stopped serving without seeing the new table")
	}
	err := a.set(context.Background(), k, "stale")
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("write by the deposed primary: %v, want ErrNoQuorum", err)
	}
	// The copy may reach a backup only after the write gave up (a first
	// copy waits for its stream to be dialed). The slot's new primary
	// may pull the write, which is in doubt, from A while it takes the
	// slot over; the other backup must never hold it.
	for _, n := range []*testNode{b, c} {
		waitFor(t, 5*time.Second, string(n.id)+" to refuse the deposed primary's copy", func() bool {
			return n.rep.Refused.Load() > 0
		})
		if st, ok := n.lookup(k); ok && n.id != t2.Primary(slot) {
			t.Fatalf("%s (epoch 2) holds %+v from the deposed primary", n.id, st)
		}
	}
}

// TestTakeover: when C becomes primary of slots A led (A demoted and
// gone), C answers TRYAGAIN until LeaseTimeout has passed, then, having
// reconciled with B, serves every write A acknowledged, including those
// that never reached C.
func TestTakeover(t *testing.T) {
	t.Parallel()
	const lease = 300 * time.Millisecond
	tn, t1 := newCluster(t, harnessConfig{Lease: lease})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	ctx := context.Background()
	// Slots A leads with C as first backup: demoting A makes C primary
	// and keeps B a replica.
	sel := primaryIs("A", "C", "B")
	early := keysWith(t, t1, "e", 10, sel)
	late := keysWith(t, t1, "l", 10, sel)
	for _, k := range early {
		if err := a.set(ctx, k, "early-"+k); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "early writes on every replica", func() bool {
		for _, k := range early {
			want, _ := a.lookup(k)
			if n, _ := copiesOf(tn, t1, k, want); n != 3 {
				return false
			}
		}
		return true
	})
	c.partition()
	for _, k := range late {
		if err := a.set(ctx, k, "late-"+k); err != nil {
			t.Fatalf("set %s with C partitioned: %v", k, err)
		}
		if _, ok := c.lookup(k); ok {
			t.Fatalf("C holds %s although partitioned", k)
		}
	}
	// A delete C misses: C must not bring the key back.
	gone := early[len(early)-1]
	early = early[:len(early)-1]
	if op, err := a.del(ctx, gone); err != nil || op != storage.OpDelete {
		t.Fatalf("delete %s with C partitioned: %v, %v", gone, op, err)
	}
	tomb, _ := b.lookup(gone)
	if !tomb.Deleted {
		t.Fatalf("B holds %+v after the delete", tomb)
	}

	t2 := t1.Demote(2, func(id ring.NodeID) bool { return id == "A" })
	for _, k := range late {
		if got := t2.Replicas(ring.Slot(k)); !slices.Equal(got, []ring.NodeID{"C", "A", "B"}) {
			t.Fatalf("slot of %s in t2: %v, want [C A B]", k, got)
		}
	}
	a.partition()
	a.cl.contact.Store(false)
	c.heal()
	b.setTable(t2)
	setAt := time.Now()
	c.setTable(t2)
	c.waitTable(t, 2)
	slot := ring.Slot(late[0])
	if time.Since(setAt) < lease/2 {
		if d := c.rep.Route(slot, true, false); !strings.HasPrefix(d.Err, "TRYAGAIN") {
			t.Fatalf("Route on C before LeaseTimeout: %+v, want TRYAGAIN", d)
		}
		if err := c.set(ctx, late[0], "too early"); !errors.Is(err, ErrNotServing) {
			t.Fatalf("write on C before LeaseTimeout: %v, want ErrNotServing", err)
		}
	}
	waitFor(t, 5*time.Second, "C ready", func() bool {
		ok, _ := c.rep.Ready()
		if ok && time.Since(setAt) < lease {
			t.Fatalf("C ready %v after the table, before LeaseTimeout %v", time.Since(setAt), lease)
		}
		return ok
	})
	for _, k := range append(slices.Clone(early), late...) {
		s := ring.Slot(k)
		if !c.rep.SlotReady(s) {
			t.Fatalf("C ready but slot %d of %s not", s, k)
		}
		want, _ := b.lookup(k)
		if got, ok := c.lookup(k); !ok || got != want {
			t.Fatalf("C holds %+v, %v for %s; B holds %+v", got, ok, k, want)
		}
		if d := c.rep.Route(s, false, false); !d.Local {
			t.Fatalf("Route on C after takeover: %+v", d)
		}
		if st, ok := c.kv.Get(s, k); !ok || !strings.HasSuffix(st.Value, "-"+k) {
			t.Fatalf("KV.Get on C of %s: %+v, %v", k, st, ok)
		}
	}
	if st, ok := c.lookup(gone); !ok || st != tomb {
		t.Fatalf("C holds %+v, %v for %s, deleted while C was away; want the tombstone %+v", st, ok, gone, tomb)
	}
	if st, ok := c.kv.Get(ring.Slot(gone), gone); ok {
		t.Fatalf("KV.Get on C finds deleted %s: %+v", gone, st)
	}
	if c.rep.Reconciled.Load() < int64(len(late)) {
		t.Fatalf("Reconciled = %d, want >= %d", c.rep.Reconciled.Load(), len(late))
	}
	// C now takes writes, under the new epoch, with B as its quorum.
	if err := c.set(ctx, late[0], "new"); err != nil {
		t.Fatalf("write on the new primary: %v", err)
	}
	st, _ := b.lookup(late[0])
	if st.Value != "new" || st.Version.Epoch != 2 {
		t.Fatalf("B holds %+v after the new primary's write, want value new at epoch 2", st)
	}
}

// TestTakeoverWaitsForEnoughReplicas: a new primary that can reach none
// of the slot's other replicas does not serve it, even after
// LeaseTimeout: it cannot know what they acknowledged.
func TestTakeoverWaitsForEnoughReplicas(t *testing.T) {
	t.Parallel()
	tn, t1 := newCluster(t, harnessConfig{})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	k := keysWith(t, t1, "r", 1, primaryIs("A", "C", "B"))[0]
	slot := ring.Slot(k)
	t2 := t1.Demote(2, func(id ring.NodeID) bool { return id == "A" })
	a.partition()
	b.partition()
	c.setTable(t2)
	c.waitTable(t, 2)
	time.Sleep(600 * time.Millisecond) // lease (100ms) and two follow ticks
	if c.rep.SlotReady(slot) {
		t.Fatal("C took over a slot without hearing from any other replica")
	}
	b.heal()
	waitFor(t, 5*time.Second, "C to take over once B is reachable", func() bool { return c.rep.SlotReady(slot) })
}

// TestDeleteReplicatesTombstone: a delete leaves tombstones on W copies
// before it returns (and on all eventually), and an older put arriving
// late on a backup, through the store or as a delayed Replicate frame, is
// refused.
func TestDeleteReplicatesTombstone(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{})
	a, b := tn.node("A"), tn.node("B")
	ctx := context.Background()
	k := keysWith(t, tb, "d", 1, primaryIs("A"))[0]
	slot := ring.Slot(k)
	if err := a.set(ctx, k, "doomed"); err != nil {
		t.Fatal(err)
	}
	put, _ := a.lookup(k)
	waitFor(t, 5*time.Second, "the put on every replica", func() bool {
		n, _ := copiesOf(tn, tb, k, put)
		return n == 3
	})
	op, err := a.del(ctx, k)
	if err != nil || op != storage.OpDelete {
		t.Fatalf("delete: %v, %v", op, err)
	}
	tomb, ok := a.lookup(k)
	if !ok || !tomb.Deleted || !put.Version.Less(tomb.Version) {
		t.Fatalf("primary holds %+v after delete; want a tombstone newer than %v", tomb, put.Version)
	}
	if n, who := copiesOf(tn, tb, k, tomb); n < 2 {
		t.Fatalf("delete returned with %d tombstones (%v), want >= 2", n, who)
	}
	waitFor(t, 5*time.Second, "the tombstone on every replica", func() bool {
		n, _ := copiesOf(tn, tb, k, tomb)
		return n == 3
	})
	if _, ok := a.kv.Get(slot, k); ok {
		t.Fatal("KV.Get finds a deleted key")
	}

	// A stale copy applied directly.
	if ok, err := b.store.Apply(ctx, slot, put, false); err != nil || ok {
		t.Fatalf("stale Apply on B: applied=%v err=%v, want refused", ok, err)
	}
	// A delayed Replicate frame from the primary, over the wire.
	nc, err := net.Dial("tcp", b.cl.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w := wire.NewWriter(nc)
	if err := w.Write(&wire.Msg{Kind: wire.KindReplicate, ID: 7, Epoch: tb.Epoch(), From: "A", Slot: slot, Entries: []wire.Entry{toEntry(put)}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack, err := wire.NewReader(nc).Read()
	if err != nil {
		t.Fatal(err)
	}
	if ack.Kind != wire.KindAck || ack.ID != 7 || ack.Err != "" {
		t.Fatalf("ack %+v", ack)
	}
	if st, ok := b.lookup(k); !ok || st != tomb {
		t.Fatalf("after a stale copy B holds %+v, %v; want the tombstone %+v", st, ok, tomb)
	}
	if got, err := b.rep.Forward(ctx, slot, 2, [][]byte{[]byte("GET"), []byte(k)}); err != nil || string(got) != "$-1\r\n" {
		t.Fatalf("GET of a deleted key via B: %q, %v", got, err)
	}
}

// TestForward: a command sent to a non-primary runs on the primary's
// engine and its reply comes back as is; an unreachable primary gives a
// TRYAGAIN *Error (not sent); a primary that got the command but did not
// answer gives an error that does not claim "not sent".
func TestForward(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{})
	a, b := tn.node("A"), tn.node("B")
	ctx := context.Background()
	k := keysWith(t, tb, "fw", 1, primaryIs("A"))[0]
	slot := ring.Slot(k)
	args := cmd
	if d := b.rep.Route(slot, true, false); d.Local || d.Primary != "A" || d.Err != "" {
		t.Fatalf("Route on B: %+v, want primary A", d)
	}
	rep, err := b.rep.Forward(ctx, slot, 2, args("SET", k, "hello"))
	if err != nil || string(rep) != "+OK\r\n" {
		t.Fatalf("forwarded SET: %q, %v", rep, err)
	}
	if st, ok := a.lookup(k); !ok || st.Value != "hello" {
		t.Fatalf("primary holds %+v, %v after forwarded SET", st, ok)
	}
	rep, err = b.rep.Forward(ctx, slot, 2, args("GET", k))
	if err != nil || string(rep) != "$5\r\nhello\r\n" {
		t.Fatalf("forwarded GET: %q, %v", rep, err)
	}
	if n := a.rep.Forwarded.Load(); n != 2 {
		t.Fatalf("A.Forwarded = %d, want 2", n)
	}
	if _, err := a.rep.Forward(ctx, slot, 2, args("GET", k)); err == nil {
		t.Fatal("Forward on the primary itself succeeded")
	}

	// The primary's engine refuses: its error reply comes back as bytes.
	a.cl.contact.Store(false)
	rep, err = b.rep.Forward(ctx, slot, 2, args("SET", k, "nope"))
	if err != nil || !strings.HasPrefix(string(rep), "-TRYAGAIN ") {
		t.Fatalf("forwarded SET to a primary out of contact: %q, %v", rep, err)
	}
	a.cl.contact.Store(true)

	// Unreachable: certainly not run.
	a.partition()
	_, err = b.rep.Forward(ctx, slot, 2, args("SET", k, "never"))
	var re *Error
	if !errors.As(err, &re) || re.Code != "TRYAGAIN" {
		t.Fatalf("Forward to a partitioned primary: %v, want a *Error with code TRYAGAIN", err)
	}
	if st, _ := a.lookup(k); st.Value != "hello" {
		t.Fatalf("primary holds %+v", st)
	}

	// Sent, then silence: the outcome is unknown, so no TRYAGAIN.
	a.heal()
	a.blackhole()
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = b.rep.Forward(tctx, slot, 2, args("SET", k, "maybe"))
	if err == nil {
		t.Fatal("Forward into a black hole succeeded")
	}
	if errors.As(err, &re) && re.Code == "TRYAGAIN" {
		t.Fatalf("Forward that was sent reports TRYAGAIN (nothing done): %v", err)
	}
}

// TestAsync: with Config.Async a write is acknowledged on the primary
// alone, even with both backups cut off (sync mode refuses that: see
// TestNoQuorum), and reaches the backups afterwards.
func TestAsync(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{Async: true})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	ctx := context.Background()
	keys := keysWith(t, tb, "as", 2, primaryIs("A"))
	b.partition()
	c.partition()
	if err := a.set(ctx, keys[0], "alone"); err != nil {
		t.Fatalf("async write with both backups partitioned: %v", err)
	}
	want, _ := a.lookup(keys[0])
	if n, who := copiesOf(tn, tb, keys[0], want); n != 1 {
		t.Fatalf("copies %v; want only the primary", who)
	}
	if n := a.rep.NoQuorum.Load(); n != 0 {
		t.Fatalf("NoQuorum = %d in async mode", n)
	}
	b.heal()
	c.heal()
	if err := a.set(ctx, keys[1], "later"); err != nil {
		t.Fatal(err)
	}
	want, _ = a.lookup(keys[1])
	waitFor(t, 5*time.Second, "the async write on the backups", func() bool {
		n, _ := copiesOf(tn, tb, keys[1], want)
		return n == 3
	})
}

// TestTakeoverBackAfterLosingSlot: a node that lost a slot (and saw the
// table that took it away) and later gets it back waits out the lease and
// reconciles again, so it serves the writes the interim primary took.
// (TestBugReadyKeptAcrossUnseenEpoch is the same story when the node
// never sees the interim table.)
func TestTakeoverBackAfterLosingSlot(t *testing.T) {
	t.Parallel()
	tn, t1 := newCluster(t, harnessConfig{})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	k := keysWith(t, t1, "bk", 1, primaryIs("C", "A", "B"))[0]
	slot := ring.Slot(k)
	t2 := t1.Demote(2, func(id ring.NodeID) bool { return id == "C" })
	for _, n := range []*testNode{a, b, c} {
		n.setTable(t2)
	}
	c.waitTable(t, 2)
	if c.rep.Serving(slot) {
		t.Fatal("C still serves a slot it lost")
	}
	waitFor(t, time.Second, "C to drop the slot", func() bool { return !c.rep.SlotReady(slot) })
	c.partition()
	waitFor(t, 5*time.Second, "A to serve at epoch 2", func() bool { return a.rep.Serving(slot) })
	if err := a.set(context.Background(), k, "written at epoch 2"); err != nil {
		t.Fatalf("set on A at epoch 2: %v", err)
	}
	t3 := t1.Demote(3, func(ring.NodeID) bool { return false })
	c.heal()
	for _, n := range []*testNode{a, b, c} {
		n.setTable(t3)
	}
	waitFor(t, 5*time.Second, "C to serve at epoch 3", func() bool { return c.rep.Serving(slot) })
	if st, ok := c.kv.Get(slot, k); !ok || st.Value != "written at epoch 2" {
		t.Fatalf("C serves slot %d at epoch 3 with %+v, %v", slot, st, ok)
	}
}

// TestCloseEndsAccept: Close returns promptly, with the DataListener
// still open on the cluster's side (its accept loop must not keep it
// waiting), and is safe to call twice.
func TestCloseEndsAccept(t *testing.T) {
	t.Parallel()
	tn, _ := newCluster(t, harnessConfig{})
	a := tn.node("A")
	done := make(chan struct{})
	go func() {
		a.rep.Close()
		a.rep.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		a.cl.ln.Close() // let Close and the test finish
		<-done
		t.Fatal("Replicator.Close did not return within 2s while the DataListener was open")
	}
	if err := a.set(context.Background(), "x", "y"); !errors.Is(err, ErrClosed) {
		t.Fatalf("set after Close: %v, want ErrClosed", err)
	}
}

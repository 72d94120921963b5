package replication

import (
	"context"
	"testing"
	"time"

	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
	"github.com/stashcluster/stash/tag"
)

// TestRecoverFromHintedNode: a primary with no record of a key adopts the
// live copy held by the node a tag's hint names, replicating it, while
// the table change is recent; it leaves the key alone when its own record
// (a tombstone) or the hinted node's (a tombstone, an expired stash) says
// it is gone, when the hint names no member, when it is not the primary,
// and once the table is old.
func TestRecoverFromHintedNode(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	ctx := context.Background()
	keys := keysWith(t, tb, "rk", 6, primaryIs("B"))
	onlyAtC := func(key string, st storage.Stash) {
		t.Helper()
		st.Key = key
		if st.Kind == 0 {
			st.Kind = storage.KindString
		}
		st.Version = storage.Version{Epoch: uint32(tb.Epoch()), Seq: 1 << 40}
		if _, err := c.store.Apply(ctx, ring.Slot(key), st, st.Deleted); err != nil {
			t.Fatal(err)
		}
	}
	recovered := func(n *testNode, key string, hint uint32) bool {
		t.Helper()
		ok, err := n.kv.Recover(ctx, ring.Slot(key), key, hint)
		if err != nil {
			t.Fatalf("%s: Recover(%s): %v", n.id, key, err)
		}
		return ok
	}
	hintC := tag.HintFor("C")
	// A loaded test machine can take longer than the production bound
	// to answer; set before any Recover runs.
	b.rep.recoverAsk, a.rep.recoverAsk = 10*time.Second, 10*time.Second

	// Adopted, and replicated to the other backup.
	onlyAtC(keys[0], storage.Stash{Value: "v0"})
	if !recovered(b, keys[0], hintC) {
		t.Fatal("the primary did not recover a copy held by the hinted node")
	}
	if st, ok := b.lookup(keys[0]); !ok || st.Value != "v0" || st.Deleted {
		t.Fatalf("primary after recovery: %+v %v", st, ok)
	}
	waitFor(t, 5*time.Second, "A to get the recovered stash", func() bool {
		st, ok := a.lookup(keys[0])
		return ok && st.Value == "v0"
	})
	if b.rep.Recovered.Load() != 1 {
		t.Fatalf("Recovered = %d, want 1", b.rep.Recovered.Load())
	}

	// The hint names no member, or this node.
	onlyAtC(keys[1], storage.Stash{Value: "v1"})
	if recovered(b, keys[1], tag.HintFor("Z")) || recovered(b, keys[1], tag.HintFor("B")) || recovered(b, keys[1], 0) {
		t.Fatal("recovered through a hint that names no other member")
	}
	// Not the primary: a backup never adopts.
	if recovered(a, keys[1], hintC) {
		t.Fatal("a backup recovered a stash")
	}
	// The primary's own tombstone is authoritative.
	if err := b.set(ctx, keys[1], "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.del(ctx, keys[1]); err != nil {
		t.Fatal(err)
	}
	onlyAtC(keys[1], storage.Stash{Value: "v1"}) // newer than the delete, only at C
	if recovered(b, keys[1], hintC) {
		t.Fatal("recovered a stash the primary holds a tombstone for")
	}
	// The hinted node's tombstone or expired copy: nothing to bring back.
	onlyAtC(keys[2], storage.Stash{Deleted: true})
	onlyAtC(keys[3], storage.Stash{Value: "v3", ExpireAt: time.Now().Add(-time.Second).UnixMilli()})
	if recovered(b, keys[2], hintC) || recovered(b, keys[3], hintC) {
		t.Fatal("recovered a stash deleted or expired at the hinted node")
	}
	if _, ok := b.lookup(keys[2]); ok {
		t.Fatal("the primary stored something for a key deleted at the hinted node")
	}
	// Long after the table change, a miss is a miss.
	onlyAtC(keys[4], storage.Stash{Value: "v4"})
	b.rep.tableAt.Store(time.Now().Add(-recoverWindow - time.Second).UnixNano())
	if recovered(b, keys[4], hintC) {
		t.Fatal("recovered outside the window after a table change")
	}
	if b.rep.Recovered.Load() != 1 {
		t.Fatalf("Recovered = %d, want 1", b.rep.Recovered.Load())
	}
}

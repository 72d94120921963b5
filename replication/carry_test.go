package replication

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
)

func cmd(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, x := range s {
		out[i] = []byte(x)
	}
	return out
}

// TestForwardedWriteCarriesCopy: a write forwarded by a backup of its
// slot is answered only once that backup holds it (its copy came in the
// reply), even with the other backup cut off: the primary counted the
// forwarding node's copy towards W = 2. The primary's read of the key
// does not wait once the copy is confirmed.
func TestForwardedWriteCarriesCopy(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{})
	a, b, c := tn.node("A"), tn.node("B"), tn.node("C")
	ctx := context.Background()
	keys := keysWith(t, tb, "cw", 20, primaryIs("A"))
	c.partition()
	for i, k := range keys {
		v := "v" + strings.Repeat("x", i)
		rep, err := b.rep.Forward(ctx, ring.Slot(k), 2, cmd("SET", k, v))
		if err != nil || string(rep) != "+OK\r\n" {
			t.Fatalf("forwarded SET %d: %q %v", i, rep, err)
		}
		if st, ok := b.lookup(k); !ok || st.Value != v {
			t.Fatalf("B answered SET %d without holding it: %+v %v", i, st, ok)
		}
	}
	if n := a.rep.Carried.Load(); n != int64(len(keys)) {
		t.Fatalf("A carried %d copies, want %d", n, len(keys))
	}
	waitFor(t, 2*time.Second, "A's pending marks to be released by B's confirmations", func() bool {
		for _, k := range keys {
			if ok, _ := a.rep.pend.wait(ring.Slot(k), k, 0); !ok {
				return false
			}
		}
		return true
	})
	if n := a.rep.Uncarried.Load(); n != 0 {
		t.Fatalf("A re-sent %d carried copies, want 0", n)
	}
}

// TestForwardFromNonReplicaCarriesNothing: a node that is not one of the
// slot's replicas gets no copy in the reply; the backups get theirs the
// usual way.
func TestForwardFromNonReplicaCarriesNothing(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{Nodes: []ring.NodeID{"A", "B", "C", "D"}})
	a, d := tn.node("A"), tn.node("D")
	ctx := context.Background()
	k := keysWith(t, tb, "nr", 1, func(reps []ring.NodeID) bool {
		return reps[0] == "A" && !slices.Contains(reps, "D")
	})[0]
	rep, err := d.rep.Forward(ctx, ring.Slot(k), 2, cmd("SET", k, "plain"))
	if err != nil || string(rep) != "+OK\r\n" {
		t.Fatalf("forwarded SET: %q %v", rep, err)
	}
	if _, ok := d.lookup(k); ok {
		t.Fatal("a node that is not a replica kept a copy")
	}
	if n := a.rep.Carried.Load(); n != 0 {
		t.Fatalf("A carried %d copies for a non-replica", n)
	}
	reps := tb.Replicas(ring.Slot(k))
	waitFor(t, 2*time.Second, "both backups to hold the write", func() bool {
		for _, id := range reps[1:] {
			if st, ok := tn.node(id).lookup(k); !ok || st.Value != "plain" {
				return false
			}
		}
		return true
	})
}

// TestCarryUnconfirmed: a carried copy the forwarding node never
// confirms keeps the key's reads waiting, and after the replication
// timeout the primary re-sends the change to its backups (retry), which
// releases them. A refusal does the same at once. Neither B nor C get
// the change until then: the copy travelled only in the reply.
func TestCarryUnconfirmed(t *testing.T) {
	t.Parallel()
	tn, tb := newCluster(t, harnessConfig{Timeout: 400 * time.Millisecond})
	a, b := tn.node("A"), tn.node("B")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys := keysWith(t, tb, "cu", 2, primaryIs("A", "B"))
	var cs carries
	forward := func(id uint64, k string) *wire.Msg {
		t.Helper()
		rep := a.rep.handleForward(ctx, &wire.Msg{Kind: wire.KindForward, ID: id, From: "B", Slot: ring.Slot(k), Args: cmd("SET", k, "carried")}, &cs)
		if string(rep.Reply) != "+OK\r\n" || len(rep.Entries) != 1 || rep.Entries[0].Key != k || rep.From != "A" {
			t.Fatalf("reply to a forward from a backup: %+v", rep)
		}
		// The value is the forward's third argument: not sent back.
		if rep.Entries[0].Value != "" || len(rep.ValueArgs) != 1 || rep.ValueArgs[0] != 3 {
			t.Fatalf("carried value not left out: %q, refs %v", rep.Entries[0].Value, rep.ValueArgs)
		}
		return rep
	}

	// Refused: re-sent at once.
	forward(1, keys[0])
	if ok, _ := a.rep.pend.wait(ring.Slot(keys[0]), keys[0], 0); ok {
		t.Fatal("the key's read does not wait for the forwarding node's confirmation")
	}
	if _, ok := b.lookup(keys[0]); ok {
		t.Fatal("B got the change other than in the reply")
	}
	a.rep.confirmed(cs.take(1), "ERR disk full")
	waitFor(t, 3*time.Second, "the refused change to reach B through retry", func() bool {
		st, ok := b.lookup(keys[0])
		return ok && st.Value == "carried"
	})
	if ok, _ := a.rep.pend.wait(ring.Slot(keys[0]), keys[0], 2*time.Second); !ok {
		t.Fatal("the key's read still waits after retry reached W copies")
	}

	// Never confirmed: the sweep re-sends it after the timeout.
	go a.rep.sweepCarries(ctx, &cs)
	forward(2, keys[1])
	time.Sleep(100 * time.Millisecond)
	if _, ok := b.lookup(keys[1]); ok {
		t.Fatal("B got the change other than in the reply")
	}
	waitFor(t, 3*time.Second, "the unconfirmed change to reach B through retry", func() bool {
		st, ok := b.lookup(keys[1])
		return ok && st.Value == "carried"
	})
	if ok, _ := a.rep.pend.wait(ring.Slot(keys[1]), keys[1], 2*time.Second); !ok {
		t.Fatal("the key's read still waits after retry reached W copies")
	}
	if n := a.rep.Uncarried.Load(); n != 2 {
		t.Fatalf("Uncarried = %d, want 2", n)
	}
}

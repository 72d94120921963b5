package stashtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stashcluster/stash"
	"github.com/stashcluster/stash/stashtest"
)

// TestStaleEpochIsFenced deposes a primary that cannot learn it was
// deposed: the others' traffic to it is blocked one way, so it hears
// nothing (no raft, no gossip, no acks) while everything it sends still
// arrives. It keeps acting on its old table: its write fails for want of
// acks, and it keeps offering the write to its backups with the old
// epoch. The other two move on to a newer table; from then on they must
// refuse those copies (fencing), and their value wins everywhere after
// the block is lifted.
func TestStaleEpochIsFenced(t *testing.T) {
	c := stashtest.StartCluster(t, 3, stashtest.Options{})
	ctx := context.Background()
	leader := c.Leader()
	var old *stashtest.Member
	for _, m := range c.Members {
		if m != leader {
			old = m
			break
		}
	}
	rest := others(c, old)
	tg, err := old.Node().Put(ctx, []byte("v0"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	slot := slotOf(t, tg)
	if p := primaryOf(t, c, rest[0], slot); p != old {
		t.Fatalf("tag minted by %s has primary %s", old.Name, p.Name)
	}

	// The scenario needs the old primary to take a write in the moment
	// between the block and the end of its lease (LeaseTimeout, 600 ms),
	// so that it has a write in doubt to offer its backups. On a starved
	// machine it may miss that moment: then heal and try again.
	var oldEpoch uint64
	var before int64
	for try := 1; ; try++ {
		// A write just before the block shows it serves the slot now.
		if _, err := retry(20*time.Second, func(ctx context.Context) error {
			return old.Node().Set(ctx, tg, []byte("v1"), 0)
		}); err != nil {
			t.Fatalf("write on %s before the block: %v", old.Name, err)
		}
		oldEpoch, before = epochOf(old), refused(rest)
		for _, m := range rest {
			c.Net.Block(m.Name, old.Name)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = old.Node().Set(wctx, tg, []byte("stale"), 0)
		cancel()
		if err == nil {
			t.Fatal("a primary that hears nothing acknowledged a write")
		}
		if errors.Is(err, stash.ErrNoQuorum) {
			break
		}
		t.Logf("try %d: the old primary's lease ran out before the write (%v)", try, err)
		if try == 3 {
			t.Fatalf("the old primary never took a write within its lease")
		}
		c.Net.Heal()
		c.WaitConverged(30 * time.Second)
	}
	t.Logf("blocked %v → %s (primary of slot %d at epoch %d); its write: NOQUORUM", names(rest), old.Name, slot, oldEpoch)

	// The others move on to a newer table without it and take the slot.
	took, err := retry(20*time.Second, func(ctx context.Context) error {
		return rest[0].Node().Set(ctx, tg, []byte("fresh"), 0)
	})
	if err != nil {
		t.Fatalf("write on the majority: %v; %s", err, describe(c.Members))
	}
	t.Logf("majority acknowledged %v after the block", took.Round(time.Millisecond))
	if e := epochOf(rest[0]); e <= oldEpoch {
		t.Fatalf("majority at epoch %d, not past %d", e, oldEpoch)
	}
	if e := epochOf(old); e != oldEpoch {
		t.Fatalf("the blocked member learnt epoch %d", e)
	}
	if p := primaryOf(t, c, rest[0], slot); p == old {
		t.Fatalf("majority's table still names %s primary of slot %d", old.Name, slot)
	}

	// Its copies, still at the old epoch, now reach backups whose table
	// names another primary: refused.
	took = eventually(t, 20*time.Second, "backups refuse the deposed primary's copies", func() (bool, string) {
		return refused(rest) > before, describe(c.Members)
	})
	t.Logf("backups refused %d stale copies (the first within %v)", refused(rest)-before, took.Round(time.Millisecond))

	// Writes on the old primary go on failing, and the majority's value
	// stands.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = old.Node().Set(wctx, tg, []byte("stale-2"), 0)
	cancel()
	if err == nil {
		t.Fatal("the deposed primary acknowledged a write")
	}
	readsBack(t, rest, map[string]string{tg: "fresh"})

	c.Net.Heal()
	took = eventually(t, 30*time.Second, "convergence after Heal", c.Converged)
	t.Logf("converged %v after Heal", took.Round(time.Millisecond))
	readsBack(t, c.Members, map[string]string{tg: "fresh"})
}

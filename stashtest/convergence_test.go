package stashtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stashcluster/stash/stashtest"
)

// TestTableConvergence moves the cluster through partitions of changing
// shape, then heals it onto a slow and lossy network: the members must
// end up on one slot table epoch and one leader, every one ready, and
// serve writes through every member.
func TestTableConvergence(t *testing.T) {
	c := stashtest.StartCluster(t, 3, stashtest.Options{})
	c.Net.Seed(7)
	n1, n2, n3 := c.Members[0], c.Members[1], c.Members[2]
	e0 := epochOf(n1)

	// {n1} | {n2, n3}: the majority demotes n1 in a newer table.
	c.Net.Partition([]string{n1.Name})
	eventually(t, 20*time.Second, "majority commits a table without n1's primaries", func() (bool, string) {
		st, _ := n2.Status()
		for _, m := range st.Members {
			if m.Name == "n1" && m.Primaries == 0 && st.Epoch > e0 && epochOf(n3) == st.Epoch {
				return true, ""
			}
		}
		return false, describe(c.Members)
	})
	e1 := epochOf(n2)
	if epochOf(n1) >= e1 {
		t.Fatalf("the isolated member is at epoch %d, the majority at %d", epochOf(n1), e1)
	}

	// {n3} | {n1, n2}: n1 rejoins the majority; n3 is cut off.
	c.Net.Partition([]string{n3.Name})
	eventually(t, 20*time.Second, "n1 and n2 agree on a newer table", func() (bool, string) {
		s1, _ := n1.Status()
		s2, _ := n2.Status()
		ok := s1.Epoch > e1 && s1.Epoch == s2.Epoch && s1.Leader != "" && s1.Leader == s2.Leader && s1.Leader != "n3"
		return ok, describe(c.Members)
	})

	// Heal onto a network that delays every hop and drops some packets
	// and streams.
	c.Net.SetDelay(5 * time.Millisecond)
	c.Net.SetDrop(0.01)
	c.Net.Heal()
	took := eventually(t, 45*time.Second, "convergence on a slow, lossy network", c.Converged)
	st, _ := n1.Status()
	t.Logf("converged %v after Heal (with delay and drops): epoch %d, leader %s", took.Round(time.Millisecond), st.Epoch, st.Leader)

	c.Net.SetDrop(0)
	c.Net.SetDelay(0)
	want := map[string]string{}
	for i, m := range c.Members {
		v := fmt.Sprintf("after-%d", i)
		var tg string
		if _, err := retry(15*time.Second, func(ctx context.Context) error {
			var err error
			tg, err = m.Node().Put(ctx, []byte(v), time.Hour)
			return err
		}); err != nil {
			t.Fatalf("put through %s: %v", m.Name, err)
		}
		want[tg] = v
	}
	readsBack(t, c.Members, want)
	c.WaitConverged(10 * time.Second)
}

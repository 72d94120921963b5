package stashtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stashcluster/stash/stashtest"
)

// TestFailover kills the primary of some stashes: the other two members
// take its slots over, every acknowledged write reads back through them,
// and writes to those slots resume within a bound. The killed member
// then restarts from its disk, takes its slots back and serves the
// writes made while it was down.
func TestFailover(t *testing.T) {
	c := stashtest.StartCluster(t, 3, stashtest.Options{})
	ctx := context.Background()

	// Acknowledged writes through every member: each Put mints a tag in
	// a slot its member is primary for; then a Set through another
	// member (forwarded to the primary) changes a third of them.
	want := map[string]string{}
	var tags []string
	for i := range 45 {
		m := c.Members[i%3]
		v := fmt.Sprintf("v%d", i)
		tg, err := m.Node().Put(ctx, []byte(v), time.Hour)
		if err != nil {
			t.Fatalf("put %d through %s: %v", i, m.Name, err)
		}
		want[tg] = v
		tags = append(tags, tg)
	}
	for i := 0; i < len(tags); i += 3 {
		m := c.Members[(i+1)%3]
		v := fmt.Sprintf("set%d", i)
		if err := m.Node().Set(ctx, tags[i], []byte(v), 0); err != nil {
			t.Fatalf("set %d through %s: %v", i, m.Name, err)
		}
		want[tags[i]] = v
	}

	victim := c.Members[0]
	slot := slotOf(t, tags[0])
	if p := primaryOf(t, c, c.Members[1], slot); p != victim {
		t.Fatalf("tag minted by %s has primary %s", victim.Name, p.Name)
	}
	rest := others(c, victim)
	victim.Kill()

	// Writes to the victim's slot resume on the survivors.
	took, err := retry(20*time.Second, func(ctx context.Context) error {
		return rest[0].Node().Set(ctx, tags[0], []byte("after-failover"), 0)
	})
	if err != nil {
		t.Fatalf("write to the dead primary's slot: %v after %v; %s", err, took, describe(c.Members))
	}
	want[tags[0]] = "after-failover"
	t.Logf("writes to the dead primary's slot resumed %v after the kill", took.Round(time.Millisecond))
	const bound = 15 * time.Second
	if took > bound {
		t.Errorf("failover took %v, more than %v", took, bound)
	}
	if p := primaryOf(t, c, rest[1], slot); p == victim {
		t.Fatalf("slot %d still has the dead member as primary", slot)
	}
	readsBack(t, rest, want)

	// New stashes go on being minted on the survivors.
	for _, m := range rest {
		tg, err := m.Node().Put(ctx, []byte("new-"+m.Name), time.Hour)
		if err != nil {
			t.Fatalf("put through %s after failover: %v", m.Name, err)
		}
		want[tg] = "new-" + m.Name
	}

	// The victim comes back (within DownGrace): it gets primaries again,
	// and must serve what was written while it was away, not its disk's
	// older copies.
	start := time.Now()
	victim.Restart()
	c.WaitConverged(30 * time.Second)
	t.Logf("restarted member converged in %v", time.Since(start).Round(time.Millisecond))
	if p := primaryOf(t, c, victim, slot); p != victim {
		t.Logf("after restart slot %d has primary %s", slot, p.Name)
	}
	readsBack(t, c.Members, want)
}

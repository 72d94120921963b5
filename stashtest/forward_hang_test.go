package stashtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stashcluster/stash/stashtest"
)

// TestForwardToCutOffPrimaryReturns: a write through a member that is
// not the slot's primary is forwarded to the primary. When a partition
// cuts the primary off (packets dropped, as by a firewall or a failed
// switch: no reset ever comes back), the forwarded call must still end,
// with an error or, after failover, with success, even when the caller's
// context has no deadline (context.Background, as in TestEmbeddedCluster
// and the package example).
//
// (It hung before Replicator.Forward bounded its wait: the black-holed
// stream never fails, and over real TCP it would have stayed open until
// the kernel's retransmission timeout, about 15 minutes on Linux.)
func TestForwardToCutOffPrimaryReturns(t *testing.T) {
	c := stashtest.StartCluster(t, 3, stashtest.Options{})
	ctx := context.Background()
	cut := c.Members[0]
	via := c.Members[1]
	tg, err := cut.Node().Put(ctx, []byte("v0"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p := primaryOf(t, c, via, slotOf(t, tg)); p != cut {
		t.Fatalf("tag minted by %s has primary %s", cut.Name, p.Name)
	}

	c.Net.Partition([]string{cut.Name})
	done := make(chan error, 1)
	go func() { done <- via.Node().Set(context.Background(), tg, []byte("v1"), 0) }()
	const bound = 10 * time.Second // failover takes a few seconds
	select {
	case err := <-done:
		t.Logf("Set through %s returned: %v", via.Name, err)
	case <-time.After(bound):
		t.Errorf("Set through %s with a context without deadline still blocked %v after its primary %s was cut off (slot failed over meanwhile: %s)",
			via.Name, bound, cut.Name, describe(c.Members))
	}
}

package stashtest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stashcluster/stash"
	"github.com/stashcluster/stash/stashtest"
)

// TestPartitionedPrimaryCannotAcknowledge cuts the primary of some slots
// (the control-plane leader too) off from the other two members. Nothing
// it is sent for those slots from then on may be acknowledged: it
// answers NOQUORUM while its lease lasts and unavailable after, and it
// serves no read once the majority has acknowledged a newer value. The
// majority takes the slots over and acknowledges; after Heal every
// member reads the majority's value, and no write the isolated member
// refused as unavailable (nothing done) ever shows up.
func TestPartitionedPrimaryCannotAcknowledge(t *testing.T) {
	c := stashtest.StartCluster(t, 3, stashtest.Options{})
	ctx := context.Background()
	iso := c.Leader()
	if iso == nil {
		t.Fatal("no leader")
	}
	maj := others(c, iso)
	// tags[0] is written by both sides, tags[1] by the majority only,
	// the others by the isolated member only.
	var tags []string
	before := map[string]string{}
	for i := range 6 {
		v := fmt.Sprintf("v0-%d", i)
		tg, err := iso.Node().Put(ctx, []byte(v), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tags = append(tags, tg)
		before[tg] = v
	}
	slot := slotOf(t, tags[0])
	if p := primaryOf(t, c, maj[0], slot); p != iso {
		t.Fatalf("tag minted by %s has primary %s", iso.Name, p.Name)
	}

	c.Net.Partition([]string{iso.Name})
	t.Logf("partitioned %s (leader, primary of slot %d) from %v", iso.Name, slot, names(maj))

	// The isolated side: writes of distinct values, one at a time,
	// until the majority has acknowledged its own.
	type result struct {
		tag, v string
		err    error
	}
	var (
		mu      sync.Mutex
		results []result
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tg, v := tags[0], fmt.Sprintf("iso-%d", i)
			if i%2 == 1 {
				tg = tags[2+i/2%(len(tags)-2)]
			}
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := iso.Node().Set(ctx, tg, []byte(v), 0)
			cancel()
			mu.Lock()
			results = append(results, result{tg, v, err})
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	took, err := retry(20*time.Second, func(ctx context.Context) error {
		return maj[0].Node().Set(ctx, tags[0], []byte("maj"), 0)
	})
	if err != nil {
		t.Fatalf("majority write: %v after %v; %s", err, took, describe(c.Members))
	}
	t.Logf("majority acknowledged a write to slot %d %v after the partition", slot, took.Round(time.Millisecond))
	if _, err := retry(10*time.Second, func(ctx context.Context) error {
		return maj[1].Node().Set(ctx, tags[1], []byte("maj-1"), 0)
	}); err != nil {
		t.Fatalf("majority write: %v", err)
	}
	readsBack(t, maj, map[string]string{tags[0]: "maj", tags[1]: "maj-1"})
	// Nor may the isolated member serve a stale read now.
	rctx, cancel := context.WithTimeout(ctx, attempt)
	got, err := iso.Node().Get(rctx, tags[1])
	cancel()
	if err == nil {
		t.Errorf("isolated member served a read (%q) after the majority acknowledged %q", got, "maj-1")
	}
	time.Sleep(500 * time.Millisecond) // a few more tries on the isolated side
	close(stop)
	<-done

	counts := map[string]int{}
	nothingDone := map[string]bool{} // values the isolated side answered unavailable for
	for _, r := range results {
		switch {
		case r.err == nil:
			t.Errorf("isolated primary acknowledged %q", r.v)
		case errors.Is(r.err, stash.ErrNoQuorum):
			counts["noquorum"]++
		case errors.Is(r.err, stash.ErrUnavailable):
			counts["unavailable"]++
			nothingDone[r.v] = true
		default:
			counts[r.err.Error()]++
		}
	}
	t.Logf("isolated side: %d writes, outcomes %v", len(results), counts)
	if len(results) == 0 {
		t.Fatal("no write reached the isolated side")
	}

	c.Net.Heal()
	took = eventually(t, 30*time.Second, "convergence after Heal", c.Converged)
	t.Logf("converged %v after Heal; refused stale copies: %d", took.Round(time.Millisecond), refused(maj))
	readsBack(t, c.Members, map[string]string{tags[0]: "maj", tags[1]: "maj-1"})
	// The keys only the isolated side wrote hold their value from before
	// or a write in doubt (NOQUORUM may or may not take effect), never
	// one it reported as not done.
	for _, tg := range tags[2:] {
		for _, m := range c.Members {
			var got []byte
			if _, err := retry(15*time.Second, func(ctx context.Context) error {
				var err error
				got, err = m.Node().Get(ctx, tg)
				return err
			}); err != nil {
				t.Fatalf("get through %s: %v", m.Name, err)
			}
			if nothingDone[string(got)] {
				t.Errorf("%s reads %q, a write the isolated member answered unavailable for", m.Name, got)
			}
			if string(got) != before[tg] {
				t.Logf("%s reads %q for a key last acknowledged as %q (a write in doubt took effect)", m.Name, got, before[tg])
			}
		}
	}
}

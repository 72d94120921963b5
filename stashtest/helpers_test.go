package stashtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stashcluster/stash"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/stashtest"
	"github.com/stashcluster/stash/tag"
)

func ctxT(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// slotOf returns the slot of the stash a tag names.
func slotOf(tb testing.TB, tg string) uint16 {
	tb.Helper()
	codec, err := tag.NewCodec(stashtest.Secret)
	if err != nil {
		tb.Fatal(err)
	}
	t, err := codec.Decode(tg)
	if err != nil {
		tb.Fatal(err)
	}
	return ring.Slot(t.ID.Key())
}

// primaryOf returns the primary of slot in via's slot table, asked the
// way a cluster-aware Redis client asks (CLUSTER SLOTS on its client
// port).
func primaryOf(tb testing.TB, c *stashtest.Cluster, via *stashtest.Member, slot uint16) *stashtest.Member {
	tb.Helper()
	n := via.Node()
	if n == nil {
		tb.Fatalf("primaryOf: %s is killed", via.Name)
	}
	rdb := redis.NewClient(&redis.Options{Addr: n.Addr(), Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	slots, err := rdb.ClusterSlots(ctxT(tb, 5*time.Second)).Result()
	if err != nil {
		tb.Fatalf("CLUSTER SLOTS on %s: %v", via.Name, err)
	}
	for _, r := range slots {
		if int(slot) < r.Start || int(slot) > r.End || len(r.Nodes) == 0 {
			continue
		}
		for _, m := range c.Live() {
			if m.Node().Addr() == r.Nodes[0].Addr {
				return m
			}
		}
		tb.Fatalf("primary of slot %d at %s is no live member", slot, r.Nodes[0].Addr)
	}
	tb.Fatalf("slot %d not in CLUSTER SLOTS of %s", slot, via.Name)
	return nil
}

// retryable reports whether a failed write may be sent again: the slot
// was unavailable (nothing done) or the quorum was missed (in doubt;
// the callers here only retry writes of one fixed value).
func retryable(err error) bool {
	return errors.Is(err, stash.ErrUnavailable) || errors.Is(err, stash.ErrNoQuorum)
}

// attempt bounds one try of an operation: a call forwarded to a
// primary that a partition cut off gets no answer (see bugs_test.go).
const attempt = 2 * time.Second

// retry runs f, each time with a context bounded by attempt, until it
// succeeds, fails otherwise than retryable, or d passes; it returns f's
// last error and how long it took.
func retry(d time.Duration, f func(ctx context.Context) error) (time.Duration, error) {
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), attempt)
		err := f(ctx)
		cancel()
		if err == nil || !retryable(err) && !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > d {
			return time.Since(start), err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventually waits up to d for cond, polling, and fails tb otherwise.
func eventually(tb testing.TB, d time.Duration, what string, cond func() (bool, string)) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			tb.Fatalf("%s: not within %v: %s", what, d, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// others returns c's members other than m.
func others(c *stashtest.Cluster, m *stashtest.Member) []*stashtest.Member {
	var out []*stashtest.Member
	for _, o := range c.Members {
		if o != m {
			out = append(out, o)
		}
	}
	return out
}

// names returns the members' names.
func names(ms []*stashtest.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// readsBack checks that every member in ms reads want[tag] for every
// tag (retrying while a slot is unavailable).
func readsBack(tb testing.TB, ms []*stashtest.Member, want map[string]string) {
	tb.Helper()
	for tg, v := range want {
		for _, m := range ms {
			var got []byte
			_, err := retry(15*time.Second, func(ctx context.Context) error {
				var err error
				got, err = m.Node().Get(ctx, tg)
				return err
			})
			if err != nil || string(got) != v {
				tb.Fatalf("get %s… through %s = %q, %v; want %q", tg[:8], m.Name, got, err, v)
			}
		}
	}
}

// refused sums the copies the members refused as coming from a deposed
// primary (stale epoch).
func refused(ms []*stashtest.Member) int64 {
	var n int64
	for _, m := range ms {
		if st, ok := m.Status(); ok {
			n += st.Refused
		}
	}
	return n
}

func epochOf(m *stashtest.Member) uint64 {
	st, _ := m.Status()
	return st.Epoch
}

func describe(ms []*stashtest.Member) string {
	s := ""
	for _, m := range ms {
		st, ok := m.Status()
		if !ok {
			s += fmt.Sprintf("[%s killed] ", m.Name)
			continue
		}
		s += fmt.Sprintf("[%s epoch %d leader %q ready %v %s serving %d refused %d] ",
			m.Name, st.Epoch, st.Leader, st.Ready, st.Reason, st.Serving, st.Refused)
	}
	return s
}

package stash

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stashcluster/stash/client"
	"github.com/stashcluster/stash/internal/testport"
	"github.com/stashcluster/stash/ring"
)

func freePort(t *testing.T) int { return testport.Free(t) }

// openCluster opens n embedded members of one cluster in this process
// and waits until every one is ready.
func openCluster(t *testing.T, n int) []*Node {
	t.Helper()
	gossip := make([]int, n)
	var join []string
	for i := range gossip {
		gossip[i] = freePort(t)
		join = append(join, fmt.Sprintf("127.0.0.1:%d", gossip[i]))
	}
	nodes := make([]*Node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := testConfig(t)
		cfg.Name = fmt.Sprintf("m%d", i+1)
		cfg.AdminPort = -1
		cfg.GossipPort, cfg.ClusterPort = gossip[i], 0
		cfg.Join, cfg.BootstrapExpect = join, n
		cfg.Secret = []byte("embedded-cluster-secret-0123")
		cfg.ClusterProfile = "local"
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = Open(context.Background(), cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i+1, err)
		}
		t.Cleanup(func() { nodes[i].Close() })
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, nd := range nodes {
		for {
			ok, why := nd.ready()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready: %s", nd.cfg.Name, why)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// retry runs f until it returns something other than ErrUnavailable (a
// slot changing hands) or the deadline passes.
func retry[T any](t *testing.T, d time.Duration, f func() (T, error)) (T, error) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		v, err := f()
		if !errors.Is(err, ErrUnavailable) || time.Now().After(end) {
			return v, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEmbeddedCluster runs three members in one process: a stash put
// through one member is read, updated, touched and deleted through the
// others (whichever is its primary), and survives the close of its
// primary.
func TestEmbeddedCluster(t *testing.T) {
	nodes := openCluster(t, 3)
	ctx := context.Background()

	st, ok := nodes[0].ClusterStatus()
	if !ok || len(st.Members) != 3 || st.Leader == "" {
		t.Fatalf("cluster status: %+v", st)
	}

	var tags []string
	for i := range 30 {
		tg, err := nodes[i%3].Put(ctx, []byte(fmt.Sprintf("v%d", i)), time.Hour)
		if err != nil {
			t.Fatalf("put through %s: %v", nodes[i%3].cfg.Name, err)
		}
		tags = append(tags, tg)
	}
	for i, tg := range tags {
		for _, nd := range nodes {
			got, err := nd.Get(ctx, tg)
			if err != nil || string(got) != fmt.Sprintf("v%d", i) {
				t.Fatalf("get %d through %s = %q, %v", i, nd.cfg.Name, got, err)
			}
		}
	}
	// Changes through a member other than the one that minted the tag.
	if err := nodes[1].Set(ctx, tags[0], []byte("changed"), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := nodes[2].Get(ctx, tags[0]); err != nil || string(got) != "changed" {
		t.Fatalf("after set: %q, %v", got, err)
	}
	if err := nodes[2].Touch(ctx, tags[0], 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].Delete(ctx, tags[1]); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		if _, err := nd.Get(ctx, tags[1]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted stash through %s: %v", nd.cfg.Name, err)
		}
	}
	if err := nodes[0].Delete(ctx, tags[1]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := nodes[0].Get(ctx, tags[2][:10]); !errors.Is(err, ErrBadTag) {
		t.Fatalf("truncated tag: %v", err)
	}

	// Close the primary of tags[0]'s slot: the others take it over and
	// still have the value.
	rest := closePrimary(t, nodes, tags[0])
	start := time.Now()
	got, err := retry(t, 15*time.Second, func() ([]byte, error) { return rest[0].Get(ctx, tags[0]) })
	if err != nil || string(got) != "changed" {
		t.Fatalf("after closing the primary: %q, %v", got, err)
	}
	t.Logf("stash readable %v after its primary closed", time.Since(start).Round(time.Millisecond))
	if _, err := retry(t, 15*time.Second, func() (string, error) { return rest[1].Put(ctx, []byte("after"), 0) }); err != nil {
		t.Fatalf("put after failover: %v", err)
	}
}

// closePrimary closes the member that is primary for tag's slot (as the
// first member's table has it) and returns the others.
func closePrimary(t *testing.T, nodes []*Node, tag string) (rest []*Node) {
	t.Helper()
	tg, err := nodes[0].ops.Codec.Decode(tag)
	if err != nil {
		t.Fatal(err)
	}
	primary := nodes[0].cl.rep.Table().Primary(ring.Slot(tg.ID.Key()))
	for _, nd := range nodes {
		if ring.NodeID(nd.cfg.Name) == primary {
			nd.Close()
		} else {
			rest = append(rest, nd)
		}
	}
	if len(rest) != len(nodes)-1 {
		t.Fatalf("primary %q not among the members", primary)
	}
	return rest
}

// respAddrs lists the members' RESP addresses.
func respAddrs(nodes []*Node) []string {
	var addrs []string
	for _, nd := range nodes {
		addrs = append(addrs, nd.Addr())
	}
	return addrs
}

// TestClientRoutesStashesToPrimaries: the Go client sends each STASH
// command straight to the primary of the stash's slot (read from the
// tag), so no member has to forward it.
func TestClientRoutesStashesToPrimaries(t *testing.T) {
	nodes := openCluster(t, 3)
	ctx := context.Background()
	c, err := client.Dial(ctx, respAddrs(nodes)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	forwarded := func() int64 {
		var sum int64
		for _, nd := range nodes {
			st, _ := nd.ClusterStatus()
			sum += st.Forwarded
		}
		return sum
	}
	var tags []string
	for i := range 30 {
		tg, err := c.Put(ctx, []byte("v"+strconv.Itoa(i)), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tags = append(tags, tg)
	}
	before := forwarded()
	for i, tg := range tags {
		if err := c.Set(ctx, tg, []byte("w"+strconv.Itoa(i)), 0); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(ctx, tg); err != nil || string(v) != "w"+strconv.Itoa(i) {
			t.Fatalf("Get %s: %q, %v", tg, v, err)
		}
		if err := c.Touch(ctx, tg, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n := forwarded() - before; n != 0 {
		t.Fatalf("members forwarded %d of %d stash commands sent through the client", n, 3*len(tags))
	}
	for _, tg := range tags {
		if err := c.Delete(ctx, tg); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClientFollowsFailover: once a call has found a stash's primary
// gone, the Go client reloads its slot map, so that later calls go
// straight to the new primary instead of trying the old one first (and
// retrying) until the map is 10 s old.
func TestClientFollowsFailover(t *testing.T) {
	nodes := openCluster(t, 3)
	ctx := context.Background()
	var retries atomic.Int64
	c, err := client.DialOptions(ctx, client.Options{MaxRetries: 60, MinBackoff: 2 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		OnRetry: func(int, error) { retries.Add(1) }}, respAddrs(nodes)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tg, err := c.Put(ctx, []byte("kept"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	closePrimary(t, nodes, tg)
	start := time.Now()
	if v, err := c.Get(ctx, tg); err != nil || string(v) != "kept" {
		t.Fatalf("Get after closing the primary: %q, %v", v, err)
	}
	t.Logf("first Get after the primary closed: %v, %d retries", time.Since(start).Round(time.Millisecond), retries.Load())
	// The reload runs in the background: give it a moment, well under
	// the 10 s after which go-redis reloads on its own.
	time.Sleep(time.Second)
	retries.Store(0)
	for i := range 20 {
		if v, err := c.Get(ctx, tg); err != nil || string(v) != "kept" {
			t.Fatalf("Get %d: %q, %v", i, v, err)
		}
	}
	if n := retries.Load(); n != 0 {
		t.Fatalf("20 Gets a second after the failover retried %d times: the client still tries the old primary first", n)
	}
	if time.Since(start) > 8*time.Second {
		t.Fatalf("test took %v: too close to go-redis's own 10 s reload to show anything", time.Since(start))
	}
}

// TestShutdownHandsLeadershipOver: a member that leads raft and is shut
// down gracefully hands leadership to another member first, so the
// others always have a leader (and stay in contact, acknowledging
// writes) while it goes. Without the hand-over they keep naming the
// stopped member for a heartbeat timeout and then hold an election.
func TestShutdownHandsLeadershipOver(t *testing.T) {
	nodes := openCluster(t, 3)
	var leader *Node
	var rest []*Node
	for _, nd := range nodes {
		if nd.cl.cn.IsLeader() {
			leader = nd
		} else {
			rest = append(rest, nd)
		}
	}
	if leader == nil || len(rest) != 2 {
		t.Fatalf("want one leader among 3 members, got leader %v and %d others", leader != nil, len(rest))
	}
	old := ring.NodeID(leader.cfg.Name)
	// Watch the others' contact with the cluster through the shutdown
	// and a lease beyond it.
	stop := make(chan struct{})
	lost := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, nd := range rest {
				if !nd.cl.cn.InContact() {
					select {
					case lost <- nd.cfg.Name:
					default:
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	if err := leader.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, nd := range rest {
		if l := nd.cl.cn.Leader(); l == "" || l == old {
			t.Errorf("%s names leader %q right after %s stopped; want one of the others", nd.cfg.Name, l, old)
		}
	}
	time.Sleep(2 * rest[0].cl.cn.LeaseTimeout())
	close(stop)
	wg.Wait()
	select {
	case name := <-lost:
		t.Errorf("%s lost contact with the cluster while the leader shut down", name)
	default:
	}
	if _, err := rest[0].Put(context.Background(), []byte("after"), 0); err != nil {
		t.Fatalf("put after the leader's shutdown: %v", err)
	}
}

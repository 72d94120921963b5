package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stashcluster/stash/client"
)

const testSecret = "cluster-test-secret-0123456789"

// startCluster starts n stashnodes on 127.0.0.1 that form one cluster
// (bootstrap-expect n, fast failure detection) and waits until every node
// accepts a write. extra is passed to every node.
func startCluster(t *testing.T, n int, extra ...string) []*proc {
	t.Helper()
	gossip := make([]int, n)
	join := make([]string, n)
	for i := range n {
		gossip[i] = freePort(t)
		join[i] = "127.0.0.1:" + strconv.Itoa(gossip[i])
	}
	nodes := make([]*proc, n)
	for i := range n {
		args := []string{
			"--name", fmt.Sprintf("n%d", i+1),
			"--gossip-port", strconv.Itoa(gossip[i]),
			"--cluster-port", strconv.Itoa(freePort(t)),
			"--join", strings.Join(join, ","),
			"--bootstrap-expect", strconv.Itoa(n),
			"--cluster-profile", "local",
			"--secret", testSecret,
			"--data-dir", t.TempDir(),
		}
		nodes[i] = start(t, append(args, extra...)...)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, p := range nodes {
		waitReadyz(t, p, time.Until(deadline))
		c := p.client(t)
		for {
			err := c.Set(context.Background(), fmt.Sprintf("probe-%d", i), "1", 0).Err()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d does not accept writes: %v", i+1, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nodes
}

// waitReadyz waits until p's /readyz answers 200: the node has the table,
// serves its primaries and its backups are in sync.
func waitReadyz(t *testing.T, p *proc, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", p.adminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node on port %d not ready after %v", p.port, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *proc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// primaryCounts parses CLUSTER NODES: RESP port → slots it is primary for.
func primaryCounts(t *testing.T, c *redis.Client) map[int]int {
	t.Helper()
	out, err := c.ClusterNodes(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			t.Fatalf("CLUSTER NODES line %q", line)
		}
		hostPort := strings.SplitN(f[1], "@", 2)[0]
		port, err := strconv.Atoi(hostPort[strings.LastIndexByte(hostPort, ':')+1:])
		if err != nil {
			t.Fatalf("CLUSTER NODES address %q", f[1])
		}
		for _, r := range f[8:] {
			lo, hi, ok := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if ok {
				b, _ = strconv.Atoi(hi)
			}
			counts[port] += b - a + 1
		}
	}
	return counts
}

// TestClusterKillBusiestPrimary is the cluster's acceptance test: three
// real nodes, 10,000 keys written through go-redis's ClusterClient and
// 10,000 stashes through the Go client, then kill -9 of the node that is
// primary for the most slots. Within 10 s the cluster must accept writes
// again and every acknowledged write must read back with its value.
func TestClusterKillBusiestPrimary(t *testing.T) {
	nodes := startCluster(t, 3)
	addrs := []string{nodes[0].addr(), nodes[1].addr(), nodes[2].addr()}
	ctx := ctx(t)

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, MaxRedirects: 8, DialTimeout: time.Second})
	defer cc.Close()
	const keys, stashes, workers = 10000, 10000, 16

	var keyVals sync.Map // key → value of its acknowledged SET
	var tagVals sync.Map // tag → value of its acknowledged STASH.PUT
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += workers {
				k, v := fmt.Sprintf("key:%d", i), fmt.Sprintf("value-%d-%d", i, time.Now().UnixNano())
				if err := cc.Set(ctx, k, v, 0).Err(); err != nil {
					failed.Add(1)
					continue
				}
				keyVals.Store(k, v)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d SETs through ClusterClient in %v (%d failed)", keys, time.Since(start).Round(time.Millisecond), failed.Load())

	cl, err := client.Dial(ctx, addrs...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	start = time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < stashes; i += workers {
				v := fmt.Sprintf("stash-%d", i)
				tg, err := cl.Put(ctx, []byte(v), time.Hour)
				if err != nil {
					failed.Add(1)
					continue
				}
				tagVals.Store(tg, v)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d STASH.PUTs through client.Client in %v (%d failed in all)", stashes, time.Since(start).Round(time.Millisecond), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d writes failed before any fault", failed.Load())
	}

	counts := primaryCounts(t, nodes[0].client(t))
	victim := nodes[0]
	for _, p := range nodes {
		if counts[p.port] > counts[victim.port] {
			victim = p
		}
	}
	t.Logf("primaries per node %v; killing :%d", counts, victim.port)
	victim.cmd.Process.Kill()
	<-victim.done
	killed := time.Now()
	deadline := killed.Add(10 * time.Second)

	var survivors []*proc
	for _, p := range nodes {
		if p != victim {
			survivors = append(survivors, p)
		}
	}
	// Writes again: every slot must take a write through a surviving node.
	sc := survivors[0].client(t)
	var writable time.Duration
	for slot := 0; ; {
		k := fmt.Sprintf("after-kill-%d", slot)
		err := sc.Set(ctx, k, "x", 0).Err()
		if err == nil {
			slot++
			if slot == 200 {
				writable = time.Since(killed)
				break
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("no writes 10 s after the kill: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("writes accepted again %v after the kill", writable.Round(time.Millisecond))

	// Every acknowledged write reads back, through a survivor, in
	// parallel; a read that fails is retried until the deadline.
	// check reads every entry of m back in pipelined batches (one round
	// trip per batch and node), retrying the ones that fail until the
	// deadline, and counts those read and those that differ.
	check := func(batch func(keys []string) []*redis.Cmd, m *sync.Map) (checked, wrong int64) {
		want := map[string]string{}
		m.Range(func(k, v any) bool {
			want[k.(string)] = v.(string)
			return true
		})
		var left []string
		for k := range want {
			left = append(left, k)
		}
		var lastErr error
		for len(left) > 0 {
			var again []string
			for i := 0; i < len(left); i += 500 {
				part := left[i:min(i+500, len(left))]
				for j, c := range batch(part) {
					got, err := c.Text()
					if err != nil {
						again, lastErr = append(again, part[j]), err
						continue
					}
					checked++
					if got != want[part[j]] {
						wrong++
						t.Errorf("%s = %q, acknowledged %q", part[j], got, want[part[j]])
					}
				}
			}
			left = again
			if len(left) > 0 {
				if time.Now().After(deadline) {
					t.Errorf("%d entries unreadable 10 s after the kill, e.g. %s: %v", len(left), left[0], lastErr)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		return checked, wrong
	}
	// Keys through go-redis's ClusterClient (it reloads the slot map
	// after the kill); stashes through a survivor, which forwards each
	// STASH.GET to its slot's primary.
	n1, w1 := check(func(keys []string) []*redis.Cmd {
		cmds := make([]*redis.Cmd, len(keys))
		cc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				cmds[i] = p.Do(ctx, "GET", k)
			}
			return nil
		})
		return cmds
	}, &keyVals)
	n2, w2 := check(func(tags []string) []*redis.Cmd {
		cmds := make([]*redis.Cmd, len(tags))
		sc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, tg := range tags {
				cmds[i] = p.Do(ctx, "STASH.GET", tg)
			}
			return nil
		})
		return cmds
	}, &tagVals)
	took := time.Since(killed)
	t.Logf("read back %d keys and %d stashes (%d wrong) by %v after the kill", n1, n2, w1+w2, took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("reading every acknowledged write back took until %v after the kill, want ≤ 10s", took)
	}
	if n1 != keys || n2 != stashes {
		t.Fatalf("acknowledged %d keys and %d stashes, want %d and %d", n1, n2, keys, stashes)
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestDrainCommand: `stashnode drain --admin` on a cluster member hands
// its primaries to the others, prints progress and the outcome, and the
// process exits 0; every key written before reads back through the
// others, and they accept writes for every slot.
func TestDrainCommand(t *testing.T) {
	nodes := startCluster(t, 3)
	// TRYAGAIN (a slot changing hands) is retryable: retry it for a while.
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{nodes[1].addr(), nodes[2].addr()}, MaxRetries: 30, MaxRetryBackoff: 500 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	const n = 2000
	for i := range n {
		if err := c.Set(ctx(t), "dr"+strconv.Itoa(i), "v"+strconv.Itoa(i), 0).Err(); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
	}
	victim := nodes[0]
	if primaryCounts(t, nodes[1].client(t))[victim.port] == 0 {
		t.Fatal("the node to drain is primary for no slot: nothing to hand off")
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(binary(t), "drain", "--admin", "127.0.0.1:"+strconv.Itoa(victim.adminPort), "--timeout", "60s")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("stashnode drain: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "primaries handed off") || !strings.Contains(out.String(), "node stopped") {
		t.Fatalf("drain output lacks progress or outcome:\n%s", out.String())
	}
	select {
	case <-victim.done:
		if victim.exitErr != nil {
			t.Fatalf("drained node exited with %v", victim.exitErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("drained node still runs")
	}
	// The survivors hold every slot and every key once they have taken
	// the slots over. (The client's slot map still names the drained
	// node: it reloads it.)
	for _, p := range nodes[1:] {
		waitReadyz(t, p, 30*time.Second)
	}
	c.ReloadState(ctx(t))
	counts := primaryCounts(t, nodes[1].client(t))
	if counts[victim.port] != 0 {
		t.Fatalf("drained node still primary for %d slots", counts[victim.port])
	}
	for i := range n {
		got, err := c.Get(ctx(t), "dr"+strconv.Itoa(i)).Result()
		if err != nil || got != "v"+strconv.Itoa(i) {
			t.Fatalf("get dr%d after drain: %q, %v", i, got, err)
		}
	}
	for i := range 200 {
		if err := c.Set(context.Background(), fmt.Sprintf("after%d", i), "x", 0).Err(); err != nil {
			t.Fatalf("write after drain: %v", err)
		}
	}
}

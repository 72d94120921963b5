package harness

import (
	"context"
	"github.com/stashcluster/stash/internal/testlock"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// needHosts skips unless this machine can host a run, and builds
// stashnode once for all scenarios.
func needHosts(t *testing.T) string {
	t.Helper()
	if err := Prereqs(); err != nil {
		t.Skipf("skipping jepsen scenario: %v", err)
	}
	buildOnce.Do(func() {
		if b := os.Getenv("JEPSEN_STASHNODE"); b != "" {
			buildBin = b // a prebuilt stashnode, e.g. while the tree does not build
			return
		}
		dir, err := os.MkdirTemp("", "stash-jepsen-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "stashnode")
		buildErr = build(context.Background(), "", buildBin)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	t.Cleanup(func() {
		if left := CleanRun(context.Background(), os.Getpid()); len(left) > 0 {
			t.Errorf("run left behind %v (now removed)", left)
		}
	})
	return buildBin
}

func scenario(t *testing.T, cfg Config) *Results {
	t.Helper()
	cfg.Bin = needHosts(t)
	testlock.Heavy(t) // not alongside another package's heavy test
	if cfg.Out == "" {
		cfg.Out = t.TempDir()
	}
	if cfg.Time == 0 {
		cfg.Time = 20 * time.Second
	}
	if cfg.Interval == 0 {
		cfg.Interval = 3 * time.Second
	}
	cfg.Log = testLog{t}
	ctx, cancel := context.WithTimeout(context.Background(), 3*cfg.Time+60*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res.Summary())
	for _, f := range []string{"history.jsonl", "results.json", "report.html"} {
		if _, err := os.Stat(filepath.Join(cfg.Out, f)); err != nil {
			t.Error(err)
		}
	}
	if len(cfg.Nemesis) > 0 && len(res.Windows) == 0 {
		t.Errorf("no fault was injected")
	}
	return res
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Safe configurations: every scenario must come out valid. A single node
// is only safe under kill with --fsync always (batch acknowledges up to
// 10 ms before the fsync).
func TestScenarioKill(t *testing.T) {
	res := scenario(t, Config{Nemesis: []string{"kill"}, Workload: Stash, NodeArgs: []string{"--fsync", "always"}})
	if !res.Valid {
		t.Fatal("invalid")
	}
}

// Clusters of three (replicas 3, write quorum 2) under each fault.
func TestScenarioClusterKill(t *testing.T) {
	res := scenario(t, Config{Nodes: 3, Nemesis: []string{"kill"}, Workload: Stash})
	if !res.Valid {
		t.Fatal("invalid")
	}
}

func TestScenarioPause(t *testing.T) {
	res := scenario(t, Config{Nodes: 3, Nemesis: []string{"pause"}, Workload: Register})
	if !res.Valid {
		t.Fatal("invalid")
	}
}

func TestScenarioPartition(t *testing.T) {
	res := scenario(t, Config{Nodes: 3, Nemesis: []string{"partition"}, Workload: Register})
	if !res.Valid {
		t.Fatal("invalid")
	}
}

func TestScenarioRolling(t *testing.T) {
	res := scenario(t, Config{Nodes: 3, Nemesis: []string{"rolling"}, Workload: Stash})
	if !res.Valid {
		t.Fatal("invalid")
	}
}

// Clock skews of seconds to hours on a node must not lose or resurrect
// anything (the stash workload's TTL outlasts every offset).
func TestScenarioClock(t *testing.T) {
	res := scenario(t, Config{Nemesis: []string{"clock"}, Workload: Stash})
	if !res.Valid {
		t.Fatal("invalid")
	}
}

// Membership on three nodes: a fourth joins, then one of the four is
// removed for good (SIGTERM; its places move after the 10 s down grace),
// and clients on it move to the others.
func TestScenarioMembership(t *testing.T) {
	res := scenario(t, Config{Nodes: 3, Nemesis: []string{"membership"}, Workload: Stash, Time: 25 * time.Second})
	var added, removed bool
	for _, w := range res.Windows {
		if strings.Contains(w.Label, "failed") {
			t.Errorf("fault window %q", w.Label)
		}
		added = added || strings.HasPrefix(w.Label, "add ")
		removed = removed || strings.HasPrefix(w.Label, "remove ")
	}
	if !added || !removed {
		t.Errorf("want a node added and one removed, got %+v", res.Windows)
	}
	if !res.Valid {
		t.Fatal("invalid")
	}
}

// The harness must be able to fail: with --fsync batch a SIGKILL loses the
// writes acknowledged in the last few milliseconds. A lost write may be a
// DEL, which the checker reports as a resurrected key.
func TestScenarioUnsafeKillLosesWrites(t *testing.T) {
	res := scenario(t, Config{Nemesis: []string{"kill"}, Workload: Stash, Interval: 2 * time.Second, Rate: 2000, NodeArgs: []string{"--fsync", "batch"}})
	if res.Valid || res.Counts.Lost+res.Counts.Stale+res.Counts.Resurrected == 0 {
		t.Fatalf("an unsafe configuration came out valid: %+v", res.Counts)
	}
}

// And in a cluster: acknowledging before the backups have a write
// (--replication async --write-quorum 1) loses writes when primaries are
// killed.
func TestScenarioClusterAsyncLosesWrites(t *testing.T) {
	res := scenario(t, Config{Nodes: 3, Nemesis: []string{"kill"}, Workload: Stash, Time: 30 * time.Second, Interval: 2 * time.Second, Rate: 3000,
		NodeArgs: []string{"--replication", "async", "--write-quorum", "1"}})
	if res.Valid || res.Counts.Lost+res.Counts.Stale+res.Counts.Resurrected == 0 {
		t.Fatalf("an unsafe configuration came out valid: %+v", res.Counts)
	}
}

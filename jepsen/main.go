// Command jepsen runs Stash's fault-injection harness: real stashnode
// processes in their own network namespaces, a concurrent workload, faults
// injected and healed, and the recorded history checked. See README.md.
//
//	go run ./jepsen --nodes 1 --time 60s --nemesis kill,pause --workload register --out out/
//
// It exits 0 only when every checker passes, 1 when a checker fails, 2 on
// a usage error, 3 when the harness could not run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stashcluster/stash/jepsen/harness"
)

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func main() {
	var cfg harness.Config
	var nemesis, nodeArgs string
	fs := flag.NewFlagSet("jepsen", flag.ContinueOnError)
	fs.IntVar(&cfg.Nodes, "nodes", 1, "number of stashnode processes, each in its own network namespace")
	fs.DurationVar(&cfg.Time, "time", 60*time.Second, "how long the workload runs")
	fs.StringVar(&nemesis, "nemesis", "", "comma-separated faults: "+strings.Join(harness.Nemeses, ", ")+" (empty: none)")
	fs.DurationVar(&cfg.Interval, "interval", 5*time.Second, "quiet time before each fault, and how long each fault is held")
	fs.StringVar(&cfg.Workload, "workload", harness.Register, "register (linearizability) or stash (lost/stale/resurrected)")
	fs.IntVar(&cfg.Replicas, "replicas", 3, "replicas per slot, passed to stashnode when --nodes > 1")
	fs.StringVar(&nodeArgs, "node-args", "", `extra flags for every stashnode, e.g. "--fsync always"`)
	fs.StringVar(&cfg.Out, "out", "jepsen-out", "directory for history.jsonl, results.json, report.html and node logs")
	fs.IntVar(&cfg.Concurrency, "concurrency", 10, "concurrent clients")
	fs.Float64Var(&cfg.Rate, "rate", 500, "target operations per second, all clients together")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Second, "client timeout per operation (a write that times out is indeterminate)")
	fs.StringVar(&cfg.Bin, "bin", "", "stashnode binary to use instead of building ./cmd/stashnode")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed for fault choices (0: from the clock)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	for _, n := range strings.Split(nemesis, ",") {
		if n = strings.TrimSpace(n); n != "" {
			cfg.Nemesis = append(cfg.Nemesis, n)
		}
	}
	cfg.NodeArgs = strings.Fields(nodeArgs)
	cfg.Log = os.Stderr
	redis.SetLogger(quiet{}) // connection errors are in the history; don't flood the terminal

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := harness.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		if res == nil {
			switch {
			case errors.Is(err, harness.ErrUnsupported):
				os.Exit(3)
			case errors.Is(err, harness.ErrConfig):
				os.Exit(2)
			}
			os.Exit(3)
		}
	}
	fmt.Printf("\nresults in %s (report.html, results.json, history.jsonl)\n", cfg.Out)
	fmt.Print(res.Summary())
	if !res.Valid {
		os.Exit(1)
	}
}

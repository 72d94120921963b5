package harness

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config is one run. The zero value of every field but Out has a default.
type Config struct {
	Nodes       int           // stashnode processes; default 1
	Time        time.Duration // how long the workload runs; default 60s
	Nemesis     []string      // names from Nemeses; empty: none
	Interval    time.Duration // quiet time between faults and how long each is held; default 5s
	Workload    string        // Register or Stash; default Register
	Replicas    int           // passed as --replicas when Nodes > 1; default 3
	NodeArgs    []string      // extra flags for every stashnode
	Out         string        // directory for history.jsonl, results.json, report.html, node logs
	Concurrency int           // clients; default 10
	Rate        float64       // target operations per second, all clients together; default 500
	Timeout     time.Duration // client timeout per operation; default 1s
	Bin         string        // stashnode binary; empty: built from Source
	Source      string        // module root to build ./cmd/stashnode in; empty: found with `go env GOMOD`
	Seed        uint64        // nemesis randomness; 0: from the clock
	Log         io.Writer     // progress lines; nil: discarded
}

func (c *Config) defaults() error {
	if c.Nodes == 0 {
		c.Nodes = 1
	}
	if c.Time == 0 {
		c.Time = 60 * time.Second
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.Workload == "" {
		c.Workload = Register
	}
	if c.Replicas == 0 {
		c.Replicas = 3
	}
	if c.Concurrency == 0 {
		c.Concurrency = 10
	}
	if c.Rate == 0 {
		c.Rate = 500
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	var errs []error
	if c.Out == "" {
		errs = append(errs, errors.New("Out: an output directory is required"))
	}
	if c.Nodes < 1 || c.Nodes > 200 {
		errs = append(errs, fmt.Errorf("Nodes: %d not in 1..200", c.Nodes))
	}
	if c.Workload != Register && c.Workload != Stash {
		errs = append(errs, fmt.Errorf("Workload: %q is not %s or %s", c.Workload, Register, Stash))
	}
	for _, n := range c.Nemesis {
		if !slices.Contains(Nemeses, n) {
			msg := fmt.Sprintf("Nemesis: %q unknown (known: %s)", n, strings.Join(Nemeses, ", "))
			if n == "clock" {
				msg += "; clock needs a --fault-hooks flag in stashnode, which does not exist yet"
			}
			errs = append(errs, errors.New(msg))
		}
	}
	if slices.Contains(c.Nemesis, "membership") && c.Nodes < 3 {
		errs = append(errs, fmt.Errorf("Nemesis: membership needs at least 3 nodes (it never goes below 3), not %d", c.Nodes))
	}
	if slices.Contains(c.Nemesis, "latency") && c.Nodes < 2 {
		errs = append(errs, errors.New("Nemesis: latency delays links between nodes and needs at least 2"))
	}
	if c.Rate < 0 || c.Concurrency < 1 {
		errs = append(errs, errors.New("Rate and Concurrency must be positive"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}

// MembershipDownGrace is the --down-grace the harness gives the nodes when
// the membership nemesis is on (unless NodeArgs sets one): a removed node's
// replica places move to the others only after it.
const MembershipDownGrace = 10 * time.Second

// ErrConfig marks an invalid Config.
var ErrConfig = errors.New("invalid jepsen config")

// Counts are results.json's tallies.
type Counts struct {
	Ops         int `json:"ops"`
	OK          int `json:"ok"`
	Fail        int `json:"fail"`
	Info        int `json:"info"`
	Lost        int `json:"lost"`
	Stale       int `json:"stale"`
	Resurrected int `json:"resurrected"`
}

// Results is results.json.
type Results struct {
	Valid             bool                     `json:"valid"`
	Workload          string                   `json:"workload"`
	Nodes             int                      `json:"nodes"`
	Nemesis           []string                 `json:"nemesis"`
	NodeArgs          []string                 `json:"node_args,omitempty"`
	Seconds           float64                  `json:"seconds"`
	Counts            Counts                   `json:"counts"`
	Checkers          map[string]CheckerResult `json:"checkers"`
	Windows           []Window                 `json:"fault_windows"`
	QuietAvailability float64                  `json:"quiet_availability"` // outside every fault window
	Availability      float64                  `json:"availability"`       // whole run
}

// Run performs one run: build, hosts, nodes, workload and nemesis,
// checks, and the files in cfg.Out. Everything it creates outside Out is
// removed before it returns, also when ctx is cancelled. The error is
// about the harness; the verdict is Results.Valid.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	logf := func(f string, a ...any) { fmt.Fprintf(cfg.Log, "jepsen: "+f+"\n", a...) }
	if err := Prereqs(); err != nil {
		return nil, err
	}
	for _, c := range CleanLeftovers(ctx) {
		logf("removed leftover %s", c)
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", Prefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	bin := cfg.Bin
	if bin == "" {
		bin = filepath.Join(tmp, "stashnode")
		if err := build(ctx, cfg.Source, bin); err != nil {
			return nil, err
		}
	}
	nw, err := OpenNet(ctx, cfg.Nodes)
	if err != nil {
		return nil, err
	}
	defer nw.Close()
	secretFile := filepath.Join(tmp, "secret")
	secret := make([]byte, 24)
	crand.Read(secret)
	if err := os.WriteFile(secretFile, []byte(hex.EncodeToString(secret)), 0o600); err != nil {
		return nil, err
	}
	nodeExtra := cfg.NodeArgs
	if slices.Contains(cfg.Nemesis, "clock") {
		nodeExtra = append([]string{"--fault-hooks"}, nodeExtra...)
	}
	if slices.Contains(cfg.Nemesis, "membership") && !slices.ContainsFunc(cfg.NodeArgs, func(a string) bool { return strings.HasPrefix(strings.TrimLeft(a, "-"), "down-grace") }) {
		// A removed node's places move only after the down grace.
		nodeExtra = append([]string{"--down-grace", MembershipDownGrace.String()}, nodeExtra...)
	}
	var proxy *Proxy
	if slices.Contains(cfg.Nemesis, "latency") {
		proxy = NewProxy(nw)
		defer proxy.Close()
	}
	mkNode := func(h Host, peers []Host, expect int) *Node {
		dir := filepath.Join(tmp, h.Name)
		return &Node{Host: h, Bin: bin, DataDir: dir, nw: nw,
			LogPath: filepath.Join(cfg.Out, h.Name+".log"),
			Args:    nodeArgs(h, peers, expect, dir, secretFile, cfg.Replicas, nodeExtra)}
	}
	var nodes []*Node
	hosts := nw.Hosts()
	for _, h := range hosts {
		var peers []Host
		for _, o := range hosts {
			if o.Name != h.Name {
				peers = append(peers, o)
			}
		}
		nodes = append(nodes, mkNode(h, peers, len(hosts)))
	}
	fl := newFleet(nodes)
	defer func() {
		for _, n := range fl.All() {
			n.Stop(5 * time.Second)
		}
	}()
	for _, n := range nodes {
		os.Remove(n.LogPath)
		if proxy != nil {
			if err := proxy.Install(ctx, n.Host); err != nil {
				return nil, err
			}
		}
		if err := n.Start(); err != nil {
			return nil, err
		}
	}
	// spawn makes a node on a new host that joins members (no
	// --bootstrap-expect: it waits to be added by the leader).
	spawn := func(ctx context.Context, members []*Node) (*Node, error) {
		h, err := nw.AddHost(ctx)
		if err != nil {
			return nil, err
		}
		if proxy != nil {
			if err := proxy.Install(ctx, h); err != nil {
				return nil, err
			}
		}
		var peers []Host
		for _, m := range members {
			peers = append(peers, m.Host)
		}
		n := mkNode(h, peers, 0)
		os.Remove(n.LogPath)
		return n, nil
	}
	readyCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.WaitReady(readyCtx); err != nil {
			return nil, err
		}
	}
	logf("%d node(s) ready: %s", len(nodes), names(nodes))

	hf, err := os.Create(filepath.Join(cfg.Out, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	defer hf.Close()
	rec := NewRecorder(hf)
	g := &gen{workload: cfg.Workload}
	wctx, wcancel := context.WithTimeout(ctx, cfg.Time)
	defer wcancel()
	var windows []Window
	nemDone := make(chan struct{})
	go func() {
		defer close(nemDone)
		if len(cfg.Nemesis) == 0 {
			return
		}
		m := &nemesis{nw: nw, fleet: fl, size: cfg.Nodes, proxy: proxy, spawn: spawn, r: rand.New(rand.NewPCG(cfg.Seed, 1)), log: logf}
		windows = m.schedule(wctx, rec, cfg.Nemesis, cfg.Interval)
	}()
	logf("workload %s, %d clients, %s, nemesis %v", cfg.Workload, cfg.Concurrency, cfg.Time, cfg.Nemesis)
	runClients(wctx, fl, nw, rec, g, cfg.Concurrency, cfg.Rate, cfg.Timeout)
	<-nemDone
	if ctx.Err() != nil {
		rec.Flush()
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	// Everything healed: make sure every member is back before the final reads.
	for _, n := range fl.Members() {
		if gone, _, _ := n.exitInfo(); gone {
			n.Start()
		}
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := n.WaitReady(rctx)
		cancel()
		if err != nil {
			logf("%s not ready for the final reads: %v", n.Name, err)
		}
	}
	if proxy != nil {
		logf("latency proxy forwarded %d cluster connections", proxy.Served())
	}
	logf("final reads")
	finalReads(ctx, fl.Members(), nw, rec, g, cfg.Timeout)
	if err := rec.Flush(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	res := Check(rec.Events(), windows, cfg, cfg.Out)
	if err := writeJSON(filepath.Join(cfg.Out, "results.json"), res); err != nil {
		return res, err
	}
	if err := WriteReport(filepath.Join(cfg.Out, "report.html"), rec.Events(), res); err != nil {
		return res, err
	}
	return res, nil
}

func build(ctx context.Context, src, out string) error {
	if src == "" {
		b, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(b)) == "" || strings.TrimSpace(string(b)) == os.DevNull {
			return fmt.Errorf("cannot find the stash module (run inside it or give Source): %v", err)
		}
		src = filepath.Dir(strings.TrimSpace(string(b)))
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/stashnode")
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building stashnode: %v\n%s", err, b)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Check runs the checkers over a history and computes counts and
// availability. visDir receives porcupine visualisations.
func Check(h []Event, windows []Window, cfg Config, visDir string) *Results {
	res := &Results{Workload: cfg.Workload, Nodes: cfg.Nodes, Nemesis: cfg.Nemesis, NodeArgs: cfg.NodeArgs, Checkers: map[string]CheckerResult{}}
	if len(h) > 0 {
		res.Seconds = float64(h[len(h)-1].Time) / 1e9
	}
	ops := Pair(h)
	for _, o := range ops {
		res.Counts.Ops++
		switch o.Status() {
		case OK:
			res.Counts.OK++
		case Fail:
			res.Counts.Fail++
		default:
			res.Counts.Info++
		}
	}
	// Lost, stale and resurrected apply to both workloads (values are unique).
	sc, n := CheckStash(h)
	res.Checkers[sc.Name] = sc
	res.Counts.Lost, res.Counts.Stale, res.Counts.Resurrected = n.Lost, n.Stale, n.Resurrected
	if cfg.Workload == Register {
		lc := CheckRegister(h, visDir, 30*time.Second)
		res.Checkers[lc.Name] = lc
	}
	// Availability: operations invoked in each window.
	in := func(o Op, w Window) bool { return o.Inv.Time >= w.Start && o.Inv.Time <= w.End }
	quiet, quietOK := 0, 0
	for i := range windows {
		w := &windows[i]
		for _, o := range ops {
			if in(o, *w) {
				w.Ops++
				if o.Status() == OK {
					w.OK++
				}
			}
		}
		w.Avail = ratio(w.OK, w.Ops)
	}
	for _, o := range ops {
		if !slices.ContainsFunc(windows, func(w Window) bool { return in(o, w) }) {
			quiet++
			if o.Status() == OK {
				quietOK++
			}
		}
	}
	res.Windows = windows
	if res.Windows == nil {
		res.Windows = []Window{}
	}
	res.QuietAvailability = ratio(quietOK, quiet)
	res.Availability = ratio(res.Counts.OK, res.Counts.Ops)
	res.Valid = true
	for _, c := range res.Checkers {
		res.Valid = res.Valid && c.Valid
	}
	return res
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// Summary is the human summary printed last.
func (r *Results) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "workload %s on %d node(s), nemesis %v, %.0fs\n", r.Workload, r.Nodes, r.Nemesis, r.Seconds)
	c := r.Counts
	fmt.Fprintf(&b, "ops %d: ok %d, fail %d, info %d; availability %.1f%% (quiet %.1f%%)\n", c.Ops, c.OK, c.Fail, c.Info, 100*r.Availability, 100*r.QuietAvailability)
	for _, w := range r.Windows {
		fmt.Fprintf(&b, "  fault %-45s %7s..%-7s ops %5d availability %5.1f%%\n", w.Label, dur(w.Start/1e6*1e6), dur(w.End/1e6*1e6), w.Ops, 100*w.Avail)
	}
	fmt.Fprintf(&b, "lost %d, stale %d, resurrected %d\n", c.Lost, c.Stale, c.Resurrected)
	names := make([]string, 0, len(r.Checkers))
	for n := range r.Checkers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		ch := r.Checkers[n]
		fmt.Fprintf(&b, "checker %-13s %s (%d keys, %d anomalies)%s\n", n, ch.Verdict, ch.Keys, ch.Count, noteOf(ch.Note))
		for i, a := range ch.Anomalies {
			if i == 3 {
				break
			}
			fmt.Fprintf(&b, "  %s %s: %s\n", a.Kind, a.Key, a.Text)
		}
	}
	if r.Valid {
		b.WriteString("VALID\n")
	} else {
		b.WriteString("INVALID\n")
	}
	return b.String()
}

func noteOf(s string) string {
	if s == "" {
		return ""
	}
	return "; " + s
}

package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Nemesis names accepted by --nemesis.
var Nemeses = []string{"kill", "pause", "partition", "rolling", "disk", "clock"}

// clockOffsets are the skews the clock nemesis gives a node: seconds to
// an hour either way. Expiry is absolute and decided by the node's clock,
// so a stash written while the clock is behind by d expires d early in
// real time (and one checked while it is ahead, d early too): every
// offset is kept well under the stash workload's 2h TTL so that a skew
// alone never expires an acknowledged stash within a run. An offset of
// the TTL's size does expire them — a real hazard of skewed clocks,
// documented in jepsen/README.md.
var clockOffsets = []time.Duration{-time.Hour, -10 * time.Minute, -30 * time.Second, 5 * time.Second, 90 * time.Second, 30 * time.Minute, time.Hour}

// Window is one fault, from injection to the end of its healing.
type Window struct {
	Nemesis string  `json:"nemesis"`
	Label   string  `json:"label"`
	Start   int64   `json:"start_ns"`
	End     int64   `json:"end_ns"`
	Ops     int     `json:"ops"`          // operations invoked inside the window
	OK      int     `json:"ok"`           // of which succeeded
	Avail   float64 `json:"availability"` // OK / Ops (1 when no ops)
}

// fault is an injected fault; heal undoes it (for kill: restart and wait
// until ready).
type fault struct {
	label string
	heal  func(context.Context) error
}

type nemesis struct {
	nw    *Net
	nodes []*Node
	r     *rand.Rand
	log   func(string, ...any)
}

func (m *nemesis) pick() *Node { return m.nodes[m.r.IntN(len(m.nodes))] }

func (m *nemesis) restart(ctx context.Context, n *Node) error {
	if err := n.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return n.WaitReady(ctx)
}

// inject starts a fault of the named kind.
func (m *nemesis) inject(ctx context.Context, name string) (fault, error) {
	switch name {
	case "kill":
		n := m.pick()
		n.Kill()
		return fault{"kill " + n.Name, func(ctx context.Context) error { return m.restart(ctx, n) }}, nil
	case "disk":
		n := m.pick()
		n.Kill()
		if err := n.WipeData(); err != nil {
			return fault{}, err
		}
		return fault{"disk " + n.Name, func(ctx context.Context) error { return m.restart(ctx, n) }}, nil
	case "pause":
		n := m.pick()
		if err := n.Signal(syscall.SIGSTOP); err != nil {
			return fault{}, err
		}
		return fault{"pause " + n.Name, func(context.Context) error { return n.Signal(syscall.SIGCONT) }}, nil
	case "partition":
		shape, grudge := m.grudge()
		if err := m.partition(ctx, grudge); err != nil {
			m.healNet(context.Background())
			return fault{}, err
		}
		return fault{"partition " + shape, m.healNet}, nil
	case "clock":
		n := m.pick()
		d := clockOffsets[m.r.IntN(len(clockOffsets))]
		if err := n.SetClock(ctx, d); err != nil {
			return fault{}, err
		}
		return fault{fmt.Sprintf("clock %s %+v", n.Name, d), func(ctx context.Context) error { return n.SetClock(ctx, 0) }}, nil
	case "rolling":
		// The fault is the whole roll: each node in turn gets SIGTERM, is
		// restarted on its data dir, and must pass /readyz before the next.
		start := time.Now()
		for _, n := range m.nodes {
			n.Stop(60 * time.Second)
			if err := m.restart(ctx, n); err != nil {
				return fault{}, err
			}
		}
		return fault{fmt.Sprintf("rolling restart (%s)", time.Since(start).Round(time.Millisecond)), nil}, nil
	}
	return fault{}, fmt.Errorf("unknown nemesis %q", name)
}

// grudge chooses a partition shape: for each node, the addresses whose
// packets it drops. With one node there is no one to split it from but
// the clients, so it is isolated from them.
func (m *nemesis) grudge() (string, map[*Node][]string) {
	g := map[*Node][]string{}
	ns := m.nodes
	N := len(ns)
	cut := func(a, b *Node) { g[a] = append(g[a], b.IP) }
	if N == 1 {
		g[ns[0]] = []string{HarnessIP}
		return "isolated from clients " + ns[0].Name, g
	}
	perm := m.r.Perm(N)
	shuffled := make([]*Node, N)
	for i, p := range perm {
		shuffled[i] = ns[p]
	}
	switch shapes := []string{"isolated", "halves", "ring", "one-way"}; shapes[m.r.IntN(len(shapes))] {
	case "isolated":
		a := shuffled[0]
		for _, b := range shuffled[1:] {
			cut(a, b)
			cut(b, a)
		}
		return "isolated " + a.Name, g
	case "halves":
		k := N / 2
		for _, a := range shuffled[:k] {
			for _, b := range shuffled[k:] {
				cut(a, b)
				cut(b, a)
			}
		}
		return fmt.Sprintf("halves %s | %s", names(shuffled[:k]), names(shuffled[k:])), g
	case "ring":
		// Every node sees a majority (itself and its neighbours), no two
		// nodes the same one.
		d := (N/2 + 1) / 2
		for i, a := range shuffled {
			for j, b := range shuffled {
				dist := min((i-j+N)%N, (j-i+N)%N)
				if dist > d {
					cut(a, b)
				}
			}
		}
		return "majorities ring " + names(shuffled), g
	default:
		a := shuffled[0]
		for _, b := range shuffled[1:] {
			cut(a, b) // a hears no one; everyone hears a
		}
		return "one-way: " + a.Name + " hears no one", g
	}
}

func names(ns []*Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

func (m *nemesis) partition(ctx context.Context, g map[*Node][]string) error {
	for n, ips := range g {
		for _, ip := range ips {
			for _, proto := range []string{"tcp", "udp"} {
				if err := m.nw.IPTables(ctx, n.Host, "-A", "INPUT", "-s", ip, "-p", proto, "-j", "DROP"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (m *nemesis) healNet(ctx context.Context) error {
	var first error
	for _, n := range m.nodes {
		if err := m.nw.IPTables(ctx, n.Host, "-F", "INPUT"); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// schedule injects faults from names in turn: quiet for interval, fault
// held for interval, healed; until ctx ends. It returns the windows.
func (m *nemesis) schedule(ctx context.Context, rec *Recorder, names []string, interval time.Duration) []Window {
	var ws []Window
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return ws
		case <-time.After(interval):
		}
		name := names[i%len(names)]
		w := Window{Nemesis: name, Start: rec.Now()}
		rec.Note("nemesis", "start "+name)
		f, err := m.inject(ctx, name)
		if err != nil {
			m.log("nemesis %s failed: %v", name, err)
			w.Label = name + " (failed: " + err.Error() + ")"
		} else {
			w.Label = f.label
		}
		if f.heal != nil {
			select {
			case <-ctx.Done():
			case <-time.After(interval):
			}
			if err := f.heal(context.Background()); err != nil {
				m.log("heal %s failed: %v", f.label, err)
				w.Label += " (heal failed: " + err.Error() + ")"
			}
		}
		w.End = rec.Now()
		rec.Note("nemesis", "end "+w.Label)
		m.log("fault %-40s %s..%s", w.Label, dur(w.Start), dur(w.End))
		ws = append(ws, w)
	}
}

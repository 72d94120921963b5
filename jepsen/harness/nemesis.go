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
var Nemeses = []string{"kill", "pause", "partition", "rolling", "disk", "clock", "membership", "latency"}

// latencies are the one-way delays the latency nemesis adds to cluster
// links: far below the local failure detector's second, up to a good
// share of it.
var latencies = []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond}

// clockOffsets are the skews the clock nemesis gives a node: seconds to
// an hour either way. Expiry is absolute and decided by the node's clock,
// so a stash written while the clock is behind by d expires d early in
// real time (and one checked while it is ahead, d early too). The skews
// add up: a stash written during −1h on a node and checked there during
// a later +1h has lost 2h. The widest swing (2h) is kept well under the
// stash workload's TTL (stashTTL, 6h) so that skews alone never expire an
// acknowledged stash within a run; with a 2h TTL they did (44 stashes
// minted on a node at −1h expired when the same node went to +1h). A
// swing of the TTL's size is a real hazard of skewed clocks, documented
// in jepsen/README.md.
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
	fleet *fleet
	size  int    // the cluster's size at start (--nodes)
	proxy *Proxy // nil unless the latency nemesis is on
	// spawn makes (but does not start) a node on a new host that joins
	// the given members (membership nemesis).
	spawn func(ctx context.Context, members []*Node) (*Node, error)
	r     *rand.Rand
	log   func(string, ...any)
}

func (m *nemesis) pick() *Node {
	ns := m.fleet.Members()
	return ns[m.r.IntN(len(ns))]
}

// settle waits, up to a deadline, for the cluster to agree on its members.
func (m *nemesis) settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	return waitSettled(ctx, m.fleet.Members())
}

// membership adds a fresh node or removes one for good, keeping the
// cluster between size-1 and size+1 nodes and never below 3.
func (m *nemesis) membership(ctx context.Context) (fault, error) {
	ns := m.fleet.Members()
	lo, hi := max(3, m.size-1), m.size+1
	var grow bool
	switch {
	case len(ns) <= lo:
		grow = true
	case len(ns) >= hi:
		grow = false
	default:
		grow = m.r.IntN(2) == 0
	}
	if grow {
		n, err := m.spawn(ctx, ns)
		if err != nil {
			return fault{}, err
		}
		m.fleet.add(n)
		if err := m.restart(ctx, n); err != nil {
			n.Stop(10 * time.Second)
			return fault{}, fmt.Errorf("adding %s: %w", n.Name, err)
		}
		m.fleet.join(n) // clients may use it once it is ready
		return fault{"add " + n.Name, m.settle}, nil
	}
	n := ns[m.r.IntN(len(ns))]
	m.fleet.leave(n) // clients move off it before it stops
	n.Stop(60 * time.Second)
	return fault{"remove " + n.Name, m.settle}, nil
}

func (m *nemesis) restart(ctx context.Context, n *Node) error {
	n.rejoin(m.fleet.Members()) // the peers it started with may have been removed since
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
	case "membership":
		return m.membership(ctx)
	case "latency":
		d := latencies[m.r.IntN(len(latencies))]
		if m.r.IntN(2) == 0 {
			m.proxy.Set(d, "", 0)
			return fault{fmt.Sprintf("latency all links +%v", d), m.fastNet}, nil
		}
		n := m.pick()
		m.proxy.Set(0, n.IP, d)
		return fault{fmt.Sprintf("latency %s links +%v", n.Name, d), m.fastNet}, nil
	case "rolling":
		// The fault is the whole roll: each node in turn gets SIGTERM, is
		// restarted on its data dir, and must pass /readyz before the next.
		start := time.Now()
		for _, n := range m.fleet.Members() {
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
	ns := m.fleet.Members()
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

func (m *nemesis) fastNet(context.Context) error {
	m.proxy.Set(0, "", 0)
	return nil
}

func (m *nemesis) healNet(ctx context.Context) error {
	var first error
	for _, n := range m.fleet.All() {
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

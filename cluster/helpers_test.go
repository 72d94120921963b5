package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stashcluster/stash/internal/testlog"
	"github.com/stashcluster/stash/internal/testport"
	"github.com/stashcluster/stash/ring"
)

var testSecret = []byte("cluster-test-secret-0123456789")

// testLogger returns a logger shown only if the test fails (see
// internal/testlog).
func testLogger(tb testing.TB) *slog.Logger { return testlog.New(tb, "node logs") }

// freePort returns a port free for both TCP and UDP on 127.0.0.1, for
// memberlist, which binds both and cannot take a listener.
func freePort(tb testing.TB) int { return testport.Free(tb) }

// listen returns a TCP listener on 127.0.0.1:port (0: any).
func listen(tb testing.TB, port int) net.Listener {
	tb.Helper()
	var err error
	for range 50 { // a just-closed port may linger briefly
		var l net.Listener
		if l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal(err)
	return nil
}

// spec is a test node's identity; it survives restarts.
type spec struct {
	name        string
	gossipPort  int
	clusterPort int
	dataDir     string
}

func newSpec(tb testing.TB, name string, persistent bool) *spec {
	s := &spec{name: name, gossipPort: freePort(tb)}
	if persistent {
		s.dataDir = tb.TempDir()
	}
	return s
}

func (s *spec) gossipAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.gossipPort)) }

// config returns a fast local config for s. The first call picks the
// cluster port; later calls (restarts) reuse it.
func (s *spec) config(tb testing.TB, log *slog.Logger) Config {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.Name = s.name
	cfg.Secret = testSecret
	cfg.GossipPort = s.gossipPort
	if s.clusterPort == 0 { // below the ephemeral range, so a restart can bind it again
		s.clusterPort = freePort(tb)
	}
	ln := listen(tb, s.clusterPort)
	s.clusterPort = ln.Addr().(*net.TCPAddr).Port
	cfg.ClusterListener = ln
	cfg.DataDir = s.dataDir
	cfg.Profile = ProfileLocal
	cfg.Debounce = 100 * time.Millisecond
	cfg.DownGrace = time.Minute
	cfg.RESPAddr = "127.0.0.1:6380"
	cfg.Logger = log.With("test_node", s.name)
	return cfg
}

func ctxT(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// open starts a node and closes it at cleanup.
func open(tb testing.TB, cfg Config) *Node {
	tb.Helper()
	n, err := Open(ctxT(tb, 20*time.Second), cfg)
	if err != nil {
		tb.Fatalf("Open(%s): %v", cfg.Name, err)
	}
	tb.Cleanup(func() { n.Close() })
	return n
}

// waitFor polls cond until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// converged reports whether every node holds a table with exactly the
// given members and the same epoch, and returns that epoch.
func converged(nodes []*Node, members ...string) (uint64, bool) {
	var epoch uint64
	for i, n := range nodes {
		t := n.Table()
		if fmt.Sprint(t.Members()) != fmt.Sprint(ids(members...)) {
			return 0, false
		}
		if i == 0 {
			epoch = t.Epoch()
		} else if t.Epoch() != epoch {
			return 0, false
		}
	}
	return epoch, true
}

func ids(names ...string) []ring.NodeID {
	out := make([]ring.NodeID, len(names))
	for i, n := range names {
		out[i] = ring.NodeID(n)
	}
	return out
}

// leaders returns the nodes that believe they lead.
func leaders(nodes []*Node) []*Node {
	var out []*Node
	for _, n := range nodes {
		if n.IsLeader() {
			out = append(out, n)
		}
	}
	return out
}

// primariesMoved counts slots whose primary differs between a and b.
func primariesMoved(a, b *ring.Table) int {
	k := 0
	for s := range ring.Slots {
		if a.Primary(uint16(s)) != b.Primary(uint16(s)) {
			k++
		}
	}
	return k
}

// placesOf counts the slots id replicates in t.
func placesOf(t *ring.Table, id string) int {
	k := 0
	for s := range ring.Slots {
		for _, r := range t.Replicas(uint16(s)) {
			if r == ring.NodeID(id) {
				k++
			}
		}
	}
	return k
}

func within(got, want int, frac float64) bool {
	d := float64(got - want)
	return d <= frac*float64(want) && -d <= frac*float64(want)
}

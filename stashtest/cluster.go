package stashtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stashcluster/stash"
	"github.com/stashcluster/stash/internal/testlog"
)

// Ports every member uses on its own host.
const (
	GossipPort  = 7946
	ClusterPort = 7380
)

// Secret is the cluster secret StartCluster gives every member unless
// Options.Configure changes it; tests decode tags with it (tag.NewCodec).
var Secret = []byte("stashtest-cluster-secret-0123456789")

// Options configures StartCluster. The zero value works.
type Options struct {
	// Network is the network the members run on. Default: a new one
	// (Cluster.Net).
	Network *Network
	// Replicas per slot. Default 3 (at most the number of members).
	Replicas int
	// Memory keeps members' data in memory only: a restarted member then
	// comes back empty, as a new member. Default: each member has a data
	// directory under the test's temporary directory, which Restart
	// reopens.
	Memory bool
	// Configure, if set, adjusts each member's configuration before it
	// opens (and reopens, in Restart).
	Configure func(cfg *stash.Config)
	// Logger receives every member's logs. Default: a buffer that is
	// written to the test log if the test fails (or always, when the
	// environment variable STASH_TEST_LOGS is set; STASH_TEST_DEBUG adds
	// debug lines).
	Logger *slog.Logger
}

// Cluster is a set of in-process Stash members on one Network.
type Cluster struct {
	// Net is the network the members run on: partition it, drop, delay.
	Net *Network
	// Members are in the order of their names, "n1", "n2", …; host ni
	// has the address 10.0.0.i when the network was new.
	Members []*Member

	tb testing.TB
}

// Member is one member of a Cluster: its host on the network and its
// node, which Kill closes and Restart opens again.
type Member struct {
	// Name is the member's name, its host's name on the Network and its
	// node's stash.Config.Name.
	Name string
	// Host is the member's host on the network.
	Host *Host

	cfg stash.Config
	tb  testing.TB

	mu   sync.Mutex // guards node
	node *stash.Node
}

// StartCluster starts n members ("n1" … "nn") on one network, forming a
// cluster together, and waits until every one is ready (its slots taken
// over and in sync) and all agree on the slot table; it fails tb if that
// takes more than 60 s. Members use the "local" cluster profile (failures
// detected in about a second). Their gossip and cluster ports are on the
// network; their client ports are on the OS loopback interface (port 0)
// and admin ports are off. Cleanup closes every member.
func StartCluster(tb testing.TB, n int, opts Options) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("stashtest: StartCluster with %d members", n)
	}
	log := opts.Logger
	if log == nil {
		log = testlog.New(tb, "member logs")
	}
	nw := opts.Network
	if nw == nil {
		nw = NewNetwork()
	}
	replicas := opts.Replicas
	if replicas == 0 {
		replicas = min(3, n)
	}
	c := &Cluster{Net: nw, tb: tb}
	var join []string
	for i := range n {
		h := nw.Host(fmt.Sprintf("n%d", i+1))
		join = append(join, h.Addr(GossipPort))
		c.Members = append(c.Members, &Member{Name: h.Name(), Host: h, tb: tb})
	}
	dir := ""
	if !opts.Memory {
		dir = tb.TempDir()
	}
	for _, m := range c.Members {
		cfg := stash.DefaultConfig()
		cfg.Name = m.Name
		cfg.Bind = "127.0.0.1"
		cfg.Advertise = m.Host.IP().String()
		cfg.Port, cfg.AdminPort = 0, -1
		cfg.GossipPort, cfg.ClusterPort = GossipPort, ClusterPort
		cfg.Join = join
		cfg.BootstrapExpect = min(n, 5)
		cfg.Replicas = replicas
		cfg.ClusterProfile = "local"
		cfg.Secret = Secret
		cfg.Network = m.Host
		cfg.Memory = opts.Memory
		if dir != "" {
			cfg.DataDir = filepath.Join(dir, m.Name)
		}
		cfg.ShutdownTimeout = 5 * time.Second
		cfg.DrainTimeout = 10 * time.Second
		cfg.Logger = log.With("member", m.Name)
		if opts.Configure != nil {
			opts.Configure(&cfg)
		}
		m.cfg = cfg
	}
	tb.Cleanup(func() {
		// A node cut off from its peers takes seconds to close (raft
		// waits out RPCs to them): heal first.
		nw.Heal()
		nw.SetDrop(0)
		nw.SetDelay(0)
		var wg sync.WaitGroup
		for _, m := range c.Members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.Kill()
			}()
		}
		wg.Wait()
	})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.open()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("stashtest: starting the cluster: %v", err)
	}
	c.WaitConverged(60 * time.Second)
	return c
}

// Member returns the member called name, or nil.
func (c *Cluster) Member(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Live returns the members whose node is open.
func (c *Cluster) Live() []*Member {
	var out []*Member
	for _, m := range c.Members {
		if m.Node() != nil {
			out = append(out, m)
		}
	}
	return out
}

// Converged reports whether the live members agree: each is ready, sees
// the same leader, every live member alive and the same slot table
// epoch. The reason says what is missing.
func (c *Cluster) Converged() (bool, string) {
	live := c.Live()
	if len(live) == 0 {
		return false, "no live member"
	}
	var names []string
	for _, m := range live {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	var epoch uint64
	var leader string
	for i, m := range live {
		st, ok := m.Status()
		if !ok {
			return false, m.Name + ": closed or not clustered"
		}
		if !st.Ready {
			return false, fmt.Sprintf("%s not ready: %s", m.Name, st.Reason)
		}
		var alive []string
		for _, mem := range st.Members {
			if mem.Alive {
				alive = append(alive, string(mem.Name))
			}
		}
		slices.Sort(alive)
		if !slices.Equal(alive, names) {
			return false, fmt.Sprintf("%s sees %v alive, want %v", m.Name, alive, names)
		}
		if st.Leader == "" {
			return false, m.Name + " knows no leader"
		}
		if i == 0 {
			epoch, leader = st.Epoch, string(st.Leader)
			continue
		}
		if st.Epoch != epoch || string(st.Leader) != leader {
			return false, fmt.Sprintf("%s: epoch %d, leader %s; %s: epoch %d, leader %s",
				live[0].Name, epoch, leader, m.Name, st.Epoch, st.Leader)
		}
	}
	return true, ""
}

// WaitConverged waits until Converged, polling, and fails the test if
// that takes longer than d.
func (c *Cluster) WaitConverged(d time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := c.Converged()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("stashtest: cluster not converged after %v: %s", d, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Leader returns the live member that leads the control plane as the
// first live member sees it, or nil.
func (c *Cluster) Leader() *Member {
	for _, m := range c.Live() {
		if st, ok := m.Status(); ok && st.Leader != "" {
			return c.Member(string(st.Leader))
		}
	}
	return nil
}

// Node returns the member's node, or nil while it is killed.
func (m *Member) Node() *stash.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}

// Status returns the member's view of the cluster; ok is false while it
// is killed.
func (m *Member) Status() (stash.ClusterStatus, bool) {
	n := m.Node()
	if n == nil {
		return stash.ClusterStatus{}, false
	}
	return n.ClusterStatus()
}

// Config returns a copy of the configuration the member opens with.
func (m *Member) Config() stash.Config { return m.cfg }

func (m *Member) open() error {
	n, err := stash.Open(context.Background(), m.cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", m.Name, err)
	}
	m.mu.Lock()
	m.node = n
	m.mu.Unlock()
	return nil
}

// Kill closes the member's node at once, as a crash would look to the
// others (no drain, no leave). Its host stays on the network. Killing a
// killed member does nothing. A member cut off from its peers may take
// several seconds to close: raft waits out its RPCs to them.
func (m *Member) Kill() {
	m.mu.Lock()
	n := m.node
	m.node = nil
	m.mu.Unlock()
	if n != nil {
		n.Close()
		m.Host.CloseConns()
	}
}

// Restart kills the member if it runs and opens its node again with the
// same configuration and data directory, at the same addresses. It does
// not wait for the node to be ready; see Cluster.WaitConverged.
func (m *Member) Restart() {
	m.tb.Helper()
	m.Kill()
	if err := m.open(); err != nil {
		m.tb.Fatalf("stashtest: restart: %v", err)
	}
}

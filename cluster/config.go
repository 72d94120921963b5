package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/stashcluster/stash/ring"
)

// Default ports.
const (
	DefaultGossipPort  = 7946
	DefaultClusterPort = 7380
)

// Timing profiles for Config.Profile.
const (
	// ProfileLAN suits a data-centre network: memberlist's LAN settings
	// (failure detected in about 5 s), raft's default timeouts (1 s).
	ProfileLAN = "lan"
	// ProfileLocal suits nodes on one machine (tests, demos): failures
	// detected in about 1 s, raft timeouts of 250 ms. On a real network it
	// causes false failure reports.
	ProfileLocal = "local"
)

// Limits on names and advertised strings, which travel in gossip meta
// (memberlist allows 512 bytes in all).
const (
	maxNameLen = 64
	maxAddrLen = 64
)

// Config configures a Node. Start from DefaultConfig; Open copies it and
// never changes the caller's value. All nodes of a cluster must agree on
// Secret, Replicas, MaxVoters, DownGrace and Profile.
type Config struct {
	// Name identifies the node in the cluster: the raft server ID, the
	// gossip name and the ring.NodeID in slot tables. Unique and stable
	// across restarts; 1 to 64 printable ASCII bytes without spaces.
	// Required.
	Name string
	// Zone is the node's failure domain (rack, availability zone); the
	// slot table puts a slot's replicas in distinct zones when it can.
	// Optional, at most 64 bytes.
	Zone string

	// BindAddr is the IP address the gossip and cluster ports listen on.
	// Default "127.0.0.1".
	BindAddr string
	// AdvertiseAddr is the IP address other nodes reach this one at.
	// Default: BindAddr, which must then not be unspecified (0.0.0.0).
	AdvertiseAddr string
	// GossipPort is the memberlist port (TCP and UDP). Default 7946; 0
	// picks a free port.
	GossipPort int
	// ClusterPort is the TCP port for raft and data streams (see
	// internal/transport). Default 7380; 0 picks a free port. Ignored
	// when ClusterListener is set.
	ClusterPort int
	// ClusterListener, if not nil, is used instead of listening on
	// BindAddr:ClusterPort. The Node owns it from Open on and closes it.
	ClusterListener net.Listener
	// Network, if not nil, carries all of the node's cluster traffic
	// instead of the operating system's network: the cluster port (unless
	// ClusterListener is set), the streams it dials to other nodes'
	// cluster ports (raft and data), and gossip (memberlist's packets and
	// streams). For tests and embedding; package stashtest has an
	// in-memory Network that can partition, drop and delay. Default nil.
	Network Network

	// Join lists gossip addresses of other nodes, "host:port" or "host"
	// (port 7946), where host is an IP address or a DNS name. Names are
	// re-resolved on every attempt, so a Kubernetes headless service
	// works; the list may include this node's own address. Empty: this
	// node only waits to be joined by others.
	Join []string
	// BootstrapExpect is the number of nodes that form a new cluster
	// together (all started with the same value and Join lists); they
	// become its first voters. 0 or 1 with an empty Join: a cluster of
	// one at once. 1 with a Join: a cluster of one that others join. 0
	// with a Join: never bootstrap, only join an existing cluster. At
	// most MaxVoters. A node that already has raft state never
	// bootstraps again. Default 0.
	BootstrapExpect int

	// Secret is the cluster secret, at least 16 bytes: the gossip
	// encryption key and the key that authenticates cluster-port streams
	// are both derived from it. Required.
	Secret []byte

	// DataDir holds raft's log, stable store and snapshots under
	// DataDir/raft. "" keeps them in memory (tests): a restart then
	// forgets the cluster and the node comes back as a new member.
	DataDir string

	// Replicas is the number of replicas per slot (primary included).
	// Default 3.
	Replicas int
	// MaxVoters bounds the raft voters; further nodes are non-voters.
	// Default 5.
	MaxVoters int
	// DownGrace is how long a failed node keeps its replica places (it
	// loses its primaries at once). After it, the node leaves the slot
	// table and, if it was a voter, a live non-voter replaces it. Default
	// 60s.
	DownGrace time.Duration
	// Debounce is how long the leader waits after a membership event for
	// more before it commits a new table; a burst is committed at most
	// 4×Debounce after its first event. Default 500ms.
	Debounce time.Duration

	// RESPAddr and AdminAddr are this node's client and admin addresses
	// (host:port), advertised to the cluster in gossip meta. Optional, at
	// most 64 bytes each.
	RESPAddr, AdminAddr string

	// Profile selects failure-detection and raft timings: ProfileLAN
	// (default) or ProfileLocal.
	Profile string

	// Logger receives the node's decisions and, adapted, memberlist's and
	// raft's logs. Nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in; Name and
// Secret are left for the caller.
func DefaultConfig() Config {
	return Config{
		BindAddr:    "127.0.0.1",
		GossipPort:  DefaultGossipPort,
		ClusterPort: DefaultClusterPort,
		Replicas:    3,
		MaxVoters:   5,
		DownGrace:   60 * time.Second,
		Debounce:    500 * time.Millisecond,
		Profile:     ProfileLAN,
	}
}

// Validate reports every problem with c at once, each naming its field;
// the error wraps ErrInvalidConfig. Zero values that have defaults are
// invalid here: start from DefaultConfig.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := checkName(c.Name); err != nil {
		bad("Name: %v", err)
	}
	if len(c.Zone) > maxNameLen {
		bad("Zone: %d bytes, at most %d", len(c.Zone), maxNameLen)
	}
	bind, err := netip.ParseAddr(c.BindAddr)
	if err != nil {
		bad("BindAddr: %q is not an IP address", c.BindAddr)
	}
	switch {
	case c.AdvertiseAddr != "":
		adv, err := netip.ParseAddr(c.AdvertiseAddr)
		if err != nil {
			bad("AdvertiseAddr: %q is not an IP address", c.AdvertiseAddr)
		} else if adv.IsUnspecified() {
			bad("AdvertiseAddr: %q is unspecified", c.AdvertiseAddr)
		}
	case bind.IsValid() && bind.IsUnspecified():
		bad("AdvertiseAddr: required when BindAddr is %q", c.BindAddr)
	}
	if c.GossipPort < 0 || c.GossipPort > 65535 {
		bad("GossipPort: %d out of range [0, 65535]", c.GossipPort)
	}
	if c.ClusterListener == nil && (c.ClusterPort < 0 || c.ClusterPort > 65535) {
		bad("ClusterPort: %d out of range [0, 65535]", c.ClusterPort)
	}
	for i, j := range c.Join {
		if j == "" {
			bad("Join[%d]: empty", i)
		}
	}
	if c.MaxVoters < 1 || c.MaxVoters > 9 {
		bad("MaxVoters: %d not in [1, 9]", c.MaxVoters)
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > max(c.MaxVoters, 1) {
		bad("BootstrapExpect: %d not in [0, MaxVoters=%d]", c.BootstrapExpect, c.MaxVoters)
	}
	if len(c.Secret) < 16 {
		bad("Secret: %d bytes, need at least 16", len(c.Secret))
	}
	if c.Replicas < 1 || c.Replicas > ring.MaxReplicas {
		bad("Replicas: %d not in [1, %d]", c.Replicas, ring.MaxReplicas)
	}
	if c.DownGrace < 0 {
		bad("DownGrace: %v is negative", c.DownGrace)
	}
	if c.Debounce < 0 {
		bad("Debounce: %v is negative", c.Debounce)
	}
	if len(c.RESPAddr) > maxAddrLen {
		bad("RESPAddr: %d bytes, at most %d", len(c.RESPAddr), maxAddrLen)
	}
	if len(c.AdminAddr) > maxAddrLen {
		bad("AdminAddr: %d bytes, at most %d", len(c.AdminAddr), maxAddrLen)
	}
	if c.Profile != ProfileLAN && c.Profile != ProfileLocal {
		bad("Profile: %q, want %q or %q", c.Profile, ProfileLAN, ProfileLocal)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

func checkName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("%d bytes, at most %d", len(s), maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return fmt.Errorf("%q: byte %d is not printable ASCII", s, i)
		}
	}
	return nil
}

// clone returns a copy of c that shares no slices with it, with the
// derived defaults filled in.
func (c Config) clone() Config {
	c.Join = slices.Clone(c.Join)
	c.Secret = slices.Clone(c.Secret)
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
	}
	return c
}

// timing is what a Profile decides.
type timing struct {
	probeInterval, probeTimeout time.Duration
	suspicionMult, suspMaxMult  int
	gossipInterval              time.Duration
	pushPull                    time.Duration
	tcpTimeout                  time.Duration
	toTheDead, reclaim          time.Duration

	heartbeat, election, leaderLease, commit time.Duration

	tick             time.Duration // control loop wake-up
	settle           time.Duration // bootstrap candidate set must hold this long
	joinMin, joinMax time.Duration // join retry backoff
	rejoin           time.Duration // re-join addresses not in the member list
	apply            time.Duration // raft Apply / config change timeout
	metaUpdate       time.Duration // wait for a gossip meta broadcast
}

func profileTiming(p string) timing {
	if p == ProfileLocal {
		return timing{
			probeInterval: 250 * time.Millisecond, probeTimeout: 150 * time.Millisecond,
			suspicionMult: 2, suspMaxMult: 2,
			gossipInterval: 50 * time.Millisecond, pushPull: 5 * time.Second,
			tcpTimeout: time.Second, toTheDead: 5 * time.Second, reclaim: time.Second,
			heartbeat: 300 * time.Millisecond, election: 300 * time.Millisecond,
			leaderLease: 150 * time.Millisecond, commit: 10 * time.Millisecond,
			tick: 100 * time.Millisecond, settle: 300 * time.Millisecond,
			joinMin: 50 * time.Millisecond, joinMax: time.Second, rejoin: 5 * time.Second,
			apply: 5 * time.Second, metaUpdate: time.Second,
		}
	}
	return timing{
		probeInterval: time.Second, probeTimeout: 500 * time.Millisecond,
		suspicionMult: 4, suspMaxMult: 6,
		gossipInterval: 200 * time.Millisecond, pushPull: 30 * time.Second,
		tcpTimeout: 10 * time.Second, toTheDead: 30 * time.Second, reclaim: 10 * time.Second,
		heartbeat: time.Second, election: time.Second,
		leaderLease: 500 * time.Millisecond, commit: 50 * time.Millisecond,
		tick: time.Second, settle: 2 * time.Second,
		joinMin: 500 * time.Millisecond, joinMax: 15 * time.Second, rejoin: 30 * time.Second,
		apply: 10 * time.Second, metaUpdate: 3 * time.Second,
	}
}

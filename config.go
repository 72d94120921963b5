package stash

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/stashcluster/stash/cluster"
)

// Fsync policies for Config.Fsync.
const (
	FsyncAlways = "always" // acknowledge a write after it is fsynced
	FsyncBatch  = "batch"  // acknowledge at once, fsync within 10 ms (default)
	FsyncNever  = "never"  // leave flushing to the operating system
)

// Config configures a Node. Start from DefaultConfig; Open copies it and
// never changes the caller's value.
type Config struct {
	// Name identifies the node in its cluster and in tags' node hints.
	// Default: the host name.
	Name string
	// Bind is the address the client, admin and cluster ports listen on.
	// Default "127.0.0.1".
	Bind string
	// Port is the Redis-protocol client port. Default 6380; 0 picks a free
	// port (see Node.Addr); -1 opens no client port (embedded use only).
	Port int
	// AdminPort is the HTTP admin port. Default 8380; 0 picks a free
	// port; -1 opens none.
	AdminPort int
	// GossipPort (memberlist, TCP and UDP) and ClusterPort (raft and
	// node-to-node data streams) are used in cluster mode. Defaults 7946
	// and 7380; 0 picks a free port.
	GossipPort, ClusterPort int
	// Advertise is the IP address other nodes reach this one at. Default:
	// Bind (which must then not be 0.0.0.0 in cluster mode).
	Advertise string
	// Join lists peers' gossip addresses (host:port or DNS names,
	// re-resolved while joining; this node's own address may be among
	// them). A non-empty Join, or BootstrapExpect ≥ 1, turns cluster mode
	// on; otherwise the node is a plain single node.
	Join []string
	// BootstrapExpect is how many nodes, started with the same Join list,
	// form a new cluster together (exactly one cluster forms, whatever the
	// start order). 1 with no Join: a cluster of one. 0 with a Join: only
	// join an existing cluster.
	BootstrapExpect int
	// Replicas is the number of copies of each slot (primary included).
	// Default 3. All nodes of a cluster must agree.
	Replicas int
	// WriteQuorum is W, the copies a write must reach before it is
	// acknowledged. 0 (default): a majority of Replicas.
	WriteQuorum int
	// Replication is "sync" (default: acknowledge after W copies) or
	// "async" (acknowledge once the primary has the write; a primary
	// failure can lose acknowledged writes — a latency-for-safety trade
	// some deployments and the fault-test harness want).
	Replication string
	// DownGrace is how long a failed node keeps its replica places before
	// they are given to other nodes (its primaries move at once). Default
	// 60s.
	DownGrace time.Duration
	// DropAfter is how long a node keeps its copy of a slot it stopped
	// replicating (the slot moved away, or the node came back after its
	// places were given to others) before deleting it, freeing the
	// memory and keeping keys deleted meanwhile from coming back should
	// the slot return. Default 5m; negative keeps copies until their
	// stashes expire.
	DropAfter time.Duration
	// ClusterRedirects answers commands for other nodes' slots with
	// -MOVED on every connection, as Redis Cluster does. Default off: a
	// node forwards them to the primary itself, so plain Redis clients
	// work; connections that sent READONLY, READWRITE or CLIENT CAPA
	// redirect get -MOVED anyway.
	ClusterRedirects bool
	// ClusterProfile selects failure-detection timings: "lan" (default;
	// failures detected in about 5 s) or "local" (about 1 s; for nodes on
	// one machine such as tests and demos, never across a real network).
	ClusterProfile string
	// Zone is this node's failure zone; a slot's replicas go to distinct
	// zones when there are enough.
	Zone string

	// DataDir holds the node's data (stash.db, tag-secret). Default
	// "./stash-data". Ignored when Memory is set.
	DataDir string
	// Memory keeps everything in memory only: nothing survives a restart.
	Memory bool
	// Fsync is the durability policy: "always", "batch" (default) or
	// "never".
	Fsync string
	// CheckpointBytes is how much write-ahead log (bytes) builds up before
	// a checkpoint moves it into stash.db; writers are held back while the
	// log exceeds twice this. A checkpoint rewrites every stash changed
	// since the last one, so a working set that is rewritten within one
	// costs a full rewrite each time: a larger value makes that rarer, at
	// the price of a longer replay after a crash (2.4–3.2 s per GiB of
	// 1 KiB records on a 2-core machine; storage's BenchmarkReplay).
	// Default 128 MiB; at least 1 MiB.
	CheckpointBytes int64

	// Password, when set, is required from clients (AUTH). Without one the
	// node only listens on loopback addresses unless ProtectedMode is
	// false.
	Password string
	// ProtectedMode refuses a non-loopback Bind without a Password.
	// Default true.
	ProtectedMode bool
	// Secret keys the tag MAC (and, with clustering, node-to-node
	// authentication). At least 16 bytes. Default: a random secret kept in
	// DataDir/tag-secret (created on first start), or a per-process random
	// one with Memory, in which case tags do not survive a restart.
	Secret []byte

	// MaxValueBytes bounds one value. Default 1 MiB.
	MaxValueBytes int
	// MaxRequestBytes bounds one client request. Default 8 MiB; it must
	// exceed MaxValueBytes.
	MaxRequestBytes int
	// MaxClients bounds concurrent client connections. Default 10000.
	MaxClients int
	// DefaultStashTTL is the lifetime of a stash created without a TTL
	// (STASH.PUT, Node.Put with ttl 0). Default 24h; 0 = no expiry.
	DefaultStashTTL time.Duration
	// DrainTimeout bounds how long a cluster member shutting down waits
	// for its primaries to move to their backups. Default 60s.
	DrainTimeout time.Duration
	// ShutdownTimeout bounds Shutdown's wait for in-flight requests.
	// Default 30s.
	ShutdownTimeout time.Duration

	// Pprof serves Go's profiler on the admin port under /debug/pprof/.
	// Default off.
	Pprof bool

	// FaultHooks turns on test-only fault injection on the admin port:
	// POST /v1/fault/clock?offset=<duration> shifts this node's clock (the
	// one expiry is decided by) by offset; offset=0 restores it. For fault
	// tests (jepsen/ clock nemesis); never turn it on in production.
	// Default off.
	FaultHooks bool

	// Network, if not nil, carries this member's cluster traffic (gossip,
	// raft, node-to-node data) instead of the operating system's network;
	// the client and admin ports stay on the OS network. For tests and
	// embedding: package stashtest provides an in-memory Network that can
	// partition, drop and delay, and starts whole clusters on it. Default
	// nil.
	Network cluster.Network

	// Logger receives the node's decisions. Nil discards.
	Logger *slog.Logger
	// Now is the node's clock, used for expiry. Default time.Now.
	Now func() time.Time
}

// DefaultConfig returns the configuration of a single node on loopback
// with the documented defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "stash"
	}
	return Config{
		Name:            host,
		Bind:            "127.0.0.1",
		Port:            6380,
		AdminPort:       8380,
		GossipPort:      7946,
		ClusterPort:     7380,
		Replicas:        3,
		Replication:     ReplicationSync,
		DownGrace:       60 * time.Second,
		DropAfter:       5 * time.Minute,
		ClusterProfile:  "lan",
		DataDir:         "./stash-data",
		Fsync:           FsyncBatch,
		CheckpointBytes: 128 << 20,
		ProtectedMode:   true,
		MaxValueBytes:   1 << 20,
		MaxRequestBytes: 8 << 20,
		MaxClients:      10000,
		DefaultStashTTL: 24 * time.Hour,
		ShutdownTimeout: 30 * time.Second,
		DrainTimeout:    60 * time.Second,
	}
}

// Validate reports every problem with c at once, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
	}
	if c.Name == "" {
		bad("Name", "must not be empty")
	}
	ip := net.ParseIP(c.Bind)
	if c.Bind == "" || (ip == nil && c.Bind != "localhost") {
		bad("Bind", "%q is not an IP address", c.Bind)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"Port", c.Port}, {"AdminPort", c.AdminPort}, {"GossipPort", c.GossipPort}, {"ClusterPort", c.ClusterPort}} {
		if p.v < -1 || p.v > 65535 {
			bad(p.name, "%d is not a port (0-65535, or -1 for none)", p.v)
		}
	}
	if c.Port > 0 && c.Port == c.AdminPort {
		bad("AdminPort", "must differ from Port (%d)", c.Port)
	}
	if c.Clustered() {
		if len(c.Secret) == 0 {
			bad("Secret", "cluster mode needs a secret shared by every node (--secret or --secret-file)")
		}
		if ip := net.ParseIP(c.Bind); c.Advertise == "" && ip != nil && ip.IsUnspecified() {
			bad("Advertise", "must be set when Bind is %s in cluster mode", c.Bind)
		}
		if c.Advertise != "" && net.ParseIP(c.Advertise) == nil {
			bad("Advertise", "%q is not an IP address", c.Advertise)
		}
		if c.Port < 0 {
			bad("Port", "cluster mode needs a client port (nodes forward to each other's)")
		}
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > 5 {
		bad("BootstrapExpect", "must be 0 to 5, got %d", c.BootstrapExpect)
	}
	if c.WriteQuorum < 0 || c.WriteQuorum > c.Replicas {
		bad("WriteQuorum", "must be 0 (majority) to Replicas (%d), got %d", c.Replicas, c.WriteQuorum)
	}
	switch c.Replication {
	case "", ReplicationSync, ReplicationAsync:
	default:
		bad("Replication", "%q is not sync or async", c.Replication)
	}
	switch c.ClusterProfile {
	case "", "lan", "local":
	default:
		bad("ClusterProfile", "%q is not lan or local", c.ClusterProfile)
	}
	if c.DownGrace < 0 {
		bad("DownGrace", "must not be negative")
	}
	if c.Replicas < 1 {
		bad("Replicas", "must be at least 1, got %d", c.Replicas)
	}
	if !c.Memory && c.DataDir == "" {
		bad("DataDir", "must be set unless Memory is")
	}
	switch c.Fsync {
	case FsyncAlways, FsyncBatch, FsyncNever:
	default:
		bad("Fsync", "%q is not one of always, batch, never", c.Fsync)
	}
	if c.CheckpointBytes < 1<<20 {
		bad("CheckpointBytes", "must be at least 1 MiB (1048576), got %d", c.CheckpointBytes)
	}
	if c.Password == "" && c.ProtectedMode && !isLoopback(c.Bind) && (c.Port >= 0) {
		bad("Bind", "refusing to serve clients on non-loopback address %s without a password (protected mode): set a password or turn protected mode off", c.Bind)
	}
	if c.Secret != nil && len(c.Secret) < 16 {
		bad("Secret", "must be at least 16 bytes, got %d", len(c.Secret))
	}
	if c.MaxValueBytes < 1 {
		bad("MaxValueBytes", "must be positive, got %d", c.MaxValueBytes)
	}
	if c.MaxRequestBytes <= c.MaxValueBytes {
		bad("MaxRequestBytes", "must exceed MaxValueBytes (%d), got %d", c.MaxValueBytes, c.MaxRequestBytes)
	}
	if c.MaxClients < 1 {
		bad("MaxClients", "must be positive, got %d", c.MaxClients)
	}
	if c.DefaultStashTTL < 0 {
		bad("DefaultStashTTL", "must not be negative")
	}
	if c.DrainTimeout < 0 {
		bad("DrainTimeout", "must not be negative")
	}
	if c.ShutdownTimeout <= 0 {
		bad("ShutdownTimeout", "must be positive")
	}
	return errors.Join(errs...)
}

// Replication modes.
const (
	ReplicationSync  = "sync"
	ReplicationAsync = "async"
)

// Clustered reports whether c runs a cluster member (Join or
// BootstrapExpect set) rather than a plain single node.
func (c Config) Clustered() bool { return len(c.Join) > 0 || c.BootstrapExpect > 0 }

func isLoopback(bind string) bool {
	if bind == "localhost" {
		return true
	}
	ip := net.ParseIP(bind)
	return ip != nil && ip.IsLoopback()
}

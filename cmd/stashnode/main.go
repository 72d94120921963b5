// Command stashnode runs one Stash node. With no flags it is a working
// single-node store on 127.0.0.1:6380 (admin on 8380) persisting to
// ./stash-data. Every flag can also be set as STASH_<NAME> in the
// environment (dashes become underscores: STASH_MAX_VALUE_BYTES); a flag
// on the command line wins over the environment.
//
//	stashnode [flags]      run a node
//	stashnode version      print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/stashcluster/stash"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintln(stdout, "stashnode", stash.Version)
			return 0
		case "status":
			return status(args[1:], stdout, stderr)
		case "drain":
			return drain(args[1:], stdout, stderr)
		case "help", "-h", "--help", "-help":
			fs, _ := flags(stderr)
			fs.SetOutput(stdout)
			usage(fs, stdout)
			return 0
		}
	}
	fs, o := flags(stderr)
	fs.Usage = func() { usage(fs, stderr) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "stashnode: unknown command %q (commands: version)\n", fs.Arg(0))
		return 2
	}
	if err := fromEnv(fs, os.LookupEnv); err != nil {
		fmt.Fprintln(stderr, "stashnode:", err)
		return 2
	}
	log, err := newLogger(o.logFormat, o.logLevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "stashnode:", err)
		return 2
	}
	cfg, err := o.config()
	if err != nil {
		fmt.Fprintln(stderr, "stashnode:", err)
		return 2
	}
	cfg.Logger = log
	if o.procs < 0 {
		fmt.Fprintf(stderr, "stashnode: --procs %d: want 0 (automatic) or more\n", o.procs)
		return 2
	}
	avail := runtime.GOMAXPROCS(0) // Go's default: the CPUs the process may use, cgroup limits honoured
	_, envSet := os.LookupEnv("GOMAXPROCS")
	procs, why := chooseProcs(o.procs, avail, envSet)
	runtime.GOMAXPROCS(procs)
	log.Info("CPU cores for Go code", "procs", procs, "available", avail, "cpus", runtime.NumCPU(), "why", why)
	defer runtime.KeepAlive(gcFloor())
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "stashnode: invalid configuration:")
		for _, e := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(stderr, "  -", strings.TrimPrefix(e, "stash: invalid config: "))
		}
		return 2
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	node, err := stash.Open(ctx, cfg)
	cancel()
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan error, 1)
	select {
	case s := <-sig:
		log.Info("signal received; shutting down gracefully (send it again to stop at once)", "signal", s.String())
		go func() { done <- node.Shutdown(context.Background()) }()
	case <-node.Done(): // drained over HTTP (POST /v1/drain); a signal may still hurry it
	}
	select {
	case <-node.Done():
		err = node.Close() // returns what the shutdown returned
	case err = <-done:
	case s := <-sig:
		log.Warn("second signal: closing now", "signal", s.String())
		err = node.Close()
	}
	if err != nil {
		log.Error("stopped with error", "err", err)
		return 1
	}
	return 0
}

// gcFloorBytes is the heap the garbage collector counts as live at the
// least. A node holding few stashes while it serves many writes (every
// value is a fresh allocation) would otherwise collect whenever its heap
// doubled from a few MiB: tens of collections a second. The floor costs
// no memory: the pages of a never-written allocation are not resident.
const gcFloorBytes = 64 << 20

// gcFloor allocates the floor; the caller keeps it alive. Under GOGC=100
// a collection then starts once at least gcFloorBytes more were
// allocated; a node whose stashes fill gigabytes hardly notices it.
func gcFloor() []byte { return make([]byte, gcFloorBytes) }

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, `Usage: stashnode [flags]
       stashnode status [--admin host:port] [--json]
       stashnode drain [--admin host:port] [--leave] [--timeout 5m] [--quiet]
       stashnode version

Runs a Stash node. Every flag may also be given as STASH_<NAME> in the
environment (e.g. STASH_PORT=6390, STASH_MAX_VALUE_BYTES=2097152).

Flags:
`)
	fs.PrintDefaults()
}

type options struct {
	name, bind                               string
	port, adminPort, gossipPort, clusterPort int
	dataDir                                  string
	memory                                   bool
	checkpointBytes                          int64
	fsync                                    string
	password                                 string
	protectedMode                            bool
	secret, secretFile                       string
	maxValueBytes, maxRequestBytes           int
	maxClients                               int
	stashTTL                                 time.Duration
	shutdownTimeout, drainTimeout            time.Duration
	join                                     string
	replicas                                 int
	zone                                     string
	advertise                                string
	bootstrapExpect, writeQuorum             int
	replication, clusterProfile              string
	downGrace, dropAfter                     time.Duration
	clusterRedirects                         bool
	logFormat, logLevel                      string
	pprof                                    bool
	faultHooks                               bool
	procs                                    int
}

func flags(stderr io.Writer) (*flag.FlagSet, *options) {
	d := stash.DefaultConfig()
	o := &options{}
	fs := flag.NewFlagSet("stashnode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.name, "name", d.Name, "node name, unique in the cluster (default: host name)")
	fs.StringVar(&o.bind, "bind", d.Bind, "IP address to listen on")
	fs.IntVar(&o.port, "port", d.Port, "Redis-protocol client port (0: any free port)")
	fs.IntVar(&o.adminPort, "admin-port", d.AdminPort, "HTTP admin port: /healthz /readyz /metrics /v1/node (-1: none)")
	fs.IntVar(&o.gossipPort, "gossip-port", d.GossipPort, "gossip port, TCP and UDP (cluster mode)")
	fs.IntVar(&o.clusterPort, "cluster-port", d.ClusterPort, "node-to-node port: raft and data streams (cluster mode)")
	fs.StringVar(&o.dataDir, "data-dir", d.DataDir, "directory for stash.db and tag-secret")
	fs.BoolVar(&o.memory, "memory", false, "keep everything in memory only (nothing survives a restart)")
	fs.StringVar(&o.fsync, "fsync", d.Fsync, "durability: always (fsync before the reply), batch (fsync within 10ms), never")
	fs.Int64Var(&o.checkpointBytes, "checkpoint-bytes", d.CheckpointBytes, "write-ahead log size, in bytes, that triggers a checkpoint into stash.db (larger: less rewriting of a hot working set, longer replay after a crash)")
	fs.StringVar(&o.password, "password", "", "require AUTH with this password; without it only loopback addresses are served")
	fs.BoolVar(&o.protectedMode, "protected-mode", d.ProtectedMode, "refuse a non-loopback --bind without --password")
	fs.StringVar(&o.secret, "secret", "", "cluster secret (>= 16 bytes) that signs tags; prefer --secret-file")
	fs.StringVar(&o.secretFile, "secret-file", "", "file holding the cluster secret (surrounding whitespace ignored)")
	fs.IntVar(&o.maxValueBytes, "max-value-bytes", d.MaxValueBytes, "largest value accepted, in bytes")
	fs.IntVar(&o.maxRequestBytes, "max-request-bytes", d.MaxRequestBytes, "largest client request, in bytes (must exceed --max-value-bytes)")
	fs.IntVar(&o.maxClients, "max-clients", d.MaxClients, "most concurrent client connections")
	fs.DurationVar(&o.stashTTL, "stash-ttl", d.DefaultStashTTL, "lifetime of a STASH.PUT without TTL (0: none)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", d.ShutdownTimeout, "how long a graceful shutdown waits for in-flight commands")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", d.DrainTimeout, "cluster mode: how long a shutdown waits for this node's primaries to move to their backups")
	fs.StringVar(&o.join, "join", "", "comma-separated gossip addresses (host:port or DNS names) of peers; turns cluster mode on")
	fs.IntVar(&o.bootstrapExpect, "bootstrap-expect", 0, "number of nodes that form a new cluster together (1 with no --join: a cluster of one)")
	fs.StringVar(&o.advertise, "advertise", "", "IP address other nodes reach this one at (default: --bind)")
	fs.IntVar(&o.replicas, "replicas", d.Replicas, "copies of each slot, primary included (cluster mode)")
	fs.IntVar(&o.writeQuorum, "write-quorum", 0, "copies a write must reach before it is acknowledged (0: majority of --replicas)")
	fs.StringVar(&o.replication, "replication", d.Replication, "sync (acknowledge after --write-quorum copies) or async (UNSAFE: acknowledge before backups have it)")
	fs.DurationVar(&o.downGrace, "down-grace", d.DownGrace, "how long a failed node keeps its replica places before they move")
	fs.DurationVar(&o.dropAfter, "drop-after", d.DropAfter, "how long a node keeps its copy of a slot it no longer replicates before deleting it (negative: until its stashes expire)")
	fs.BoolVar(&o.clusterRedirects, "cluster-redirects", false, "answer commands for other nodes' slots with -MOVED on every connection instead of forwarding them")
	fs.StringVar(&o.clusterProfile, "cluster-profile", d.ClusterProfile, "failure detection timings: lan (about 5 s) or local (about 1 s; one machine only)")
	fs.StringVar(&o.zone, "zone", "", "failure zone of this node; replicas go to distinct zones")
	fs.IntVar(&o.procs, "procs", 0, "most CPU cores the node runs Go code on at once (GOMAXPROCS); 0: automatic, one less than the CPUs available to the process (at least 1)")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go's profiler on the admin port under /debug/pprof/")
	fs.BoolVar(&o.faultHooks, "fault-hooks", false, "TEST ONLY: let the admin port shift this node's clock (POST /v1/fault/clock?offset=1h)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return fs, o
}

// fromEnv sets every flag not given on the command line from
// STASH_<NAME>, if present.
func fromEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "STASH_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func (o *options) config() (stash.Config, error) {
	c := stash.DefaultConfig()
	c.Name, c.Bind = o.name, o.bind
	c.Port, c.AdminPort, c.GossipPort, c.ClusterPort = o.port, o.adminPort, o.gossipPort, o.clusterPort
	c.DataDir, c.Memory, c.Fsync, c.CheckpointBytes = o.dataDir, o.memory, o.fsync, o.checkpointBytes
	c.Password, c.ProtectedMode = o.password, o.protectedMode
	c.MaxValueBytes, c.MaxRequestBytes, c.MaxClients = o.maxValueBytes, o.maxRequestBytes, o.maxClients
	c.DefaultStashTTL, c.ShutdownTimeout, c.DrainTimeout = o.stashTTL, o.shutdownTimeout, o.drainTimeout
	c.Replicas, c.Zone = o.replicas, o.zone
	c.Advertise, c.BootstrapExpect, c.WriteQuorum = o.advertise, o.bootstrapExpect, o.writeQuorum
	c.Replication, c.DownGrace, c.ClusterRedirects, c.ClusterProfile = o.replication, o.downGrace, o.clusterRedirects, o.clusterProfile
	c.DropAfter = o.dropAfter
	c.Pprof, c.FaultHooks = o.pprof, o.faultHooks
	for _, j := range strings.Split(o.join, ",") {
		if j = strings.TrimSpace(j); j != "" {
			c.Join = append(c.Join, j)
		}
	}
	switch {
	case o.secret != "" && o.secretFile != "":
		return c, errors.New("give --secret or --secret-file, not both")
	case o.secret != "":
		c.Secret = []byte(o.secret)
	case o.secretFile != "":
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return c, fmt.Errorf("--secret-file: %w", err)
		}
		c.Secret = []byte(strings.TrimSpace(string(b)))
		if len(c.Secret) == 0 {
			return c, fmt.Errorf("--secret-file: %s is empty", o.secretFile)
		}
	}
	return c, nil
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: %q is not text or json", format)
	}
}

// chooseProcs returns the GOMAXPROCS to run with, and why, given --procs
// and the CPUs available to the process. Automatic (0) leaves one core
// to the kernel's network stack and the node's neighbours: every request
// is mostly read and write system calls, and with as many Go threads as
// cores, Go's idle threads spin for work on the core the kernel and the
// clients need. On two cores one thread served unpipelined requests
// 5–30% faster (README, Performance); a node that needs every core for
// pipelined load says so with --procs. A GOMAXPROCS set in the
// environment is obeyed as Go obeys it.
func chooseProcs(flag, avail int, envSet bool) (int, string) {
	if flag > 0 {
		return flag, "--procs"
	}
	if envSet {
		return avail, "GOMAXPROCS in the environment"
	}
	if avail <= 1 {
		return 1, "one CPU available"
	}
	return avail - 1, "automatic: one CPU left to the kernel and other processes"
}

package stash

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stashcluster/stash/internal/stashops"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/server"
	"github.com/stashcluster/stash/storage"
	"github.com/stashcluster/stash/tag"
)

// Version is the Stash release this code is.
const Version = "0.1.0-dev"

// Store is the small interface an embedded Node and (later) a remote
// client share: put, set, get, touch and delete stashes by tag.
type Store interface {
	Put(ctx context.Context, value []byte, ttl time.Duration) (string, error)
	Set(ctx context.Context, tag string, value []byte, ttl time.Duration) error
	Get(ctx context.Context, tag string) ([]byte, error)
	Touch(ctx context.Context, tag string, ttl time.Duration) error
	Delete(ctx context.Context, tag string) error
}

var _ Store = (*Node)(nil)

// Node is one Stash node: storage, the Redis-protocol and admin front
// ends, and the Go API. Open starts it; Shutdown or Close stops it. All
// methods are safe for concurrent use.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *storage.Store
	ops   *stashops.Ops
	resp  *server.RESP
	admin *server.Admin
	start time.Time

	respLn, adminLn net.Listener
	wg              sync.WaitGroup // serve goroutines

	state    atomic.Int32 // stateServing, stateStopping, stateClosed
	skew     atomic.Int64 // clock offset in ns, set through the fault hook
	cl       *clusterPart // cluster mode only
	stopOnce sync.Once
	stopErr  error
	stopped  chan struct{} // closed once stop has finished
	// hurry ends a graceful stop under way: Close cancels it.
	hurryCtx context.Context
	hurry    context.CancelFunc
}

const (
	stateServing int32 = iota
	stateStopping
	stateClosed
)

// Open validates cfg, opens (and reloads) the store, and starts listening.
// ctx bounds the start-up only.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Join = append([]string(nil), cfg.Join...)
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{stopped: make(chan struct{}), log: log, start: time.Now()} // cfg is set below, once Now is final
	n.hurryCtx, n.hurry = context.WithCancel(context.Background())
	base := cfg.Now
	if base == nil {
		base = time.Now
	}
	cfg.Now = base
	if cfg.FaultHooks {
		cfg.Now = func() time.Time { return base().Add(time.Duration(n.skew.Load())) }
		log.Warn("fault hooks are on: the admin port can shift this node's clock (test use only)")
	}
	n.cfg = cfg

	secret, err := n.loadSecret()
	if err != nil {
		return nil, err
	}
	codec, err := tag.NewCodec(secret)
	if err != nil {
		return nil, fmt.Errorf("stash: %w", err)
	}

	metrics := server.NewMetrics(func() storage.Stats {
		if n.store == nil {
			return storage.Stats{}
		}
		return n.store.Stats()
	})
	scfg := storage.Config{
		Fsync:           map[string]storage.Fsync{FsyncAlways: storage.FsyncAlways, FsyncBatch: storage.FsyncBatch, FsyncNever: storage.FsyncNever}[cfg.Fsync],
		Now:             cfg.Now,
		Logger:          log.With("part", "storage"),
		CheckpointBytes: cfg.CheckpointBytes,
		ObserveFsync:    metrics.ObserveCommit,
	}
	if !cfg.Memory {
		scfg.Dir = cfg.DataDir
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	store, err := storage.Open(scfg)
	if err != nil {
		return nil, fmt.Errorf("stash: opening storage in %s: %w", cfg.DataDir, err)
	}
	n.store = store

	if cfg.Port >= 0 {
		if n.respLn, err = listen(ctx, cfg.Bind, cfg.Port); err != nil {
			store.Close()
			return nil, fmt.Errorf("stash: client port: %w", err)
		}
	}
	if cfg.AdminPort >= 0 {
		if n.adminLn, err = listen(ctx, cfg.Bind, cfg.AdminPort); err != nil {
			if n.respLn != nil {
				n.respLn.Close()
			}
			store.Close()
			return nil, fmt.Errorf("stash: admin port: %w", err)
		}
	}
	var kv server.KV = store
	var opsStore stashops.Store = store
	var router server.Router
	if cfg.Clustered() {
		if err := n.openCluster(ctx, secret); err != nil {
			n.closeListeners()
			store.Close()
			return nil, err
		}
		kv, opsStore, router = n.cl.rep.KV(), n.cl.rep.KV(), n.cl
	}

	n.ops = &stashops.Ops{
		Store:      opsStore,
		Codec:      codec,
		Hint:       tag.HintFor(cfg.Name),
		Slot:       ring.Slot,
		Now:        cfg.Now,
		MaxValue:   cfg.MaxValueBytes,
		DefaultTTL: cfg.DefaultStashTTL,
	}
	n.resp = server.NewRESP(server.Config{
		Password:         cfg.Password,
		MaxClients:       cfg.MaxClients,
		MaxValueBytes:    cfg.MaxValueBytes,
		MaxRequestBytes:  cfg.MaxRequestBytes,
		DefaultStashTTL:  cfg.DefaultStashTTL,
		NodeName:         cfg.Name,
		Version:          Version,
		Now:              cfg.Now,
		Router:           router,
		ClusterRedirects: cfg.ClusterRedirects,
		Logger:           log.With("part", "resp"),
	}, kv, n.ops, metrics)
	if n.cl != nil {
		n.ops.Accept = n.cl.rep.Serving
		n.cl.start()
		n.cl.registerMetrics(metrics.Registry)
	}
	n.admin = server.NewAdmin(server.AdminConfig{
		Ready:   n.ready,
		Node:    n.nodeInfo,
		Metrics: metrics,
		Pprof:   cfg.Pprof,
		Routes: func(mux *http.ServeMux) {
			n.clusterRoutes(mux)
			n.drainRoutes(mux)
			n.faultRoutes(mux)
		},
		Logger: log.With("part", "admin"),
	})

	if n.respLn != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.resp.Serve(n.respLn); err != nil && !errors.Is(err, server.ErrServerClosed) {
				log.Error("client port stopped", "err", err)
			}
		}()
	}
	if n.adminLn != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.admin.Serve(n.adminLn); err != nil {
				log.Error("admin port stopped", "err", err)
			}
		}()
	}
	if !cfg.Clustered() && (cfg.Zone != "" || cfg.Replicas != 3) {
		log.Warn("zone and replicas are inert on a single node (no --join or --bootstrap-expect)", "zone", cfg.Zone, "replicas", cfg.Replicas)
	}
	log.Info("stash node serving", "name", cfg.Name, "resp", n.Addr(), "admin", n.AdminAddr(), "version", Version)
	return n, nil
}

func (n *Node) closeListeners() {
	if n.respLn != nil {
		n.respLn.Close()
	}
	if n.adminLn != nil {
		n.adminLn.Close()
	}
}

func listen(ctx context.Context, host string, port int) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
}

// loadSecret returns the configured secret, or the one kept in the data
// directory (made on first start), or a per-process one for Memory.
func (n *Node) loadSecret() ([]byte, error) {
	if len(n.cfg.Secret) > 0 {
		return n.cfg.Secret, nil
	}
	fresh := func() ([]byte, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return b, nil
	}
	if n.cfg.Memory {
		n.log.Warn("no secret configured and memory-only: tags minted now will not verify after a restart")
		return fresh()
	}
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("stash: data dir: %w", err)
	}
	p := filepath.Join(n.cfg.DataDir, "tag-secret")
	b, err := os.ReadFile(p)
	if err == nil {
		if len(b) < 16 {
			return nil, fmt.Errorf("stash: %s holds %d bytes; a secret needs at least 16", p, len(b))
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("stash: reading secret: %w", err)
	}
	b, err = fresh()
	if err != nil {
		return nil, err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, fmt.Errorf("stash: writing secret: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return nil, fmt.Errorf("stash: writing secret: %w", err)
	}
	n.log.Info("generated a tag secret; give every node of a cluster the same one with --secret-file", "path", p)
	return b, nil
}

// Addr is the client port's address ("" when there is none).
func (n *Node) Addr() string {
	if n.respLn == nil {
		return ""
	}
	return n.respLn.Addr().String()
}

// AdminAddr is the admin port's address ("" when there is none).
func (n *Node) AdminAddr() string {
	if n.adminLn == nil {
		return ""
	}
	return n.adminLn.Addr().String()
}

func (n *Node) ready() (bool, string) {
	switch n.state.Load() {
	case stateServing:
		if n.cl != nil {
			if ok, why := n.cl.rep.Ready(); !ok {
				return false, why
			}
			if n.cl.holding.Load() {
				return false, "in sync; waiting to be given its primaries"
			}
		}
		return true, ""
	case stateStopping:
		return false, "shutting down"
	default:
		return false, "closed"
	}
}

func (n *Node) nodeInfo() any {
	st := n.store.Stats()
	state := map[int32]string{stateServing: "serving", stateStopping: "stopping", stateClosed: "closed"}[n.state.Load()]
	return map[string]any{
		"name":           n.cfg.Name,
		"version":        Version,
		"state":          state,
		"resp_addr":      n.Addr(),
		"admin_addr":     n.AdminAddr(),
		"data_dir":       map[bool]string{true: "", false: n.cfg.DataDir}[n.cfg.Memory],
		"memory_only":    n.cfg.Memory,
		"fsync":          n.cfg.Fsync,
		"uptime_seconds": int64(time.Since(n.start).Seconds()),
		"clients":        n.resp.Clients(),
		"stashes":        st.Stashes,
		"bytes":          st.Bytes,
		"expired":        st.Expired,
		"loaded":         st.Loaded,
		"load_seconds":   st.LoadedIn.Seconds(),
		"commits":        st.Commits,
		"cluster":        n.clusterInfo(),
	}
}

func (n *Node) clusterInfo() map[string]any {
	if n.cl == nil {
		return map[string]any{"enabled": false, "mode": "single node"}
	}
	st := n.cl.status()
	return map[string]any{"enabled": true, "mode": "cluster", "leader": st.Leader, "epoch": st.Epoch,
		"serving_slots": st.Serving, "waiting_slots": st.Waiting, "replication": n.cfg.Replication}
}

func (n *Node) live() error {
	if n.state.Load() == stateClosed {
		return ErrClosed
	}
	return nil
}

// Put stores value as a new stash and returns its tag. ttl 0 means
// Config.DefaultStashTTL.
func (n *Node) Put(ctx context.Context, value []byte, ttl time.Duration) (string, error) {
	if err := n.live(); err != nil {
		return "", err
	}
	t, err := n.ops.Put(ctx, value, ttl)
	if err != nil && n.cl != nil && errors.Is(err, tag.ErrExhausted) {
		// This node serves no slot right now: let a primary mint it.
		slot := uint16(mrand.IntN(ring.Slots))
		rep, ferr := n.cl.Forward(ctx, slot, 2, stashArgs("STASH.PUT", value, ttl))
		if ferr != nil {
			return "", forwardErr(ferr, true)
		}
		v, _, _, perr := parseReply(rep)
		return string(v), perr
	}
	return t, err
}

// Set replaces the value of the stash named by tag (creating it again if it
// expired). ttl 0 keeps its current expiry.
func (n *Node) Set(ctx context.Context, tag string, value []byte, ttl time.Duration) error {
	if err := n.live(); err != nil {
		return err
	}
	args := [][]byte{[]byte("STASH.SET"), []byte(tag), value}
	if ttl > 0 {
		args = append(args, []byte("TTL"), []byte(strconv.FormatInt(int64((ttl+time.Second-1)/time.Second), 10)))
	}
	if rep, ok, err := n.remote(ctx, tag, true, args...); ok {
		if err != nil {
			return err
		}
		_, _, _, err = parseReply(rep)
		return err
	}
	return n.ops.Set(ctx, tag, value, ttl)
}

// Get returns the stash's value, or ErrNotFound.
func (n *Node) Get(ctx context.Context, tag string) ([]byte, error) {
	if err := n.live(); err != nil {
		return nil, err
	}
	if rep, ok, err := n.remote(ctx, tag, false, []byte("STASH.GET"), []byte(tag)); ok {
		if err != nil {
			return nil, err
		}
		v, _, null, err := parseReply(rep)
		if err == nil && null {
			err = ErrNotFound
		}
		return v, err
	}
	return n.ops.Get(ctx, tag)
}

// Touch sets the stash's expiry to ttl from now (0: never expires).
func (n *Node) Touch(ctx context.Context, tag string, ttl time.Duration) error {
	if err := n.live(); err != nil {
		return err
	}
	if ttl >= 0 {
		secs := strconv.FormatInt(int64((ttl+time.Second-1)/time.Second), 10)
		if rep, ok, err := n.remote(ctx, tag, true, []byte("STASH.TOUCH"), []byte(tag), []byte(secs)); ok {
			return presence(rep, err)
		}
	}
	return n.ops.Touch(ctx, tag, ttl)
}

// Delete removes the stash; ErrNotFound if there was none.
func (n *Node) Delete(ctx context.Context, tag string) error {
	if err := n.live(); err != nil {
		return err
	}
	if rep, ok, err := n.remote(ctx, tag, true, []byte("STASH.DEL"), []byte(tag)); ok {
		return presence(rep, err)
	}
	return n.ops.Delete(ctx, tag)
}

// stashArgs builds a STASH.PUT/STASH.SET argument list after the tag.
func stashArgs(cmd string, value []byte, ttl time.Duration) [][]byte {
	args := [][]byte{[]byte(cmd), value}
	if ttl > 0 {
		args = append(args, []byte("TTL"), []byte(strconv.FormatInt(int64((ttl+time.Second-1)/time.Second), 10)))
	}
	return args
}

// presence turns a forwarded :1/:0 reply into nil/ErrNotFound.
func presence(rep []byte, err error) error {
	if err != nil {
		return err
	}
	_, n, _, err := parseReply(rep)
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	return err
}

// Shutdown stops the node gracefully: readiness turns red, the client
// port stops accepting, in-flight commands finish and are answered, every
// acknowledged write is flushed to disk, then everything closes. It is
// bounded by ctx and Config.ShutdownTimeout; afterwards every method
// returns ErrClosed. Safe to call more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	return n.stop(ctx, stopGraceful)
}

// Leave takes the node out of its cluster for good, then stops it as
// Shutdown does. It hands its primaries over, has the cluster give its
// replica places to other nodes, and waits (within Config.DrainTimeout)
// until each of its slots has its full replica count elsewhere: the way
// to shrink a cluster without running any slot short of copies. A
// single node just shuts down.
func (n *Node) Leave(ctx context.Context) error {
	return n.stop(ctx, stopLeave)
}

// How stop stops.
const (
	stopNow = iota
	stopGraceful
	stopLeave
)

// Close stops the node at once: connections are cut, pending writes are
// flushed, the store is closed. During a Shutdown (or a drain) it cuts
// the wait short and returns once that stop has flushed. Idempotent.
func (n *Node) Close() error {
	n.hurry()
	return n.stop(context.Background(), stopNow)
}

// Done is closed once the node has stopped, by Shutdown, Close or a
// drain requested over HTTP (POST /v1/drain). A program embedding a node
// waits on it to exit when an operator drained the node.
func (n *Node) Done() <-chan struct{} { return n.stopped }

func (n *Node) stop(ctx context.Context, how int) error {
	graceful := how != stopNow
	n.stopOnce.Do(func() {
		defer close(n.stopped)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(n.hurryCtx, cancel)()
		n.state.Store(stateStopping)
		var errs []error
		if graceful && n.cl != nil {
			// Leadership first: the table changes of the drain are
			// then committed by the next leader, and the others never
			// go without one.
			n.cl.cn.HandOverLeadership()
			dctx, cancel := context.WithTimeout(ctx, n.cfg.DrainTimeout)
			n.cl.handOff(dctx)
			if how == stopLeave {
				n.cl.depart(dctx)
			}
			cancel()
			n.cl.cn.HandOverLeadership() // in case an election during the drain gave it back
		}
		if graceful {
			n.log.Info("shutting down: finishing in-flight commands")
			ctx, cancel := context.WithTimeout(ctx, n.cfg.ShutdownTimeout)
			if err := n.resp.Shutdown(ctx); err != nil {
				n.log.Warn("shutdown timed out; closing remaining connections", "err", err)
			}
			cancel()
		} else {
			n.resp.Close()
		}
		n.state.Store(stateClosed)
		if n.cl != nil {
			if err := n.cl.close(how == stopLeave); err != nil {
				errs = append(errs, fmt.Errorf("stash: closing the cluster member: %w", err))
			}
		}
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stash: closing storage: %w", err))
		}
		actx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := n.admin.Shutdown(actx); err != nil {
			n.admin.Close()
		}
		cancel()
		n.wg.Wait()
		n.stopErr = errors.Join(errs...)
		n.log.Info("node stopped", "name", n.cfg.Name)
	})
	return n.stopErr
}

// faultRoutes adds the test-only fault hooks when Config.FaultHooks is on.
func (n *Node) faultRoutes(mux *http.ServeMux) {
	if !n.cfg.FaultHooks {
		return
	}
	mux.HandleFunc("GET /v1/fault/clock", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n", time.Duration(n.skew.Load()))
	})
	mux.HandleFunc("POST /v1/fault/clock", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("offset"))
		if err != nil {
			http.Error(w, "offset: want a Go duration such as 90s, -2h or 0: "+err.Error(), http.StatusBadRequest)
			return
		}
		n.skew.Store(int64(d))
		n.log.Warn("fault hook: clock offset set", "offset", d)
		fmt.Fprintf(w, "%s\n", d)
	})
}

package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stashcluster/stash/internal/rawio"
	"github.com/stashcluster/stash/internal/stashops"
	"github.com/stashcluster/stash/server/resp"
	"github.com/stashcluster/stash/storage"
)

// KV is the key/value layer the RESP commands run against. storage.Store
// satisfies it; the cluster layer wraps it to route and replicate.
// Every method is called from connection goroutines, concurrently.
type KV interface {
	// Get returns the live stash under key. It must not block on I/O and
	// must not retain key (it may point into a request buffer).
	Get(slot uint16, key string) (storage.Stash, bool)
	// Update runs fn under the key's lock (fn must not block) and returns
	// once the change is as durable as the node's policy demands.
	Update(ctx context.Context, slot uint16, key string, fn func(cur storage.Stash, ok bool) (storage.Stash, storage.Op)) (storage.Op, error)
	// Scan visits keys from cursor on; see storage.Store.Scan.
	Scan(cursor uint64, count int, fn func(key string)) uint64
	// FlushAll removes every stash.
	FlushAll(ctx context.Context) error
	// SlotCount returns the number of stashes held in slot (expired ones
	// not yet reaped included). It must be cheap: DBSIZE calls it for
	// every slot when the server has a Router.
	SlotCount(slot uint16) int
	// Stats summarises the store; it must be cheap.
	Stats() storage.Stats
}

// Config configures the RESP front end.
type Config struct {
	// Password, when set, must be given with AUTH (or HELLO … AUTH)
	// before any other command.
	Password string
	// MaxClients bounds concurrent client connections. Default 10000.
	MaxClients int
	// MaxValueBytes bounds one value (and one encoded hash). Default 1 MiB.
	MaxValueBytes int
	// MaxRequestBytes bounds one request. Default 8 MiB.
	MaxRequestBytes int
	// DefaultStashTTL applies to STASH.PUT without TTL. 0 = none.
	DefaultStashTTL time.Duration
	// NodeName and Version appear in HELLO and INFO.
	NodeName, Version string
	// Now is the clock for expiry. Default time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
	// Router, when set, runs the server as a cluster node: keyed commands
	// for slots another node serves are forwarded there (or redirected
	// with -MOVED), and the CLUSTER commands describe the cluster. nil
	// runs every command here: a single node.
	Router Router
	// ClusterRedirects answers every connection's commands for slots this
	// node does not serve with -MOVED instead of forwarding them, as a
	// Redis Cluster node does. Without it only connections that asked for
	// redirects (READONLY, READWRITE, CLIENT CAPA redirect) get -MOVED.
	// Ignored without a Router.
	ClusterRedirects bool
}

func (c *Config) defaults() {
	if c.MaxClients <= 0 {
		c.MaxClients = 10000
	}
	if c.MaxValueBytes <= 0 {
		c.MaxValueBytes = 1 << 20
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 8 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// RESP is the Redis-protocol front end. Create with NewRESP, run with
// Serve, stop with Shutdown or Close.
type RESP struct {
	cfg     Config
	kv      KV
	ops     *stashops.Ops
	metrics *Metrics
	start   time.Time
	cmds    map[string]*command

	nextID  atomic.Int64
	clients atomic.Int64

	mu        sync.Mutex // guards listeners, conns, closed
	listeners map[net.Listener]struct{}
	conns     map[*client]struct{}
	closed    bool
	wg        sync.WaitGroup // one per connection goroutine

	stats struct {
		conns    atomic.Int64 // accepted since start
		rejected atomic.Int64 // refused over MaxClients
		commands atomic.Int64
	}

	execPool sync.Pool // of *execBuf, for Exec
}

// NewRESP makes a front end over kv. ops performs the STASH.* commands;
// metrics may be nil. With cfg.Router set, STASH.PUT mints IDs only in
// slots the Router says are local for writes (NewRESP uses a copy of ops
// for that; the caller's is not changed).
func NewRESP(cfg Config, kv KV, ops *stashops.Ops, metrics *Metrics) *RESP {
	cfg.defaults()
	if r := cfg.Router; r != nil && ops != nil {
		o := *ops
		prev := o.Accept
		o.Accept = func(slot uint16) bool {
			return (prev == nil || prev(slot)) && r.Route(slot, true, false).Local
		}
		ops = &o
	}
	s := &RESP{
		cfg: cfg, kv: kv, ops: ops, metrics: metrics, start: time.Now(),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*client]struct{}),
	}
	s.cmds = s.table()
	return s
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("server: closed")

// Serve accepts connections on ln until Shutdown or Close. It always
// returns a non-nil error; ErrServerClosed after a stop.
func (s *RESP) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Out of descriptors or a transient failure: back off
				// instead of spinning.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay < time.Second {
					delay *= 2
				}
				s.cfg.Logger.Warn("accept failed; backing off", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.accept(nc)
	}
}

func (s *RESP) accept(nc net.Conn) {
	s.stats.conns.Add(1)
	if s.clients.Add(1) > int64(s.cfg.MaxClients) {
		s.clients.Add(-1)
		s.stats.rejected.Add(1)
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(nc, "-ERR max number of clients reached\r\n")
		nc.Close()
		return
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
		tc.SetKeepAlivePeriod(time.Minute)
	}
	rawR, rawW := rawio.Conn(nc)
	c := &client{
		id:     s.nextID.Add(1),
		srv:    s,
		nc:     nc,
		rd:     resp.NewReader(rawR, resp.Limits{MaxRequestBytes: s.cfg.MaxRequestBytes}),
		wr:     resp.NewWriter(rawW),
		authed: s.cfg.Password == "",
		since:  time.Now(),
		addr:   nc.RemoteAddr().String(),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.clients.Add(-1)
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
}

func (s *RESP) drop(c *client) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.clients.Add(-1)
	s.wg.Done()
}

// Clients reports the number of connected clients.
func (s *RESP) Clients() int { return int(s.clients.Load()) }

func (s *RESP) stopAccepting() {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
}

// Shutdown stops accepting, lets every connection finish the command it
// is running and send its replies, then closes them. It returns when all
// connections are gone or ctx ends (then it closes what remains).
func (s *RESP) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	s.mu.Lock()
	for c := range s.conns {
		c.stopping.Store(true)
		// Wake connections blocked in a read; one running a command
		// notices stopping after it replies.
		c.nc.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops accepting and closes every connection at once. Idempotent.
func (s *RESP) Close() error {
	s.stopAccepting()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return nil
}

// client is one connection (or one Exec call: exec set, nc and rd nil).
// Its fields are owned by its goroutine, except stopping (set by Shutdown)
// and name (read by CLIENT LIST/INFO of other connections; guarded by
// srv.mu).
type client struct {
	id       int64
	srv      *RESP
	nc       net.Conn
	rd       *resp.Reader
	wr       *resp.Writer
	authed   bool
	since    time.Time
	addr     string
	name     string
	libName  string
	libVer   string
	lastCmd  string
	keyBuf   [][]byte  // keys of the command being routed (router.go)
	now      time.Time // when the command being served started (cfg.Now)
	quit     bool
	failed   bool
	exec     bool // a command forwarded by another node (Exec): never forward it again
	readonly bool // READONLY: replica reads allowed
	// local: a fallback read (ExecLocalRead) of localSlot: runs here on
	// this node's copy, whoever the slot's primary is; nothing else runs.
	local     bool
	localSlot uint16
	redirect  bool // cluster-aware (READONLY, READWRITE, CLIENT CAPA redirect): answer -MOVED
	stopping  atomic.Bool
	lower     [32]byte
	base      context.Context // cancelled when serve returns
	cancel    context.CancelFunc
	setOp     setOp                                                 // the SET being served (cmd_keys.go)
	setFn     func(storage.Stash, bool) (storage.Stash, storage.Op) // c.applySet, bound once
}

func (c *client) serve() {
	c.base, c.cancel = context.WithCancel(context.Background())
	defer c.cancel()
	defer c.srv.drop(c)
	defer c.nc.Close()
	for !c.quit {
		if c.stopping.Load() && c.rd.Buffered() == 0 {
			break
		}
		args, err := c.rd.ReadCommand()
		if err != nil {
			var pe *resp.ProtocolError
			var tl *resp.TooLargeError
			switch {
			case errors.As(err, &tl):
				c.wr.Error("ERR " + tl.Error())
				c.srv.count("(request)", false)
			case errors.As(err, &pe):
				c.wr.Error("ERR " + pe.Error())
				c.wr.Flush()
				c.srv.cfg.Logger.Debug("closing client after protocol error", "addr", c.addr, "err", pe.Msg)
				return
			default:
				c.wr.Flush()
				return
			}
		} else {
			c.dispatch(args)
		}
		if c.rd.Buffered() == 0 || c.wr.Buffered() > 64<<10 {
			if err := c.wr.Flush(); err != nil {
				return
			}
		}
	}
	c.wr.Flush()
}

func (s *RESP) count(name string, ok bool) {
	if s.metrics != nil {
		s.metrics.command(name, ok, 0)
	}
}

// checkPassword compares in constant time.
func (s *RESP) checkPassword(user, pass string) bool {
	if user != "" && !strings.EqualFold(user, "default") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.Password)) == 1
}

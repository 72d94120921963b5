package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Kind names the protocol a stream carries. Any byte is a kind; these are
// the ones Stash uses.
type Kind byte

// Stream kinds.
const (
	KindRaft Kind = 'R' // raft RPCs (cluster/)
	KindData Kind = 'D' // replication and data forwarding (replication/)
)

func (k Kind) String() string {
	if k >= 0x21 && k < 0x7f {
		return string(rune(k))
	}
	return fmt.Sprintf("0x%02x", byte(k))
}

// Config configures a Mux or a Dialer. Start from DefaultConfig.
type Config struct {
	// Secret is the cluster secret, at least 16 bytes. The handshake key
	// is derived from it; it is never sent.
	Secret []byte
	// Kinds are the stream kinds the Mux serves, each with its own
	// listener (Mux.Listener). Ignored by NewDialer.
	Kinds []Kind
	// HandshakeTimeout bounds the whole handshake on either side. Default
	// 5s.
	HandshakeTimeout time.Duration
	// MaxPending bounds handshakes in progress on the listening side; a
	// connection beyond it is closed at once. Default 64.
	MaxPending int
	// Backlog is how many authenticated connections of one kind may wait
	// for Accept; beyond it new ones are closed. Default 32.
	Backlog int
	// Logger receives rejections (debug for garbage and timeouts, warn for
	// failed authentication). Nil discards.
	Logger *slog.Logger
	// Dial, if set, opens the connection a stream runs over (tests plug in
	// an in-memory network); it must return when ctx ends. Nil dials TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// DefaultConfig returns a Config with every default filled in but no
// Secret and no Kinds.
func DefaultConfig() Config {
	return Config{HandshakeTimeout: 5 * time.Second, MaxPending: 64, Backlog: 32}
}

// Validate reports every problem with c at once, each naming its field;
// the error wraps ErrInvalidConfig. Zero durations and sizes are invalid:
// start from DefaultConfig.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Secret) < 16 {
		errs = append(errs, fmt.Errorf("Secret: %d bytes, need at least 16", len(c.Secret)))
	}
	if c.HandshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("HandshakeTimeout: %v, must be positive", c.HandshakeTimeout))
	}
	if c.MaxPending < 1 {
		errs = append(errs, fmt.Errorf("MaxPending: %d, must be at least 1", c.MaxPending))
	}
	if c.Backlog < 1 {
		errs = append(errs, fmt.Errorf("Backlog: %d, must be at least 1", c.Backlog))
	}
	seen := map[Kind]bool{}
	for _, k := range c.Kinds {
		if seen[k] {
			errs = append(errs, fmt.Errorf("Kinds: %v listed twice", k))
		}
		seen[k] = true
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// Stats counts what a Mux did with incoming connections. Every accepted
// TCP connection ends up in exactly one counter, once its handshake ends.
type Stats struct {
	Accepted    uint64 // authenticated and handed to a kind's listener
	BadHeader   uint64 // garbage, another protocol or version
	BadAuth     uint64 // wrong secret (or none)
	Timeout     uint64 // handshake not finished in HandshakeTimeout
	UnknownKind uint64 // a kind this Mux does not serve
	Overload    uint64 // beyond MaxPending or Backlog, or the kind's listener closed
}

type stats struct {
	accepted, badHeader, badAuth, timeout, unknownKind, overload atomic.Uint64
}

// Dialer opens authenticated streams to other nodes' Muxes. It is safe for
// concurrent use.
type Dialer struct {
	key     []byte
	timeout time.Duration
	dial    func(ctx context.Context, addr string) (net.Conn, error) // nil: TCP
}

// NewDialer returns a Dialer for cfg (Kinds, MaxPending and Backlog are
// ignored).
func NewDialer(cfg Config) (*Dialer, error) {
	cfg.Kinds = nil
	if cfg.MaxPending == 0 {
		cfg.MaxPending = 1
	}
	if cfg.Backlog == 0 {
		cfg.Backlog = 1
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, err := deriveKey(cfg.Secret)
	if err != nil {
		return nil, err
	}
	return &Dialer{key: key, timeout: cfg.HandshakeTimeout, dial: cfg.Dial}, nil
}

// Dial connects to addr (host:port of a Mux), runs the handshake for kind
// and returns the stream, ready for the kind's protocol. ctx bounds the
// connect and the handshake, as does the HandshakeTimeout; it does not
// bound the returned connection. Errors wrap ErrAuth (the listener does
// not know the secret) or ErrRejected (the listener closed the stream:
// unknown kind, our secret is wrong, overload).
func (d *Dialer) Dial(ctx context.Context, addr string, kind Kind) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var c net.Conn
	var err error
	if d.dial != nil {
		c, err = d.dial(ctx, addr)
	} else {
		var nd net.Dialer
		c, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err = dialHandshake(c, d.key, kind)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			cause := ctx.Err()
			if cause == nil { // the conn deadline fired a moment before ctx's timer
				cause = context.DeadlineExceeded
			}
			return nil, fmt.Errorf("transport: dial %s (%v): handshake: %w", addr, kind, cause)
		}
		return nil, fmt.Errorf("transport: dial %s (%v): %w", addr, kind, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// Mux serves one TCP listener for several stream kinds. Each incoming
// connection must complete the handshake within HandshakeTimeout; it is
// then handed to the listener of its kind. A connection that fails is
// closed and counted, and nothing else is affected.
//
// All methods are safe for concurrent use.
type Mux struct {
	ln   net.Listener
	cfg  Config
	log  *slog.Logger
	key  []byte
	dial *Dialer
	sem  chan struct{} // one token per handshake in progress
	st   stats

	kinds map[Kind]*listener // fixed at Open

	mu      sync.Mutex            // guards pending and closed
	pending map[net.Conn]struct{} // connections in their handshake
	closed  bool

	wg        sync.WaitGroup // accept loop and handshakes
	closeOnce sync.Once
	closeErr  error
}

// Open starts serving ln for cfg.Kinds. The Mux owns ln from now on and
// closes it in Close.
func Open(ln net.Listener, cfg Config) (*Mux, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, err := deriveKey(cfg.Secret)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mux{
		ln:      ln,
		cfg:     cfg,
		log:     log,
		key:     key,
		dial:    &Dialer{key: key, timeout: cfg.HandshakeTimeout, dial: cfg.Dial},
		sem:     make(chan struct{}, cfg.MaxPending),
		kinds:   make(map[Kind]*listener, len(cfg.Kinds)),
		pending: make(map[net.Conn]struct{}),
	}
	for _, k := range cfg.Kinds {
		m.kinds[k] = &listener{m: m, kind: k, ch: make(chan net.Conn, cfg.Backlog), done: make(chan struct{})}
	}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

// Addr returns the address the Mux listens on.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Listener returns the listener for kind, or nil if Open was not given
// that kind. Accept returns authenticated streams of that kind; Close
// stops only that kind (later streams of it are refused); Addr is the
// Mux's address.
func (m *Mux) Listener(kind Kind) net.Listener {
	if l, ok := m.kinds[kind]; ok {
		return l
	}
	return nil
}

// Dial opens a stream of kind to the Mux at addr with this Mux's secret;
// see Dialer.Dial.
func (m *Mux) Dial(ctx context.Context, addr string, kind Kind) (net.Conn, error) {
	if m.isClosed() {
		return nil, ErrClosed
	}
	return m.dial.Dial(ctx, addr, kind)
}

// Stats returns the connection counters.
func (m *Mux) Stats() Stats {
	return Stats{
		Accepted:    m.st.accepted.Load(),
		BadHeader:   m.st.badHeader.Load(),
		BadAuth:     m.st.badAuth.Load(),
		Timeout:     m.st.timeout.Load(),
		UnknownKind: m.st.unknownKind.Load(),
		Overload:    m.st.overload.Load(),
	}
}

// Close stops accepting, closes every kind's listener and every
// connection still in its handshake, and waits for the Mux's goroutines.
// Streams already handed out stay open: they belong to their acceptors.
// Close is idempotent.
func (m *Mux) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		for c := range m.pending {
			c.Close()
		}
		m.mu.Unlock()
		m.closeErr = m.ln.Close()
		for _, l := range m.kinds {
			l.Close()
		}
		m.wg.Wait()
	})
	return m.closeErr
}

func (m *Mux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

func (m *Mux) serve() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if m.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep going.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.log.Warn("transport: accept failed", "err", err, "retry", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case m.sem <- struct{}{}:
		default:
			m.st.overload.Add(1)
			m.log.Warn("transport: too many handshakes in progress; closing connection", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			c.Close()
			<-m.sem
			return
		}
		m.pending[c] = struct{}{}
		m.wg.Add(1)
		m.mu.Unlock()
		go m.handshake(c)
	}
}

// handshake authenticates c and hands it to its kind's listener.
func (m *Mux) handshake(c net.Conn) {
	defer m.wg.Done()
	defer func() { <-m.sem }()
	c.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	kind, err := acceptHandshake(c, m.key, func(k Kind) bool { l := m.kinds[k]; return l != nil && l.open() })
	m.mu.Lock()
	delete(m.pending, c)
	closed := m.closed
	m.mu.Unlock()
	if err == nil && closed {
		err = ErrClosed
	}
	if err != nil {
		c.Close()
		m.reject(c, kind, err)
		return
	}
	c.SetDeadline(time.Time{})
	if !m.kinds[kind].deliver(c) {
		m.st.overload.Add(1)
		m.log.Warn("transport: stream dropped: listener closed or backlog full", "kind", kind, "remote", c.RemoteAddr())
		c.Close()
		return
	}
	m.st.accepted.Add(1)
}

func (m *Mux) reject(c net.Conn, kind Kind, err error) {
	remote := c.RemoteAddr()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		m.st.timeout.Add(1)
		m.log.Debug("transport: handshake timed out", "remote", remote)
	case errors.Is(err, ErrUnknownKind):
		m.st.unknownKind.Add(1)
		m.log.Warn("transport: unknown stream kind", "kind", kind, "remote", remote)
	case errors.Is(err, ErrAuth):
		m.st.badAuth.Add(1)
		m.log.Warn("transport: peer failed authentication (wrong cluster secret?)", "remote", remote)
	case errors.Is(err, ErrBadHeader):
		m.st.badHeader.Add(1)
		m.log.Debug("transport: not a Stash stream", "remote", remote, "err", err)
	default: // closed while in handshake, or a write failed
		m.st.overload.Add(1)
		m.log.Debug("transport: handshake failed", "remote", remote, "err", err)
	}
}

// listener is one kind's net.Listener.
type listener struct {
	m    *Mux
	kind Kind
	ch   chan net.Conn
	done chan struct{}

	mu     sync.Mutex // guards closed and sends on ch
	closed bool
}

// deliver queues c for Accept and reports whether it could.
func (l *listener) deliver(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	select {
	case l.ch <- c:
		return true
	default:
		return false
	}
}

func (l *listener) open() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.closed
}

// Accept waits for the next authenticated stream of this kind.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		// Prefer queued streams? No: after Close they are closed.
		return nil, fmt.Errorf("transport: %v listener: %w", l.kind, net.ErrClosed)
	}
}

// Close stops this kind: queued streams are closed, later ones refused.
// It is idempotent and does not close the Mux.
func (l *listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.done)
	for {
		select {
		case c := <-l.ch:
			c.Close()
		default:
			return nil
		}
	}
}

// Addr returns the Mux's listening address.
func (l *listener) Addr() net.Addr { return l.m.ln.Addr() }

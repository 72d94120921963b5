// Package client talks to Stash nodes from another process: the same
// Put / Set / Get / Touch / Delete surface as an embedded stash.Node, over
// the Redis protocol.
//
// # Usage
//
//	c, err := client.Dial(ctx, "10.0.0.5:6380", "10.0.0.6:6380")
//	...
//	defer c.Close()
//	tag, err := c.Put(ctx, state, 30*time.Minute)
//	state, err = c.Get(ctx, tag) // errors.Is(err, client.ErrNotFound) when gone
//
// Dial asks the first reachable address whether it belongs to a cluster
// (CLUSTER INFO). For a cluster it routes every request to the slot's
// primary itself, following MOVED and ASK redirections and refreshing
// its slot table; for a single node it talks to that node.
//
// # Errors and retries
//
// Errors are the same values the stash package exports (ErrNotFound,
// ErrBadTag, ErrForged, ErrMalformed, ErrValueTooLarge, ErrWrongType), so
// errors.Is works whichever API produced them. Replies that say "try
// again" (NOQUORUM, TRYAGAIN, CLUSTERDOWN, LOADING, a connection cut by a
// restarting node) are retried with exponential backoff until the
// context's deadline or Options.MaxRetries; the last error is returned.
// A retried call may have taken effect before the connection was cut: a
// retried Put can leave an orphan stash behind (it expires), and a
// retried Delete can report ErrNotFound for the stash it just deleted.
//
// # Concurrency
//
// A Client is safe for concurrent use; it keeps a pool of connections per
// node.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stashcluster/stash/internal/stashops"
	"github.com/stashcluster/stash/tag"
)

// Errors, shared with package stash.
var (
	ErrNotFound      = stashops.ErrNotFound
	ErrBadTag        = tag.ErrBadTag
	ErrForged        = tag.ErrForged
	ErrMalformed     = tag.ErrMalformed
	ErrValueTooLarge = stashops.ErrValueTooLarge
	ErrWrongType     = stashops.ErrWrongType
	// ErrNoAddress: Dial was given no address.
	ErrNoAddress = errors.New("client: no address given")
)

// Options tune a Client. The zero value works.
type Options struct {
	// Password for AUTH, when the nodes require one.
	Password string
	// PoolSize is the connections kept per node. Default 10 per CPU.
	PoolSize int
	// DialTimeout bounds one connection attempt. Default 5s.
	DialTimeout time.Duration
	// MaxRetries bounds the retries of one call after a retryable error;
	// the context's deadline bounds them too. Default 10; -1 disables.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// retries. Defaults 8ms and 1s.
	MinBackoff, MaxBackoff time.Duration
	// OnRetry, if set, is called before each retry with the attempt that
	// failed (0 for the first) and its error: for logging. It must not
	// block.
	OnRetry func(attempt int, err error)
}

func (o *Options) defaults() {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 10
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 8 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Second
	}
}

// Client is a connection pool to a Stash node or cluster.
type Client struct {
	opts    Options
	rdb     redis.UniversalClient
	cluster bool
	seeds   []string // the addresses given to Dial

	detourMu sync.Mutex
	detours  map[string]*redis.Client // one small pool per seed, made on first use
	closed   bool
}

// Dial connects with default Options.
func Dial(ctx context.Context, addrs ...string) (*Client, error) {
	return DialOptions(ctx, Options{}, addrs...)
}

// DialOptions connects to the first reachable address and finds out
// whether it is part of a cluster.
func DialOptions(ctx context.Context, opts Options, addrs ...string) (*Client, error) {
	if len(addrs) == 0 {
		return nil, ErrNoAddress
	}
	opts.defaults()
	var errs []error
	for _, a := range addrs {
		probe := redis.NewClient(&redis.Options{Addr: a, Password: opts.Password, DialTimeout: opts.DialTimeout, MaxRetries: -1, PoolSize: 1})
		info, err := probe.ClusterInfo(ctx).Result()
		probe.Close()
		cluster := err == nil && strings.Contains(info, "cluster_enabled:1")
		if err != nil && !isUnknownCommand(err) {
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c := &Client{opts: opts, cluster: cluster, seeds: slices.Clone(addrs)}
		if cluster {
			c.rdb = redis.NewClusterClient(&redis.ClusterOptions{
				// A copy of its own, full to capacity: go-redis appends
				// the nodes it learns to this slice, which would write
				// into the caller's array (and race between clients
				// given the same one).
				Addrs: slices.Clip(slices.Clone(addrs)), Password: opts.Password, DialTimeout: opts.DialTimeout,
				PoolSize: opts.PoolSize, MaxRetries: -1,
				// go-redis also retries TRYAGAIN and network errors in
				// its redirect loop, with a backoff of its own up to
				// 512 ms that Options and OnRetry do not see: one
				// redirect (for -MOVED) is enough, retry does the rest.
				MaxRedirects: 1,
				// Likewise for dials: one attempt per call, so a node
				// that refuses costs a retry, not 5 × 100 ms in a call.
				DialerRetries: 1,
			})
		} else {
			c.rdb = redis.NewClient(&redis.Options{
				Addr: a, Password: opts.Password, DialTimeout: opts.DialTimeout,
				PoolSize: opts.PoolSize, MaxRetries: -1,
			})
		}
		return c, nil
	}
	return nil, fmt.Errorf("client: no node reachable: %w", errors.Join(errs...))
}

// isUnknownCommand: the node does not do clusters (an older node, or a
// single node answering as Redis does without cluster support).
func isUnknownCommand(err error) bool {
	m := err.Error()
	return strings.HasPrefix(m, "ERR unknown command") || strings.Contains(m, "cluster support disabled")
}

// Close closes every connection.
func (c *Client) Close() error {
	errs := []error{c.rdb.Close()}
	c.detourMu.Lock()
	for _, d := range c.detours {
		errs = append(errs, d.Close())
	}
	c.detours, c.closed = nil, true
	c.detourMu.Unlock()
	return errors.Join(errs...)
}

// Clustered reports whether the client routes by slot.
func (c *Client) Clustered() bool { return c.cluster }

// Put stores value as a new stash and returns its tag. ttl 0 means the
// node's default stash TTL.
func (c *Client) Put(ctx context.Context, value []byte, ttl time.Duration) (string, error) {
	args := []any{"STASH.PUT", value}
	if ttl > 0 {
		args = append(args, "TTL", ttlSeconds(ttl))
	}
	var t string
	err := c.retry(ctx, func(detour bool) error {
		var err error
		t, err = c.run(ctx, "", detour, args...).Text()
		return err
	})
	return t, err
}

// Set replaces the value of the stash named by t; ttl 0 keeps its expiry.
func (c *Client) Set(ctx context.Context, t string, value []byte, ttl time.Duration) error {
	args := []any{"STASH.SET", t, value}
	if ttl > 0 {
		args = append(args, "TTL", ttlSeconds(ttl))
	}
	return c.retry(ctx, func(detour bool) error { return c.run(ctx, t, detour, args...).Err() })
}

// Get returns the stash's value, or ErrNotFound.
func (c *Client) Get(ctx context.Context, t string) ([]byte, error) {
	var v string
	err := c.retry(ctx, func(detour bool) error {
		var err error
		v, err = c.run(ctx, t, detour, "STASH.GET", t).Text()
		return err
	})
	if err != nil {
		return nil, err
	}
	return []byte(v), nil
}

// Touch sets the stash's expiry to ttl from now (whole seconds, at least
// one); ErrNotFound when it is gone.
func (c *Client) Touch(ctx context.Context, t string, ttl time.Duration) error {
	var n int64
	err := c.retry(ctx, func(detour bool) error {
		var err error
		n, err = c.run(ctx, t, detour, "STASH.TOUCH", t, ttlSeconds(ttl)).Int64()
		return err
	})
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return err
}

// Delete removes the stash; ErrNotFound when there was none.
func (c *Client) Delete(ctx context.Context, t string) error {
	var n int64
	err := c.retry(ctx, func(detour bool) error {
		var err error
		n, err = c.run(ctx, t, detour, "STASH.DEL", t).Int64()
		return err
	})
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return err
}

// run runs a command, on stash t if t is not empty. In a cluster it goes
// straight to the primary of the stash's slot, read from the tag
// (unverified: the node verifies it): go-redis alone would route by the
// slot of the tag string, which is unrelated, and cost a forward between
// nodes on most calls. With detour it goes to a random one of the
// addresses given to Dial instead.
func (c *Client) run(ctx context.Context, t string, detour bool, args ...any) *redis.Cmd {
	if detour && len(c.seeds) > 0 {
		return c.detourNode(c.seeds[rand.IntN(len(c.seeds))]).Do(ctx, args...)
	}
	if cc, ok := c.rdb.(*redis.ClusterClient); ok && t != "" {
		if tg, err := tag.Unverified(t); err == nil {
			if node, err := cc.MasterForKey(ctx, tg.ID.Key()); err == nil {
				return node.Do(ctx, args...)
			}
		}
	}
	return c.rdb.Do(ctx, args...)
}

// detourNode returns the small pool for addr, made on first use.
func (c *Client) detourNode(addr string) *redis.Client {
	c.detourMu.Lock()
	defer c.detourMu.Unlock()
	d := c.detours[addr]
	if d == nil {
		d = redis.NewClient(&redis.Options{Addr: addr, Password: c.opts.Password, DialTimeout: c.opts.DialTimeout,
			PoolSize: 2, MaxRetries: -1, DialerRetries: 1})
		if c.closed {
			d.Close() // its calls fail as the closed client's do
			return d
		}
		if c.detours == nil {
			c.detours = make(map[string]*redis.Client)
		}
		c.detours[addr] = d
	}
	return d
}

// connErr reports whether err means the node was not reached or the
// connection broke (as opposed to an answer from the node).
func connErr(err error) bool { return netErr(err) || connText(err.Error()) }

// netErr: a network error value, or the connection ended.
func netErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// connText: a connection failure known only by its text.
func connText(msg string) bool {
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

func ttlSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// retry runs op until it succeeds, fails for good, or runs out of
// retries or time; it maps server replies onto the package's errors.
func (c *Client) retry(ctx context.Context, op func(detour bool) error) error {
	backoff := c.opts.MinBackoff
	detour := false
	for attempt := 0; ; attempt++ {
		err := op(detour)
		if err == nil {
			return nil
		}
		mapped, retryable := classify(err)
		if !retryable || c.opts.MaxRetries < 0 || attempt >= c.opts.MaxRetries {
			return mapped
		}
		if c.opts.OnRetry != nil {
			c.opts.OnRetry(attempt, err)
		}
		// The node could not be reached, or has no slot table yet (it
		// just restarted): go-redis's slot map may keep naming it for
		// seconds. The next try goes through another node, which
		// forwards the command to the slot's primary.
		detour = c.cluster && (connErr(err) || strings.HasPrefix(err.Error(), "CLUSTERDOWN "))
		if detour || movedOn(err) {
			c.reloadSlots(ctx)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), mapped)
		case <-t.C:
		}
		backoff = min(2*backoff, c.opts.MaxBackoff)
	}
}

// movedOn: a reply that says the slot's primary is moving or has moved.
func movedOn(err error) bool {
	code, _, _ := strings.Cut(err.Error(), " ")
	return code == "TRYAGAIN" || code == "MOVED" || code == "ASK"
}

// reloadSlots asks go-redis to reload its slot map in the background (at
// most one reload at a time, 200 ms apart). Commands sent straight to a
// slot's primary (see run) bypass go-redis's own redirect handling, which
// is what would otherwise reload it: left alone, the map is reloaded
// only once it is 10 s old, and every call for a moved slot would go to
// the old primary first meanwhile.
func (c *Client) reloadSlots(ctx context.Context) {
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
}

// classify turns a reply error into the package's errors and says whether
// trying again may succeed.
func classify(err error) (error, bool) {
	if errors.Is(err, redis.Nil) {
		return ErrNotFound, false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err, false
	}
	msg := err.Error()
	code, _, _ := strings.Cut(msg, " ")
	switch code {
	case "BADTAG":
		if strings.Contains(msg, "signature") {
			return fmt.Errorf("%w: %s", ErrForged, msg), false
		}
		return fmt.Errorf("%w: %s", ErrMalformed, msg), false
	case "WRONGTYPE":
		return ErrWrongType, false
	case "NOQUORUM", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MOVED", "ASK", "MASTERDOWN":
		return err, true
	case "ERR":
		if strings.Contains(msg, "exceeds max-value-bytes") {
			return fmt.Errorf("%w: %s", ErrValueTooLarge, strings.TrimPrefix(msg, "ERR ")), false
		}
		if strings.Contains(msg, "shutting down") {
			return err, true
		}
		return err, false
	}
	if netErr(err) {
		return err, true
	}
	if _, convErr := strconv.Atoi(code); convErr == nil {
		return err, false
	}
	return err, connText(msg)
}

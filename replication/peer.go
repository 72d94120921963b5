package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stashcluster/stash/internal/rawio"
	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
)

// errPeerGone: the stream to a peer broke; what was in flight on it has
// an unknown outcome.
var errPeerGone = errors.New("connection to peer lost")

// errNotSent marks a failure before the request left this node: the peer
// certainly did not act on it.
var errNotSent = errors.New("request not sent")

// peer is the client side of the data streams to one node: one pipelined
// connection, dialed on demand and redialed after a failure. Requests
// carry IDs; a reader goroutine hands each reply to its caller.
type peer struct {
	r  *Replicator
	id ring.NodeID

	mu      sync.Mutex
	conn    *peerConn
	closed  bool
	dialing chan struct{} // closed when the dial under way ends
	dialErr error         // how the last dial failed
}

type peerConn struct {
	id   ring.NodeID
	nc   net.Conn
	fw   *frameWriter
	done chan struct{} // closed when the connection is finished

	lazyArmed atomic.Bool // a flushLazy is due

	mu    sync.Mutex
	calls map[uint64]chan *wire.Msg
	err   error
}

func (p *peer) close() {
	p.mu.Lock()
	p.closed = true
	c := p.conn
	p.conn = nil
	p.mu.Unlock()
	if c != nil {
		c.fail(ErrClosed)
	}
}

// drop fails the current connection, if any, with err: the calls on it
// end, and the next call dials again.
func (p *peer) drop(err error) {
	p.mu.Lock()
	c := p.conn
	p.conn = nil
	p.mu.Unlock()
	if c != nil {
		c.fail(err)
	}
}

// connected reports whether a live connection to the peer is up.
func (p *peer) connected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return false
	}
	select {
	case <-p.conn.done:
		return false
	default:
		return true
	}
}

// get returns a live connection, dialing one if needed. One dial runs
// at a time, without the lock: callers wait for it only as long as their
// ctx allows, so a peer whose port accepts but never answers (a node
// starting or stopping) holds nobody up for the whole dial timeout.
func (p *peer) get(ctx context.Context) (*peerConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if c := p.conn; c != nil {
		select {
		case <-c.done:
			p.conn = nil
		default:
			p.mu.Unlock()
			return c, nil
		}
	}
	if p.dialing == nil {
		p.dialing = make(chan struct{})
		go p.dial(p.dialing)
	}
	ch := p.dialing
	p.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("dialing %s: %w", p.id, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		if p.closed {
			return nil, ErrClosed
		}
		return nil, p.dialErr
	}
	return p.conn, nil
}

// dial connects to the peer and installs the connection; done is closed
// when it has finished either way.
func (p *peer) dial(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	go func() {
		select {
		case <-p.r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	nc, err := p.r.cl.DialData(ctx, p.id)
	p.mu.Lock()
	defer func() {
		p.dialing = nil
		p.mu.Unlock()
		close(done)
	}()
	if err != nil {
		p.dialErr = fmt.Errorf("dialing %s: %w", p.id, err)
		return
	}
	if p.closed {
		nc.Close()
		return
	}
	c := &peerConn{id: p.id, nc: nc, fw: newFrameWriter(nc), done: make(chan struct{}), calls: make(map[uint64]chan *wire.Msg)}
	p.conn = c
	go c.readLoop()
}

func (c *peerConn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	calls := c.calls
	c.calls = nil
	close(c.done)
	c.mu.Unlock()
	c.nc.Close()
	// Every waiter learns of the failure as a reply with failed set (its
	// channel has room: one slot per reply it awaits).
	for id, ch := range calls {
		select {
		case ch <- &wire.Msg{ID: id, From: string(c.id), Err: errPeerGone.Error()}:
		default:
		}
	}
}

// gone reports whether rep is the stand-in fail delivers for a reply
// that will never come.
func gone(rep *wire.Msg) bool { return rep.Kind == 0 }

func (c *peerConn) readLoop() {
	raw, _ := rawio.Conn(c.nc)
	rd := wire.NewReader(raw)
	for {
		m, err := rd.Read()
		if err != nil {
			c.fail(fmt.Errorf("%w: %v", errPeerGone, err))
			return
		}
		// One reply per request on this connection (slot fetches,
		// which stream many, use connections of their own).
		c.mu.Lock()
		ch := c.calls[m.ID]
		delete(c.calls, m.ID)
		c.mu.Unlock()
		if ch == nil {
			continue // its caller gave up
		}
		select {
		case ch <- m:
		case <-c.done:
			return
		}
	}
}

// send registers ch for m's replies and sends m. ch must have room for
// every reply the caller awaits on it.
func (c *peerConn) send(ctx context.Context, m *wire.Msg, ch chan *wire.Msg) error {
	return c.sendHow(ctx, m, ch, false)
}

// Copies beyond the ones a write needs for its quorum (the second backup
// when W is 2 of 3) are not on the write's path: they are queued and go
// out with the next frame written on their connection, or lazyFlush
// later, or once lazyBytes are queued. A backup then gets them in a few
// large writes instead of one small write (and one wakeup) each. A
// forwarding node's confirmation of its carried copy goes the same way
// (queueLazy).
const (
	lazyFlush = time.Millisecond
	lazyBytes = 64 << 10
)

// sendHow is send; lazy queues m as described at lazyFlush.
func (c *peerConn) sendHow(ctx context.Context, m *wire.Msg, ch chan *wire.Msg, lazy bool) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.calls[m.ID] = ch
	c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		c.forget(m.ID)
		return err
	}
	var err error
	if !lazy {
		err = c.fw.send(m)
	} else {
		err = c.queueLazy(m)
	}
	if err != nil {
		c.forget(m.ID)
		c.fail(err)
		return err
	}
	return nil
}

// queueLazy queues m to go out as sendHow's lazy frames do. An error
// means the connection failed: the caller fails it.
func (c *peerConn) queueLazy(m *wire.Msg) error {
	queued, err := c.fw.queueLen(m)
	if err != nil {
		return err
	}
	if queued >= lazyBytes {
		return c.fw.flush()
	}
	if c.lazyArmed.CompareAndSwap(false, true) {
		time.AfterFunc(lazyFlush, c.flushLazy)
	}
	return nil
}

// flushLazy writes what queueLazy queued, at once.
func (c *peerConn) flushLazy() {
	c.lazyArmed.Store(false)
	if err := c.fw.flush(); err != nil {
		c.fail(err)
	}
}

func (c *peerConn) forget(id uint64) {
	c.mu.Lock()
	if c.calls != nil {
		delete(c.calls, id)
	}
	c.mu.Unlock()
}

// start sends m to the peer without waiting; its reply (or a stand-in for
// which gone is true) arrives on ch. An error means m was not sent.
func (p *peer) start(ctx context.Context, m *wire.Msg, ch chan *wire.Msg) (*peerConn, error) {
	return p.startHow(ctx, m, ch, false)
}

// startHow is start; lazy queues m (see lazyFlush).
func (p *peer) startHow(ctx context.Context, m *wire.Msg, ch chan *wire.Msg, lazy bool) (*peerConn, error) {
	c, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	m.ID = p.r.id()
	m.From = string(p.r.cfg.Self)
	return c, c.sendHow(ctx, m, ch, lazy)
}

// errNoAnswer: a call's deadline passed without a reply on a stream that
// has not failed.
var errNoAnswer = errors.New("no answer from peer in time")

// call sends m and returns its single reply.
func (p *peer) call(ctx context.Context, m *wire.Msg) (*wire.Msg, error) {
	return p.callUntil(ctx, m, nil)
}

// callUntil is call that also gives up with errNoAnswer when expire
// closes (nil: never).
func (p *peer) callUntil(ctx context.Context, m *wire.Msg, expire <-chan struct{}) (*wire.Msg, error) {
	rep, _, err := p.callOn(ctx, m, expire)
	return rep, err
}

// callOn is callUntil that also returns the connection the reply came
// on, for an answer to the reply itself (see carry.go).
func (p *peer) callOn(ctx context.Context, m *wire.Msg, expire <-chan struct{}) (*wire.Msg, *peerConn, error) {
	ch := make(chan *wire.Msg, 1)
	c, err := p.start(ctx, m, ch)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errNotSent, err)
	}
	select {
	case rep := <-ch:
		if gone(rep) {
			return nil, nil, errPeerGone
		}
		return rep, c, nil
	case <-ctx.Done():
		c.forget(m.ID)
		return nil, nil, ctx.Err()
	case <-expire:
		c.forget(m.ID)
		return nil, nil, errNoAnswer
	}
}

// stream sends m on a connection of its own and passes each reply to fn
// until one has Last set. A whole-slot fetch can be large and its
// consumer slow; on the shared connection it would hold up every other
// reply (replication acks) behind it.
func (p *peer) stream(ctx context.Context, m *wire.Msg, fn func(*wire.Msg) error) error {
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	nc, err := p.r.cl.DialData(dctx, p.id)
	cancel()
	if err != nil {
		return fmt.Errorf("dialing %s: %w", p.id, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	m.ID = p.r.id()
	m.From = string(p.r.cfg.Self)
	w := wire.NewWriter(nc)
	if err := w.Write(m); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	rd := wire.NewReader(nc)
	for {
		rep, err := rd.Read()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %v", errPeerGone, err)
		}
		if rep.ID != m.ID {
			continue
		}
		if rep.Err != "" {
			return errors.New(rep.Err)
		}
		if err := fn(rep); err != nil {
			return err
		}
		if rep.Last {
			return nil
		}
	}
}

package server

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"unsafe"

	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/server/resp"
	"github.com/stashcluster/stash/tag"
)

// Router places keyed commands in a cluster. A RESP server without one
// (Config.Router nil) runs every command locally: a single node.
//
// Route and View are called from connection goroutines (and from Exec's
// callers), concurrently, once per keyed command or CLUSTER command: they
// must be cheap and must not block (read an atomically swapped table).
// Forward may block on the network; it is called from the goroutine of the
// connection whose command it carries.
type Router interface {
	// Route says where a command on slot runs now. write: the command
	// changes data. readonly: the connection sent READONLY (replica reads
	// allowed).
	Route(slot uint16, write, readonly bool) Route
	// Forward runs args on the node that can serve slot and returns that
	// node's reply, RESP-encoded for protocol proto (2 or 3). An error
	// means the command could not be delivered or its outcome is unknown.
	// args point into the connection's request buffer: Forward must not
	// keep them after it returns. The returned bytes are written to the
	// client as they are and not kept; they must be exactly one reply.
	Forward(ctx context.Context, slot uint16, proto int, args [][]byte) ([]byte, error)
	// View describes the cluster for the CLUSTER commands. The server
	// reads the returned value and never changes it.
	View() ClusterView
}

// Route is a routing decision for one slot.
type Route struct {
	Local bool   // run it on this node
	Addr  string // when not Local: RESP host:port of the node to go to (for -MOVED; empty: forward instead)
	Err   string // when set: reply with this error instead (e.g. "TRYAGAIN …", "CLUSTERDOWN …")
}

// ClusterView is the cluster as CLUSTER INFO, MYID, SLOTS, SHARDS and
// NODES report it.
type ClusterView struct {
	MyID   string // 40 hex chars, stable per node name (Redis node-ID format)
	Epoch  uint64 // slot-table epoch
	OK     bool   // every slot has a live primary
	Nodes  []ClusterNode
	Ranges []SlotRange // contiguous slot ranges with the same replica list; ascending
}

// ClusterNode is one member of a ClusterView.
type ClusterNode struct {
	ID, Name, Host string
	Port           int // RESP port
	ClusterPort    int // cluster bus port, for CLUSTER NODES' host:port@cport
	Alive, Self    bool
}

// SlotRange is a run of slots served by the same replicas.
type SlotRange struct {
	Start, End uint16 // inclusive
	Nodes      []int  // indexes into ClusterView.Nodes, primary first
}

const (
	errCrossSlot = "CROSSSLOT Keys in request don't hash to the same slot"
	errNoCluster = "ERR This instance has cluster support disabled"
)

// keys returns a command's keys: the arguments at its key positions, or
// for a STASH.* command the key its tag names. It is empty for a command
// without keys and for a tag that does not decode (the command then runs
// here and answers BADTAG). The slice is reused by the next call.
func (c *client) keys(cmd *command, args [][]byte) [][]byte {
	c.keyBuf = c.keyBuf[:0]
	if cmd.tagArg > 0 {
		ops := c.srv.ops
		if ops == nil || ops.Codec == nil {
			return nil
		}
		tg, err := ops.Codec.Decode(string(args[cmd.tagArg]))
		if err != nil {
			return nil
		}
		return append(c.keyBuf, []byte(tg.ID.Key()))
	}
	if cmd.first <= 0 {
		return nil
	}
	last := cmd.last
	if last < 0 {
		last += len(args)
	}
	for i := cmd.first; i <= last && i < len(args); i += max(cmd.step, 1) {
		c.keyBuf = append(c.keyBuf, args[i])
	}
	return c.keyBuf
}

// keySlot returns the slot of keys; cross is true when they hash to
// different slots.
func keySlot(keys [][]byte) (slot uint16, cross bool) {
	slot = ring.SlotBytes(keys[0])
	for _, k := range keys[1:] {
		if ring.SlotBytes(k) != slot {
			return slot, true
		}
	}
	return slot, false
}

// here routes a command when the server has a Router. It reports whether
// the command runs on this node; otherwise it has written the reply
// (an error, a redirection, or the reply of the node it forwarded to).
func (c *client) here(cmd *command, args [][]byte) bool {
	keys := c.keys(cmd, args)
	if len(keys) == 0 {
		return true
	}
	slot, cross := keySlot(keys)
	if cross {
		c.err(errCrossSlot)
		return false
	}
	write := cmd.flags&flagWrite != 0
	if c.local { // writes were refused by dispatch
		if slot != c.localSlot {
			c.err("TRYAGAIN a fallback read runs only reads of slot " + strconv.Itoa(int(c.localSlot)))
			return false
		}
		return c.settled(keys)
	}
	rt := c.srv.cfg.Router.Route(slot, write, c.readonly)
	switch {
	case rt.Err != "":
		c.err(rt.Err)
		return false
	case rt.Local:
		return write || c.settled(keys)
	case c.exec:
		c.err(notServed(slot))
		return false
	case (c.redirect || c.srv.cfg.ClusterRedirects) && rt.Addr != "":
		c.err("MOVED " + strconv.Itoa(int(slot)) + " " + rt.Addr)
		return false
	}
	c.forward(cmd, slot, write, args)
	return false
}

// ReadGate is implemented by a KV whose latest writes can be in doubt (a
// cluster's replicated store). Settled waits, bounded, until key's latest
// write is known to be held by a write quorum, and otherwise returns an
// error (a CodedError such as TRYAGAIN): the read must not run, or it
// could return a value a failover would undo. Settled must not keep key
// (it may point into a request buffer).
type ReadGate interface {
	Settled(slot uint16, key string) error
}

// settled runs the ReadGate for a local read's keys and replies with its
// error if one is not settled.
func (c *client) settled(keys [][]byte) bool {
	g, ok := c.srv.kv.(ReadGate)
	if !ok {
		return true
	}
	for _, k := range keys {
		// Settled does not keep the key: no copy on every read.
		if err := g.Settled(ring.SlotBytes(k), unsafe.String(unsafe.SliceData(k), len(k))); err != nil {
			c.storageErr(err)
			return false
		}
	}
	return true
}

func notServed(slot uint16) string {
	return "TRYAGAIN slot " + strconv.Itoa(int(slot)) + " is not served by this node"
}

// forward runs args on the node serving slot and writes its reply.
func (c *client) forward(cmd *command, slot uint16, write bool, args [][]byte) {
	if cmd.fwd != nil {
		cmd.fwd.Inc()
	}
	ctx, cancel := c.ctx()
	defer cancel()
	rep, err := c.srv.cfg.Router.Forward(ctx, slot, c.wr.Proto(), args)
	if err == nil && len(rep) == 0 {
		err = errors.New("empty reply")
	}
	var coded CodedError
	if err != nil && errors.As(err, &coded) {
		// The router knows what happened (e.g. TRYAGAIN: never sent).
		c.err(coded.RESPError())
		return
	}
	if err != nil {
		c.srv.cfg.Logger.Debug("forward failed", "cmd", cmd.name, "slot", slot, "err", err)
		if write {
			// The primary may or may not have applied it.
			c.err("NOQUORUM forward to primary failed: " + err.Error())
		} else {
			c.err("TRYAGAIN forward to primary failed: " + err.Error())
		}
		return
	}
	if rep[0] == '-' || rep[0] == '!' {
		c.failed = true
	}
	c.wr.Raw(rep)
}

// forwardPut sends a STASH.PUT that this node could not mint an ID for
// (it serves no slot now) to the primary of a random slot.
func (c *client) forwardPut(cmd *command, args [][]byte) {
	if c.exec {
		c.err("TRYAGAIN this node serves no slot to mint a stash ID in")
		return
	}
	slot := uint16(rand.N(ring.Slots))
	rt := c.srv.cfg.Router.Route(slot, true, false)
	switch {
	case rt.Err != "":
		c.err(rt.Err)
	case rt.Local:
		// The slot table changed under us: this node serves a slot now.
		c.err("TRYAGAIN the slot table changed; retry")
	default:
		c.forward(cmd, slot, true, args)
	}
}

// isExhausted reports whether err is Mint's "no acceptable ID" (no slot
// this node serves was drawn).
func isExhausted(err error) bool { return errors.Is(err, tag.ErrExhausted) }

// Exec runs one command forwarded from another node and returns its reply,
// RESP-encoded for proto (2 or 3; anything else means 2). The command was
// authenticated where it arrived and is not checked here. It runs as it
// would on a connection of its own, except that it is never forwarded
// again: a keyed command for a slot this node does not serve gets
// "-TRYAGAIN slot N is not served by this node". Commands that change
// connection state (HELLO, AUTH, SELECT, CLIENT, QUIT, READONLY,
// READWRITE) get an error. ctx bounds the storage calls.
//
// Exec is safe for concurrent use. It does not keep args; the returned
// slice belongs to the caller.
func (s *RESP) Exec(ctx context.Context, proto int, args [][]byte) []byte {
	return s.exec(ctx, proto, args, nil)
}

// ExecLocalRead runs a read forwarded by the new primary of slot while
// it takes the slot over: here, on this node's copy, without routing.
// Anything but a read of keys in slot gets a TRYAGAIN error; the read
// gate (ReadGate) applies as to any local read.
func (s *RESP) ExecLocalRead(ctx context.Context, slot uint16, proto int, args [][]byte) []byte {
	return s.exec(ctx, proto, args, func(c *client) { c.local, c.localSlot = true, slot })
}

func (s *RESP) exec(ctx context.Context, proto int, args [][]byte, setup func(*client)) []byte {
	if len(args) == 0 {
		return []byte("-ERR empty command\r\n")
	}
	if proto != 3 {
		proto = 2
	}
	x, _ := s.execPool.Get().(*execBuf)
	if x == nil {
		x = &execBuf{}
		x.wr = resp.NewWriter(&x.buf)
	}
	defer func() {
		x.c.base = nil // the pool must not keep the caller's context alive
		s.execPool.Put(x)
	}()
	x.buf.Reset()
	x.wr.SetProto(proto)
	x.c = client{
		srv:    s,
		wr:     x.wr,
		authed: true,
		exec:   true,
		addr:   "forwarded",
		base:   ctx,
	}
	c := &x.c
	if setup != nil {
		setup(c)
	}
	c.dispatch(args)
	x.wr.Flush()
	return bytes.Clone(x.buf.Bytes())
}

// execBuf is the reply buffer and client state of one Exec call, pooled.
type execBuf struct {
	buf bytes.Buffer
	wr  *resp.Writer
	c   client
}

// connOnly replies to a connection-state command run by Exec.
func (c *client) connOnly(cmd *command) {
	c.err("ERR " + strings.ToUpper(cmd.name) + " cannot be forwarded: it changes connection state")
}

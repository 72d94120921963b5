package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
)

// Decision is where a command on a slot runs.
type Decision struct {
	Local   bool        // run it here
	Primary ring.NodeID // otherwise: the slot's primary
	Err     string      // when set: answer with this RESP error instead
	// Fallback: Primary is the slot's previous primary, which runs the
	// read (through Forward) while this node takes the slot over. Not a
	// node to redirect a client to: it no longer serves the slot itself.
	Fallback bool
}

// Route decides where a command on slot runs: here when this node serves
// it as primary (or, for a read on a READONLY connection, holds a copy),
// else at the primary. While this node is taking the slot over, or has no
// table yet, it answers TRYAGAIN / CLUSTERDOWN.
func (r *Replicator) Route(slot uint16, write, readonly bool) Decision {
	t := r.table.Load()
	if t == nil {
		return Decision{Err: "CLUSTERDOWN the cluster has no slot table yet"}
	}
	if !write && readonly && r.Holds(slot) {
		return Decision{Local: true}
	}
	p := t.Primary(slot)
	if p == r.cfg.Self {
		if r.Serving(slot) {
			return Decision{Local: true}
		}
		if !r.inContact() {
			return Decision{Err: "TRYAGAIN this node lost contact with the cluster; retry on another node"}
		}
		if prev := r.prevPrimary(slot); !write && prev != "" {
			return Decision{Primary: prev, Fallback: true}
		}
		return Decision{Err: fmt.Sprintf("TRYAGAIN slot %d is being taken over by this node", slot)}
	}
	return Decision{Primary: p}
}

// prevPrimary returns the slot's primary in the table before the current
// one, when that is another node, or "".
func (r *Replicator) prevPrimary(slot uint16) ring.NodeID {
	pt := r.prevTable.Load()
	if pt == nil {
		return ""
	}
	if p := pt.Primary(slot); p != r.cfg.Self {
		return p
	}
	return ""
}

// canServePrev reports whether this node may run a fallback read of slot
// for from, which is the slot's primary at epoch and still taking it
// over: either this node still serves the slot (it has not applied that
// table yet), or it handed the slot over in exactly that table and
// nothing has changed the slot here since.
func (r *Replicator) canServePrev(slot uint16, epoch uint64, from ring.NodeID) bool {
	t := r.table.Load()
	if t == nil || slot >= ring.Slots || !r.inContact() || r.cutOff.Load() {
		return false
	}
	if t.Epoch() < epoch {
		return r.Serving(slot)
	}
	return t.Epoch() == epoch && t.Primary(slot) == from && r.handedOver[slot].Load() == epoch
}

type localReadKey struct{}

// LocalRead reports whether a forwarded command's ctx marks it as a
// fallback read: the ExecFunc must run it here, on this node's copy of
// slot, and refuse it if it writes or touches another slot.
func LocalRead(ctx context.Context) (slot uint16, ok bool) {
	slot, ok = ctx.Value(localReadKey{}).(uint16)
	return slot, ok
}

// slowForward: a forwarded command that takes longer is logged, on both
// nodes, to tell where the time went.
const slowForward = 500 * time.Millisecond

// Forward runs args (a whole command) on slot's primary and returns its
// RESP reply, encoded for proto. An error means the command may or may
// not have run there.
func (r *Replicator) Forward(ctx context.Context, slot uint16, proto int, args [][]byte) ([]byte, error) {
	t := r.table.Load()
	if t == nil {
		return nil, errors.New("no slot table yet")
	}
	p := t.Primary(slot)
	fallback := false
	if p == r.cfg.Self {
		// Taking the slot over: a read (Route sends only reads this
		// way) runs at the previous primary.
		prev := r.prevPrimary(slot)
		if prev == "" || r.Serving(slot) {
			return nil, fmt.Errorf("slot %d is this node's own", slot)
		}
		p, fallback = prev, true
	}
	// No copy of args: the frame is encoded before call returns from
	// sending it (frameWriter.send); afterwards args are only read, for
	// the values a carried copy left out, before Forward returns.
	//
	// A primary answers within the replication timeout (a write waits
	// that long for its backups at most). No answer well after that: the
	// stream is dead without having failed (a black-holed link), so
	// drop it for the next calls and give up on this one. A shared
	// coarse deadline, not a timer per forward.
	limit := 2*r.cfg.Timeout + time.Second
	pr := r.peer(p)
	t0 := time.Now()
	rep, pc, err := pr.callOn(ctx, &wire.Msg{Kind: wire.KindForward, Slot: slot, Epoch: t.Epoch(), Proto: uint8(proto), Args: args, Fallback: fallback}, r.dl.after(limit))
	if d := time.Since(t0); d > slowForward {
		r.log.Warn("slow forward", "slot", slot, "to", p, "fallback", fallback, "took", d.Round(time.Millisecond))
	}
	if errors.Is(err, errNotSent) {
		// The primary never saw it: certainly not applied.
		return nil, &Error{"TRYAGAIN", fmt.Sprintf("primary %s of slot %d unreachable: %v", p, slot, err)}
	}
	if errors.Is(err, errNoAnswer) {
		pr.drop(fmt.Errorf("%w: no answer to a forwarded command in %v", errPeerGone, limit))
	}
	if err != nil {
		return nil, fmt.Errorf("forwarding to %s: %w", p, err)
	}
	if rep.Kind != wire.KindReply {
		return nil, fmt.Errorf("forwarding to %s: unexpected %s reply %q", p, rep.Kind, rep.Err)
	}
	if len(rep.Entries) > 0 {
		// This node's copy of the change, counted towards W by the
		// primary: applied, as any copy, before the client hears of
		// it; the primary learns the outcome (see carry.go).
		ack := &wire.Msg{Kind: wire.KindAck, ID: rep.ID, From: string(r.cfg.Self)}
		if err := fillValues(rep.Entries, rep.ValueArgs, args); err != nil {
			ack.Err = "ERR " + err.Error()
		} else {
			ack = r.handleReplicate(ctx, &wire.Msg{Kind: wire.KindReplicate, ID: rep.ID, Epoch: rep.Epoch, From: rep.From, Slot: slot, Entries: rep.Entries})
		}
		// The confirmation only releases the keys' pending marks at the
		// primary: it goes lazily, mostly with the next forward on the
		// stream, which it precedes there.
		if err := pc.queueLazy(ack); err != nil {
			pc.fail(err)
		}
		if ack.Err != "" {
			return nil, &Error{"NOQUORUM", fmt.Sprintf("the primary applied the write but this node could not keep its copy (%s); it may or may not have been applied", ack.Err)}
		}
	}
	return rep.Reply, nil
}

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
		if !r.cl.InContact() {
			return Decision{Err: "TRYAGAIN this node lost contact with the cluster; retry on another node"}
		}
		return Decision{Err: fmt.Sprintf("TRYAGAIN slot %d is being taken over by this node", slot)}
	}
	return Decision{Primary: p}
}

// Forward runs args (a whole command) on slot's primary and returns its
// RESP reply, encoded for proto. An error means the command may or may
// not have run there.
func (r *Replicator) Forward(ctx context.Context, slot uint16, proto int, args [][]byte) ([]byte, error) {
	t := r.table.Load()
	if t == nil {
		return nil, errors.New("no slot table yet")
	}
	p := t.Primary(slot)
	if p == r.cfg.Self {
		return nil, fmt.Errorf("slot %d is this node's own", slot)
	}
	// The request buffer is reused once we return, possibly before the
	// writer goroutine encoded the frame: send a copy.
	own := make([][]byte, len(args))
	for i, a := range args {
		own[i] = append([]byte(nil), a...)
	}
	// A primary answers within the replication timeout (a write waits
	// that long for its backups at most). No answer well after that: the
	// stream is dead without having failed (a black-holed link), so
	// drop it for the next calls and give up on this one.
	fctx, cancel := context.WithTimeout(ctx, 2*r.cfg.Timeout+time.Second)
	defer cancel()
	pr := r.peer(p)
	rep, err := pr.call(fctx, &wire.Msg{Kind: wire.KindForward, Slot: slot, Epoch: t.Epoch(), Proto: uint8(proto), Args: own})
	if errors.Is(err, errNotSent) {
		// The primary never saw it: certainly not applied.
		return nil, &Error{"TRYAGAIN", fmt.Sprintf("primary %s of slot %d unreachable: %v", p, slot, err)}
	}
	if err != nil && ctx.Err() == nil && fctx.Err() != nil {
		pr.drop(fmt.Errorf("%w: no answer to a forwarded command in %v", errPeerGone, 2*r.cfg.Timeout+time.Second))
	}
	if err != nil {
		return nil, fmt.Errorf("forwarding to %s: %w", p, err)
	}
	if rep.Kind != wire.KindReply {
		return nil, fmt.Errorf("forwarding to %s: unexpected %s reply %q", p, rep.Kind, rep.Err)
	}
	return rep.Reply, nil
}

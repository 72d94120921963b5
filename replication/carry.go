package replication

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

// A write forwarded by a node that is itself a backup of the slot does
// not send that node a copy of its own: the primary puts the changed
// entries in its reply (a carry), counts the forwarding node's copy
// towards W, and the forwarding node applies them, fenced by epoch as
// any copy, before it answers its client. So the client's answer still
// means W copies hold the write, and a forwarded write costs the same
// messages and round trips as one sent to the primary directly.
//
// The primary holds the keys' pending marks (reads of them wait) until
// the forwarding node confirms it applied the entries, with a KindAck
// carrying the forward's ID on the same stream. A refusal, no
// confirmation within the replication timeout, or the stream ending
// hands each change to retry, which re-sends it to every backup until W
// copies hold it.

// carry collects, during one forwarded command, the changes whose copy
// for the forwarding node travels in the reply.
type carry struct {
	to    ring.NodeID
	slot  uint16
	t     *ring.Table // the table the changes were counted under
	w     int
	sts   []storage.Stash
	due   time.Time // set when registered: confirmation deadline
	entry []wire.Entry
}

type carryKey struct{}

func carryFrom(ctx context.Context) *carry {
	c, _ := ctx.Value(carryKey{}).(*carry)
	return c
}

// carries is one stream's carries awaiting confirmation, by forward ID.
type carries struct {
	mu     sync.Mutex
	m      map[uint64]*carry
	closed bool // the stream ended: nothing more is confirmed
}

// add registers c under id, before the reply is sent; false when the
// stream has ended.
func (cs *carries) add(id uint64, c *carry, timeout time.Duration) bool {
	c.due = time.Now().Add(timeout)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	if cs.m == nil {
		cs.m = make(map[uint64]*carry)
	}
	cs.m[id] = c
	return true
}

func (cs *carries) take(id uint64) *carry {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.m[id]
	delete(cs.m, id)
	return c
}

// expired removes and returns the carries due before now (all, when
// now is zero: the stream ended, and add refuses from then on).
func (cs *carries) expired(now time.Time) []*carry {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if now.IsZero() {
		cs.closed = true
	}
	var out []*carry
	for id, c := range cs.m {
		if now.IsZero() || c.due.Before(now) {
			out = append(out, c)
			delete(cs.m, id)
		}
	}
	return out
}

// confirmed ends the carry a forwarding node answered about: applied
// (errMsg empty) releases the keys' pending marks; refused hands the
// changes to retry.
func (r *Replicator) confirmed(c *carry, errMsg string) {
	if errMsg == "" {
		for _, st := range c.sts {
			r.pend.finish(c.slot, st.Key)
		}
		return
	}
	r.log.Warn("forwarding node did not keep the copy in its reply; re-sending", "slot", c.slot, "node", c.to, "err", errMsg)
	r.unconfirmed(c)
}

// unconfirmed hands c's changes to retry: the forwarding node may lack
// them.
func (r *Replicator) unconfirmed(c *carry) {
	r.Uncarried.Add(int64(len(c.sts)))
	r.missed(c.to, c.slot)
	for _, st := range c.sts {
		go r.retry(c.t, c.slot, st, c.w)
	}
}

// sweepCarries ends carries left unconfirmed past their deadline, and
// all of them when the stream ends (ctx done).
func (r *Replicator) sweepCarries(ctx context.Context, cs *carries) {
	tick := time.NewTicker(r.cfg.Timeout / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, c := range cs.expired(time.Time{}) {
				r.unconfirmed(c)
			}
			return
		case now := <-tick.C:
			for _, c := range cs.expired(now) {
				r.log.Warn("forwarding node did not confirm the copy in its reply in time; re-sending", "slot", c.slot, "node", c.to)
				r.unconfirmed(c)
			}
		}
	}
}

// takeCarry decides, in replicate, whether the change's copy for the
// forwarding node goes in the forward's reply: it does when ctx carries
// a carry for this slot and table and that node is among backups, which
// it is removed from. It returns that carry, or nil: the copy goes the
// usual way.
func (r *Replicator) takeCarry(ctx context.Context, t *ring.Table, slot uint16, backups *[]ring.NodeID) *carry {
	c := carryFrom(ctx)
	if c == nil || c.slot != slot || c.t != t {
		return nil
	}
	i := slices.Index(*backups, c.to)
	if i < 0 {
		return nil
	}
	*backups = slices.Delete(*backups, i, i+1)
	return c
}

// valueArgs leaves out of entries every value the forwarding node sent
// as one of args (SET key value: the usual case), and returns which (see
// wire.Msg.ValueArgs), or nil when none: a carried copy then costs the
// stream a version, not the value again.
func valueArgs(entries []wire.Entry, args [][]byte) []byte {
	var refs []byte
	for i := range entries {
		e := &entries[i]
		if e.Deleted || len(e.Value) == 0 {
			continue
		}
		for j := 1; j < len(args) && j < 255; j++ {
			if string(args[j]) == e.Value {
				if refs == nil {
					refs = make([]byte, len(entries))
				}
				refs[i], e.Value = byte(j+1), ""
				break
			}
		}
	}
	return refs
}

// fillValues puts back the values valueArgs left out, from args.
func fillValues(entries []wire.Entry, refs []byte, args [][]byte) error {
	if refs == nil {
		return nil
	}
	if len(refs) != len(entries) {
		return fmt.Errorf("%d value references for %d entries", len(refs), len(entries))
	}
	for i, ref := range refs {
		if ref == 0 {
			continue
		}
		if int(ref) > len(args) {
			return fmt.Errorf("value reference %d past %d arguments", ref, len(args))
		}
		entries[i].Value = string(args[ref-1])
	}
	return nil
}

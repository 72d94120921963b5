package cluster

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// A raft leader acts on its slot table only while a quorum of voters has
// recently confirmed it is still the leader. raft's own state is not
// enough: raft steps a leader down only when its lease check runs, and a
// process that was stopped (SIGSTOP, a VM pause, a long stall) resumes
// still believing it leads until that check comes round. In that window
// its client goroutines, woken by requests that queued up meanwhile, would
// answer reads from a table the rest of the cluster has replaced — stale
// reads from a primary whose slots moved while it was stopped. So the
// leader keeps a timestamp, taken before each confirmation round
// (VerifyLeader) that a quorum answered, and InContact trusts it for
// LeaseTimeout, exactly as a follower trusts its last contact from the
// leader. Both are times of real exchanges, which no goroutine can
// refresh after a stop without reaching the other voters again.
//
// One more trap: when raft steps a leader down it stamps its "last
// contact" with the time of stepping down, although nobody was contacted.
// After a stop, that stamp would let the deposed node serve for another
// LeaseTimeout on the table it had. So a node that led and has not yet
// heard of another leader counts only its last confirmation; once another
// leader is known, raft's last contact is that leader's again.
//
// Safety margin: a voter that confirmed at time c ≥ start does not start
// an election before c + heartbeat; the new leader commits a new table
// after that, and the node taking a slot over waits LeaseTimeout (2 ×
// heartbeat) more before serving it. This node stops at start +
// LeaseTimeout, a heartbeat earlier.

// keepLeaderLease confirms leadership every leaderLease/2 while this node
// leads, and at once when it becomes leader. It returns when the node
// closes.
func (n *Node) keepLeaderLease(kick <-chan raft.Observation) {
	defer n.wg.Done()
	tick := time.NewTicker(max(n.timing.leaderLease/2, 10*time.Millisecond))
	defer tick.Stop()
	for {
		if n.raft.State() == raft.Leader {
			start := time.Now()
			if err := n.await(verifyLeader(n.raft)); err == nil {
				n.confirmed.Store(&start)
			} else if errors.Is(err, ErrClosed) {
				return
			}
		}
		n.contact() // samples contact on every node, so lapses are noticed even when idle
		select {
		case <-n.ctx.Done():
			return
		case <-kick:
		case <-tick.C:
		}
	}
}

// leaderConfirmed is when a quorum last confirmed this node as leader
// (the start of the confirming round), or the zero time.
func (n *Node) leaderConfirmed() time.Time {
	if t := n.confirmed.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// contact is when this node last had evidence that its slot table is
// current: for the leader, the later of the last quorum confirmation and
// its last contact as a follower (before it led, a leader's last contact
// is the previous leader's); for a node that led and has seen no other
// leader since, the last confirmation; otherwise raft's last contact with
// the leader. Every call also feeds the lapse count (see Lapses).
func (n *Node) contact() time.Time {
	t := n.rawContact()
	for {
		prev := n.seen.Load()
		if prev != nil && !t.After(*prev) {
			break
		}
		newer := t // only a newer contact is copied to the heap
		if n.seen.CompareAndSwap(prev, &newer) {
			if prev != nil && !prev.IsZero() && t.Sub(*prev) >= n.LeaseTimeout() {
				n.lapses.Add(1)
				n.log.Warn("contact with the cluster lapsed and resumed", "gap", t.Sub(*prev).Round(time.Millisecond))
			}
			break
		}
	}
	return t
}

func (n *Node) rawContact() time.Time {
	conf := n.leaderConfirmed()
	if n.raft.State() == raft.Leader {
		if !n.leading.Load() {
			n.leading.Store(true)
		}
		if last := n.raft.LastContact(); last.After(conf) {
			return last
		}
		return conf
	}
	if n.leading.Load() {
		if _, id := n.raft.LeaderWithID(); id == "" || id == raft.ServerID(n.name) {
			return conf // deposed, no new leader heard of yet
		}
		n.leading.Store(false)
	}
	return n.raft.LastContact()
}

// Lapses counts the times this node's contact with the cluster resumed
// after a gap of LeaseTimeout or more: two successive contacts that far
// apart, as seen by InContact and by a sampler every leaderLease/2. A
// lapse may end before anyone calls InContact while it lasts — a stopped
// process resumes, and the new leader's first heartbeat refreshes raft's
// last contact before the tables the node missed arrive — so the data
// plane compares this count, not only InContact, before acting on what
// it earned before: a new lapse cuts it off as losing contact does.
func (n *Node) Lapses() uint64 { return n.lapses.Load() }

// verifyLeader starts a leadership confirmation round; tests replace it.
var verifyLeader = (*raft.Raft).VerifyLeader

// await waits for a raft future, or until the node closes (ErrClosed).
// raft does not answer every future it accepted: VerifyLeader and
// LeadershipTransfer queue theirs on buffered channels, and a future still
// queued when raft shuts down is never answered, so its Error blocks for
// ever — and Close, which waits for this node's goroutines, with it. When
// that happens the goroutine waiting on Error is left behind; it holds
// nothing but the future.
func (n *Node) await(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.ctx.Done():
		return ErrClosed
	}
}

package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// stuckFuture is a raft future that is not answered until released, as
// raft leaves a VerifyLeader future that was still queued when it shut
// down.
type stuckFuture struct{ release <-chan struct{} }

func (f stuckFuture) Error() error { <-f.release; return raft.ErrRaftShutdown }

// TestCloseWithUnansweredVerify: Close returns although a leadership
// confirmation round is never answered.
func TestCloseWithUnansweredVerify(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	asked := make(chan struct{}, 1)
	orig := verifyLeader
	t.Cleanup(func() { verifyLeader = orig })
	verifyLeader = func(r *raft.Raft) raft.Future {
		select {
		case asked <- struct{}{}:
		default:
		}
		return stuckFuture{release}
	}

	n, err := Open(ctxT(t, 20*time.Second), newSpec(t, "solo", false).config(t, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		n.Close()
		t.Fatal("the leader never asked raft to confirm its leadership")
	}
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close still waiting 10 s after it was called, with a confirmation round unanswered")
	}
}

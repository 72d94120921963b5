package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/stashcluster/stash/internal/transport"
)

// stores are raft's log, stable and snapshot stores.
type stores struct {
	log    raft.LogStore
	stable raft.StableStore
	snap   raft.SnapshotStore
	close  func() error
}

// openStores opens raft's stores under dir/raft, or in memory for dir "".
// The bolt file is opened with a timeout, so a second process on the same
// directory fails instead of hanging on the file lock. (Only the Options
// type is taken from bbolt; raft-boltdb does the rest.)
func openStores(dir string, snapLog *hclogAdapter) (*stores, error) {
	if dir == "" {
		m := raft.NewInmemStore()
		return &stores{log: m, stable: m, snap: raft.NewInmemSnapshotStore(), close: func() error { return nil }}, nil
	}
	dir = filepath.Join(dir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: raft directory: %w", err)
	}
	b, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dir, "raft.db"),
		BoltOptions: &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true},
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft log %s: %w", dir, err)
	}
	snap, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, snapLog)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("cluster: open raft snapshots %s: %w", dir, err)
	}
	return &stores{log: b, stable: b, snap: snap, close: b.Close}, nil
}

// streamLayer carries raft over the cluster port's 'R' streams.
type streamLayer struct {
	net.Listener // the mux's KindRaft listener
	mux          *transport.Mux
	addr         net.Addr        // advertised; raft requires a *net.TCPAddr
	ctx          context.Context // the node's: Close ends dials in flight
}

func (s *streamLayer) Addr() net.Addr { return s.addr }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	c, err := s.mux.Dial(ctx, string(address), transport.KindRaft)
	if errors.Is(err, transport.ErrClosed) {
		return nil, raft.ErrTransportShutdown
	}
	return c, err
}

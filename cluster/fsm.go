package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/stashcluster/stash/ring"
)

// rosterEntry is one member of the committed roster.
type rosterEntry struct {
	Name        string `msgpack:"n"`
	Zone        string `msgpack:"z,omitempty"`
	GossipAddr  string `msgpack:"g,omitempty"`
	ClusterAddr string `msgpack:"c"`
	RESPAddr    string `msgpack:"r,omitempty"`
	AdminAddr   string `msgpack:"a,omitempty"`
	State       State  `msgpack:"s"`
	// DownSince is when the leader saw the node fail, in Unix nanoseconds
	// by the leader's clock; 0 while it is up.
	DownSince int64 `msgpack:"d,omitempty"`
}

// eligible reports whether the member may be primary of a slot.
func (e *rosterEntry) eligible() bool { return e.DownSince == 0 && e.State != StateDraining }

// fsmState is the replicated control-plane state.
type fsmState struct {
	// ClusterID names the cluster; minted by its first leader.
	ClusterID string `msgpack:"id"`
	// Version counts applied commands; a command carries the Version it
	// was computed from and is refused if another was applied since.
	Version uint64 `msgpack:"v"`
	// Roster is sorted by Name.
	Roster []rosterEntry `msgpack:"m"`
	// Table is the slot table's ring encoding; nil before the first.
	Table []byte `msgpack:"t"`
}

// command is the only raft log entry type: replace the state.
type command struct {
	Prev      uint64        `msgpack:"p"`
	ClusterID string        `msgpack:"id"`
	Roster    []rosterEntry `msgpack:"m"`
	Table     []byte        `msgpack:"t,omitempty"` // nil: keep the current table
}

// Log entries and snapshots start with this byte.
const codecVersion = 1

func encodeCommand(c *command) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(codecVersion)
	if err := msgpack.NewEncoder(&buf).Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeVersioned(b []byte, v any) error {
	if len(b) == 0 || b[0] != codecVersion {
		return fmt.Errorf("cluster: unknown control-plane encoding")
	}
	return msgpack.Unmarshal(b[1:], v)
}

// fsm is the raft state machine. raft calls Apply, Snapshot and Restore
// from its FSM goroutine, never concurrently; state may be called from
// any goroutine.
type fsm struct {
	// published is called after every change, from raft's FSM goroutine,
	// with the new table if it changed (else nil). It must not block.
	published func(tableChanged *ring.Table)

	mu  sync.Mutex // guards st and tbl
	st  fsmState
	tbl *ring.Table // decoded st.Table; nil before the first
}

// state returns a copy of the state and the decoded table (shared,
// immutable). The roster slice is the caller's.
func (f *fsm) state() (fsmState, *ring.Table) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Roster = slices.Clone(st.Roster)
	return st, f.tbl
}

// Apply implements raft.FSM. It returns errStale for a command computed
// from an older state and an error for an undecodable one; either way the
// state is unchanged (deterministically on every node).
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c command
	if err := decodeVersioned(l.Data, &c); err != nil {
		return err
	}
	f.mu.Lock()
	if c.Prev != f.st.Version {
		f.mu.Unlock()
		return errStale
	}
	var tbl *ring.Table
	if c.Table != nil {
		tbl = new(ring.Table)
		if err := tbl.UnmarshalBinary(c.Table); err != nil {
			f.mu.Unlock()
			return err
		}
		if f.tbl != nil && tbl.Epoch() <= f.tbl.Epoch() {
			f.mu.Unlock()
			return fmt.Errorf("cluster: table epoch %d does not follow %d", tbl.Epoch(), f.tbl.Epoch())
		}
		f.st.Table = c.Table
		f.tbl = tbl
	}
	f.st.Version++
	f.st.ClusterID = c.ClusterID
	f.st.Roster = c.Roster
	f.mu.Unlock()
	f.published(tbl)
	return nil
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	st, _ := f.state()
	var buf bytes.Buffer
	buf.WriteByte(codecVersion)
	if err := msgpack.NewEncoder(&buf).Encode(&st); err != nil {
		return nil, err
	}
	return snapshot(buf.Bytes()), nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	var st fsmState
	if err := decodeVersioned(b, &st); err != nil {
		return err
	}
	var tbl *ring.Table
	if st.Table != nil {
		tbl = new(ring.Table)
		if err := tbl.UnmarshalBinary(st.Table); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.st, f.tbl = st, tbl
	f.mu.Unlock()
	f.published(tbl)
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		return errors.Join(err, sink.Cancel())
	}
	return sink.Close()
}

func (s snapshot) Release() {}

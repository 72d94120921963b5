package cluster

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/stashcluster/stash/ring"
)

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "test" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

func applyCmd(tb testing.TB, f *fsm, c command) any {
	tb.Helper()
	b, err := encodeCommand(&c)
	if err != nil {
		tb.Fatal(err)
	}
	return f.Apply(&raft.Log{Type: raft.LogCommand, Data: b})
}

func tableBytes(tb testing.TB, epoch uint64, names ...string) []byte {
	tb.Helper()
	var ms []ring.Member
	for _, n := range names {
		ms = append(ms, ring.Member{ID: ring.NodeID(n)})
	}
	t, err := ring.Build(ms, 3, epoch, nil)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := t.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestFSM(t *testing.T) {
	var got []*ring.Table
	f := &fsm{published: func(t *ring.Table) { got = append(got, t) }}
	roster := []rosterEntry{{Name: "a", ClusterAddr: "a:1", State: StateActive}}

	if r := applyCmd(t, f, command{Prev: 0, ClusterID: "c1", Roster: roster, Table: tableBytes(t, 1, "a")}); r != nil {
		t.Fatalf("first command: %v", r)
	}
	st, tbl := f.state()
	if st.Version != 1 || st.ClusterID != "c1" || tbl.Epoch() != 1 || len(got) != 1 || got[0] != tbl {
		t.Fatalf("state %+v, table epoch %d, published %v", st, tbl.Epoch(), got)
	}

	// A stale command (computed from version 0) changes nothing.
	if r := applyCmd(t, f, command{Prev: 0, ClusterID: "c1", Roster: nil}); !errors.Is(r.(error), errStale) {
		t.Fatalf("stale command: %v", r)
	}
	// A table whose epoch does not grow is refused.
	if r := applyCmd(t, f, command{Prev: 1, ClusterID: "c1", Roster: roster, Table: tableBytes(t, 1, "a")}); r == nil {
		t.Fatal("table with the same epoch accepted")
	}
	// Garbage is refused.
	if r := f.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte{9, 9}}); r == nil {
		t.Fatal("garbage accepted")
	}
	if st2, _ := f.state(); st2.Version != 1 {
		t.Fatalf("refused commands changed the version to %d", st2.Version)
	}

	// A roster-only command keeps the table and publishes nil.
	roster2 := append(slices.Clone(roster), rosterEntry{Name: "b", ClusterAddr: "b:1", State: StateJoining})
	if r := applyCmd(t, f, command{Prev: 1, ClusterID: "c1", Roster: roster2}); r != nil {
		t.Fatal(r)
	}
	st, tbl2 := f.state()
	if st.Version != 2 || tbl2 != tbl || len(st.Roster) != 2 || got[len(got)-1] != nil {
		t.Fatalf("roster-only command: %+v", st)
	}

	// Snapshot and restore into a fresh FSM.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	var pub *ring.Table
	g := &fsm{published: func(t *ring.Table) { pub = t }}
	if err := g.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	st3, tbl3 := g.state()
	if st3.Version != 2 || st3.ClusterID != "c1" || !slices.Equal(st3.Roster, st.Roster) ||
		tbl3 == nil || tbl3.Epoch() != 1 || pub != tbl3 {
		t.Fatalf("restored %+v", st3)
	}
}

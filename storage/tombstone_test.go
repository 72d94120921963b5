package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// applyPut applies a put of key at v and returns whether it was applied.
func applyPut(t testing.TB, s *Store, slot uint16, key, value string, v Version) bool {
	t.Helper()
	ok, err := s.Apply(context.Background(), slot, Stash{Key: key, Value: value, Version: v}, false)
	if err != nil {
		t.Fatalf("Apply put %q %v: %v", key, v, err)
	}
	return ok
}

// applyDel applies a delete of key at v and returns whether it was applied.
func applyDel(t testing.TB, s *Store, slot uint16, key string, v Version) bool {
	t.Helper()
	ok, err := s.Apply(context.Background(), slot, Stash{Key: key, Version: v}, true)
	if err != nil {
		t.Fatalf("Apply delete %q %v: %v", key, v, err)
	}
	return ok
}

// change runs Change with a callback returning (next, op).
func change(t testing.TB, s *Store, slot uint16, key string, next Stash, op Op) (Op, Stash) {
	t.Helper()
	got, st, err := s.Change(context.Background(), slot, key, func(Stash, bool) (Stash, Op) { return next, op })
	if err != nil {
		t.Fatalf("Change %q: %v", key, err)
	}
	return got, st
}

// wantTombstone fails unless slot holds a tombstone for key at v.
func wantTombstone(t testing.TB, s *Store, slot uint16, key string, v Version) {
	t.Helper()
	if st, ok := s.Get(slot, key); ok {
		t.Fatalf("Get(%q) = %+v, want a miss", key, st)
	}
	st, ok := s.Lookup(slot, key)
	if want := (Stash{Key: key, Version: v, Deleted: true}); !ok || st != want {
		t.Fatalf("Lookup(%q) = %+v, %v; want %+v", key, st, ok, want)
	}
}

// snapshotAll returns everything s holds, tombstones and expired stashes
// included, by slot and key.
func snapshotAll(s *Store) map[string]Stash {
	m := map[string]Stash{}
	for slot := range uint16(Slots) {
		s.ScanSlotAll(slot, func(st Stash) bool {
			m[fmt.Sprintf("%d/%s", slot, st.Key)] = st
			return true
		})
	}
	return m
}

// TestDeleteRefusesOlderPut is the bug tombstones fix: after a delete, an
// older put arriving late (a delayed replication message, a lagging
// replica's copy) must not bring the key back — in memory, after a clean
// Close and reopen (tombstone loaded from stash.db) and after a crash
// (tombstone replayed from the log).
func TestDeleteRefusesOlderPut(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	cfg := noCheckpoints(dir, clock)
	s := openStore(t, cfg)
	_, old := change(t, s, 4, "k", Stash{Value: "v1"}, OpPut)
	op, tomb := change(t, s, 4, "k", Stash{}, OpDelete)
	if op != OpDelete || !tomb.Deleted || !old.Version.Less(tomb.Version) {
		t.Fatalf("delete: %v %+v (put was %v)", op, tomb, old.Version)
	}
	check := func(t *testing.T, s *Store) {
		t.Helper()
		wantTombstone(t, s, 4, "k", tomb.Version)
		if applyPut(t, s, 4, "k", "stale", old.Version) {
			t.Fatal("an older put was applied over the tombstone")
		}
		if applyPut(t, s, 4, "k", "stale", tomb.Version) {
			t.Fatal("a put of the tombstone's version was applied over it")
		}
		wantTombstone(t, s, 4, "k", tomb.Version)
	}
	check(t, s)
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	img := crashImage(t, dir) // the tombstone is only in the log

	t.Run("reopen", func(t *testing.T) {
		check(t, reopen(t, s, cfg))
	})
	t.Run("crash", func(t *testing.T) {
		r := openStore(t, noCheckpoints(img, clock))
		if st := r.Stats(); st.Replayed == 0 || st.Tombstones != 1 || st.Stashes != 0 {
			t.Fatalf("Stats after replay: %+v", st)
		}
		check(t, r)
	})
}

// TestApplyTombstones checks Apply newer-wins against tombstones, both
// ways, and the counters and scans as tombstones come and go.
func TestApplyTombstones(t *testing.T) {
	type held struct {
		v   Version
		del bool
	}
	v := func(e uint32, s uint64) Version { return Version{e, s} }
	cases := []struct {
		name    string
		held    *held // nil: nothing held
		give    Version
		del     bool
		applied bool
		want    *held // nil: nothing held afterwards
	}{
		{"absent delete leaves a tombstone", nil, v(1, 3), true, true, &held{v(1, 3), true}},
		{"newer delete of live", &held{v(1, 5), false}, v(1, 6), true, true, &held{v(1, 6), true}},
		{"newer-epoch delete of live", &held{v(1, 5), false}, v(2, 1), true, true, &held{v(2, 1), true}},
		{"equal delete of live", &held{v(1, 5), false}, v(1, 5), true, false, &held{v(1, 5), false}},
		{"older delete of live", &held{v(1, 5), false}, v(1, 4), true, false, &held{v(1, 5), false}},
		{"older put over tombstone", &held{v(1, 5), true}, v(1, 4), false, false, &held{v(1, 5), true}},
		{"older-epoch put over tombstone", &held{v(2, 1), true}, v(1, 9), false, false, &held{v(2, 1), true}},
		{"equal put over tombstone", &held{v(1, 5), true}, v(1, 5), false, false, &held{v(1, 5), true}},
		{"newer put revives", &held{v(1, 5), true}, v(1, 6), false, true, &held{v(1, 6), false}},
		{"newer delete over tombstone", &held{v(1, 5), true}, v(1, 7), true, true, &held{v(1, 7), true}},
		{"older delete over tombstone", &held{v(1, 5), true}, v(1, 4), true, false, &held{v(1, 5), true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, Config{})
			ctx := context.Background()
			if tc.held != nil {
				if ok, err := s.Apply(ctx, 3, Stash{Key: "k", Value: "held", Version: tc.held.v}, tc.held.del); !ok || err != nil {
					t.Fatalf("seed: %v %v", ok, err)
				}
			}
			ok, err := s.Apply(ctx, 3, Stash{Key: "k", Value: "new", Version: tc.give}, tc.del)
			if err != nil || ok != tc.applied {
				t.Fatalf("Apply = %v, %v; want %v", ok, err, tc.applied)
			}
			st := s.Stats()
			got, present := s.Lookup(3, "k")
			switch {
			case tc.want == nil:
				if present {
					t.Fatalf("holds %+v", got)
				}
			case tc.want.del:
				wantTombstone(t, s, 3, "k", tc.want.v)
				if st.Tombstones != 1 || st.Stashes != 0 || st.Bytes != 0 || s.SlotCount(3) != 0 {
					t.Fatalf("Stats %+v, SlotCount %d", st, s.SlotCount(3))
				}
			default:
				live := mustGet(t, s, 3, "k")
				if live.Version != tc.want.v || got != live {
					t.Fatalf("Get = %+v, Lookup = %+v; want version %v", live, got, tc.want.v)
				}
				if st.Tombstones != 0 || st.Stashes != 1 || st.Bytes != int64(1+len(live.Value)) || s.SlotCount(3) != 1 {
					t.Fatalf("Stats %+v, SlotCount %d", st, s.SlotCount(3))
				}
			}
			// Update continues after the highest sequence seen.
			put(t, s, 3, "other", "x", 0)
			var floor uint64
			if tc.applied {
				floor = tc.give.Seq
			}
			if tc.held != nil {
				floor = max(floor, tc.held.v.Seq)
			}
			if got := mustGet(t, s, 3, "other").Version.Seq; got <= floor {
				t.Fatalf("next assigned seq %d, not above %d", got, floor)
			}
		})
	}
	// A tombstone shipped as a Stash (Deleted set) is applied as a delete.
	s := openStore(t, Config{})
	applyPut(t, s, 1, "k", "v", v(1, 1))
	if ok, err := s.Apply(context.Background(), 1, Stash{Key: "k", Version: v(1, 2), Deleted: true}, false); !ok || err != nil {
		t.Fatalf("Apply of a Deleted stash: %v %v", ok, err)
	}
	wantTombstone(t, s, 1, "k", v(1, 2))
}

// TestUpdateOverTombstone checks that Update's callback sees a tombstoned
// key as absent, that deleting it again changes nothing, and that a put
// gets a version newer than the tombstone's, also one applied from a peer.
func TestUpdateOverTombstone(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	put(t, s, 2, "k", "v", 0)
	_, tomb := change(t, s, 2, "k", Stash{}, OpDelete)
	applyDel(t, s, 2, "peer", Version{1, 50}) // a tombstone from a peer, ahead of this slot's sequence

	for _, tc := range []struct {
		key  string
		tomb Version
	}{{"k", tomb.Version}, {"peer", Version{1, 50}}} {
		var saw *Stash
		op, _, err := s.Change(ctx, 2, tc.key, func(cur Stash, ok bool) (Stash, Op) {
			if ok {
				saw = &cur
			}
			return Stash{}, OpDelete
		})
		if err != nil || op != OpKeep || saw != nil {
			t.Fatalf("%s: delete of a tombstone: op %v err %v; callback saw %+v", tc.key, op, err, saw)
		}
		wantTombstone(t, s, 2, tc.key, tc.tomb) // unchanged
		op, st := change(t, s, 2, tc.key, Stash{Value: "back"}, OpPut)
		if op != OpPut || !tc.tomb.Less(st.Version) {
			t.Fatalf("%s: put over tombstone %v: %v %+v", tc.key, tc.tomb, op, st)
		}
		if got := mustGet(t, s, 2, tc.key); got != st {
			t.Fatalf("%s: Get = %+v, Change returned %+v", tc.key, got, st)
		}
		if applyPut(t, s, 2, tc.key, "stale", tc.tomb) {
			t.Fatalf("%s: the revived key lost to the tombstone's version", tc.key)
		}
	}
	if st := s.Stats(); st.Tombstones != 0 || st.Stashes != 2 {
		t.Fatalf("Stats: %+v", st)
	}
}

// TestExpiryLeavesTombstone checks that a stash that expires leaves a
// tombstone at its version, whether the reaper, a delete or a reload finds
// it expired, so that an older copy fetched later from a lagging replica
// is refused.
func TestExpiryLeavesTombstone(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"reaper", "delete", "reload", "reload after reaper"} {
		t.Run(how, func(t *testing.T) {
			clock := newFakeClock()
			cfg := Config{Dir: t.TempDir(), Now: clock.Now, ReapInterval: time.Hour}
			s := openStore(t, cfg)
			v := Version{1, 10}
			if ok, _ := s.Apply(ctx, 6, Stash{Key: "k", Value: "v", ExpireAt: clock.NowMs() + 1000, Version: v}, false); !ok {
				t.Fatal("seed")
			}
			clock.Advance(2 * time.Second)
			if _, ok := s.Lookup(6, "k"); !ok || s.Stats().Tombstones != 0 {
				t.Fatal("expired stash not held before the reaper ran")
			}
			switch how {
			case "reaper":
				s.reapPass(0, reapBudget, nil)
			case "delete":
				if op := del(t, s, 6, "k"); op != OpKeep {
					t.Fatalf("delete of an expired stash: %v", op)
				}
			case "reload":
				s = reopen(t, s, cfg)
			case "reload after reaper":
				s.reapPass(0, reapBudget, nil)
				s = reopen(t, s, cfg)
			}
			wantTombstone(t, s, 6, "k", v)
			if st := s.Stats(); st.Tombstones != 1 || st.Stashes != 0 || st.Bytes != 0 {
				t.Fatalf("Stats: %+v", st)
			}
			if (how == "reaper" || how == "delete") && s.Stats().Expired != 1 {
				t.Fatalf("Stats.Expired = %d", s.Stats().Expired)
			}
			if applyPut(t, s, 6, "k", "stale copy", Version{1, 9}) || applyPut(t, s, 6, "k", "stale copy", v) {
				t.Fatal("an older copy was applied over the expiry's tombstone")
			}
			s = reopen(t, s, cfg) // and the tombstone is durable
			wantTombstone(t, s, 6, "k", v)
			if !applyPut(t, s, 6, "k", "new", Version{1, 11}) {
				t.Fatal("a newer put was refused")
			}
		})
	}
}

// TestTombstoneGC checks that a tombstone lives TombstoneTTL after its
// delete (after its expiry, for an expired stash), by the store's clock,
// across a reopen too, and is then removed from memory and disk, leaving
// nothing. After that an older put is accepted again: the price of
// bounded tombstones, which is why TombstoneTTL must exceed how long a
// replica can lag.
func TestTombstoneGC(t *testing.T) {
	clock := newFakeClock()
	cfg := Config{Dir: t.TempDir(), Now: clock.Now, ReapInterval: time.Millisecond, TombstoneTTL: 10 * time.Second}
	s := openStore(t, cfg)
	ctx := context.Background()
	old := Version{1, 1}
	applyPut(t, s, 1, "deleted", "v", old)
	applyDel(t, s, 1, "deleted", Version{1, 2})
	applyPut(t, s, 1, "expired", "v", old)
	s.Apply(ctx, 1, Stash{Key: "expired", Value: "v", ExpireAt: clock.NowMs() + 4000, Version: Version{1, 3}}, false)
	put(t, s, 1, "live", "v", 0)

	clock.Advance(5 * time.Second) // "expired" expires: its tombstone is due at +14s
	waitFor(t, "the reaper", func() bool { return s.Stats().Tombstones == 2 })
	s = reopen(t, s, cfg) // the removal times survive a reopen
	clock.Advance(4 * time.Second)
	time.Sleep(20 * time.Millisecond) // let the reaper run: nothing is due yet (at +9s)
	if st := s.Stats(); st.Tombstones != 2 {
		t.Fatalf("a tombstone was removed early: %+v", st)
	}
	if applyPut(t, s, 1, "deleted", "stale", old) {
		t.Fatal("older put applied before TombstoneTTL")
	}

	clock.Advance(2 * time.Second) // +11s: "deleted"'s tombstone is due
	waitFor(t, "the first tombstone removed", func() bool { return s.Stats().Tombstones == 1 })
	if _, ok := s.Lookup(1, "deleted"); ok {
		t.Fatal("tombstone still held")
	}
	wantTombstone(t, s, 1, "expired", Version{1, 3})
	clock.Advance(3 * time.Second) // +14s
	waitFor(t, "the second tombstone removed", func() bool { return s.Stats().Tombstones == 0 })
	if st := s.Stats(); st.Stashes != 1 || st.Expired != 0 { // Expired counts since Open
		t.Fatalf("Stats: %+v", st)
	}

	// Removed from disk too.
	s = reopen(t, s, cfg)
	for _, k := range []string{"deleted", "expired"} {
		if st, ok := s.Lookup(1, k); ok {
			t.Fatalf("%q after reopen: %+v", k, st)
		}
	}
	if st := s.Stats(); st.Tombstones != 0 || st.Stashes != 1 {
		t.Fatalf("Stats after reopen: %+v", st)
	}
	// The trade-off: with the tombstone gone, an older put wins again.
	if !applyPut(t, s, 1, "deleted", "stale", old) {
		t.Fatal("older put refused after the tombstone was collected")
	}
}

// TestDigestTombstones checks that replicas differing only by a delete
// have different digests, and that the digest stays order-independent.
func TestDigestTombstones(t *testing.T) {
	ctx := context.Background()
	base := []Stash{
		{Key: "a", Value: "1", Version: Version{1, 1}},
		{Key: "b", Value: "2", Version: Version{1, 2}},
	}
	fill := func(t *testing.T, sts ...Stash) *Store {
		s := openStore(t, Config{})
		for _, st := range sts {
			if ok, err := s.Apply(ctx, 9, st, false); !ok || err != nil {
				t.Fatalf("Apply %+v: %v %v", st, ok, err)
			}
		}
		return s
	}
	delB := Stash{Key: "b", Version: Version{1, 3}, Deleted: true}
	live := fill(t, base...)
	deleted := fill(t, append(base, delB)...)
	if live.Digest(9) == deleted.Digest(9) {
		t.Fatal("replicas that differ by a delete have equal digests")
	}
	// The same tombstone, reached another way (no put of b before it; in
	// another order), digests the same.
	if other := fill(t, delB, base[0]); other.Digest(9) != deleted.Digest(9) {
		t.Fatal("equal contents, different digests")
	}
	// A tombstone is not a live stash of the same version, nor absence.
	asLive := fill(t, base[0], Stash{Key: "b", Version: delB.Version})
	absent := fill(t, base[0])
	for name, s := range map[string]*Store{"live": asLive, "absent": absent} {
		if s.Digest(9) == deleted.Digest(9) {
			t.Fatalf("a tombstone digests like %s", name)
		}
	}
	// Tombstones of different versions differ.
	if newer := fill(t, base[0], Stash{Key: "b", Version: Version{1, 4}, Deleted: true}); newer.Digest(9) == deleted.Digest(9) {
		t.Fatal("tombstone version not in the digest")
	}
}

// TestChange checks what Change returns for each Op, and that Update is
// Change without the result.
func TestChange(t *testing.T) {
	clock := newFakeClock()
	s := openStore(t, Config{Now: clock.Now, ReapInterval: time.Hour})
	s.SetEpoch(3)

	buf := []byte("key-1")
	op, st := change(t, s, 5, string(buf), Stash{Key: "ignored", Value: "v", ExpireAt: clock.NowMs() + 5000, Deleted: true}, OpPut)
	want := Stash{Key: "key-1", Kind: KindString, Value: "v", ExpireAt: clock.NowMs() + 5000, Version: Version{3, 1}}
	if op != OpPut || st != want {
		t.Fatalf("put: %v %+v; want %+v", op, st, want)
	}
	copy(buf, "xxxxx") // the store copied the key
	if got, ok := s.Lookup(5, "key-1"); !ok || got != want {
		t.Fatalf("Lookup = %+v, %v", got, ok)
	}

	op, st = change(t, s, 5, "key-1", Stash{}, OpPut)
	if op != OpPut || st.Version != (Version{3, 2}) || st.Key != "key-1" || st.ExpireAt != 0 {
		t.Fatalf("overwrite: %v %+v", op, st)
	}
	op, st = change(t, s, 5, "key-1", Stash{Value: "ignored"}, OpKeep)
	if op != OpKeep || st != (Stash{}) {
		t.Fatalf("keep: %v %+v", op, st)
	}
	op, st = change(t, s, 5, "key-1", Stash{}, OpDelete)
	if want := (Stash{Key: "key-1", Version: Version{3, 3}, Deleted: true}); op != OpDelete || st != want {
		t.Fatalf("delete: %v %+v; want %+v", op, st, want)
	}
	wantTombstone(t, s, 5, "key-1", Version{3, 3})
	for _, key := range []string{"key-1", "never"} { // a tombstone, nothing
		if op, st = change(t, s, 5, key, Stash{}, OpDelete); op != OpKeep || st != (Stash{}) {
			t.Fatalf("delete of %q: %v %+v", key, op, st)
		}
	}
	// A delete that finds an expired stash leaves its tombstone but
	// reports OpKeep: every replica's own expiry does the same.
	change(t, s, 5, "exp", Stash{Value: "v", ExpireAt: clock.NowMs() + 10}, OpPut)
	clock.Advance(time.Second)
	if op, st = change(t, s, 5, "exp", Stash{}, OpDelete); op != OpKeep || st != (Stash{}) {
		t.Fatalf("delete of an expired stash: %v %+v", op, st)
	}
	wantTombstone(t, s, 5, "exp", Version{3, 4})
	// A given version is returned as stored.
	if op, st = change(t, s, 5, "given", Stash{Value: "g", Version: Version{7, 70}}, OpPut); op != OpPut || st.Version != (Version{7, 70}) {
		t.Fatalf("given version: %v %+v", op, st)
	}
}

// TestTombstonesHidden checks that tombstones are invisible to everything
// but Lookup and ScanSlotAll, are counted apart, and that DropSlot and
// FlushAll remove them, on disk too.
func TestTombstonesHidden(t *testing.T) {
	clock := newFakeClock()
	cfg := Config{Dir: t.TempDir(), Now: clock.Now, ReapInterval: time.Hour}
	s := openStore(t, cfg)
	ctx := context.Background()
	for i := range 6 {
		put(t, s, uint16(i%2), fmt.Sprint("k", i), "val", 0)
	}
	put(t, s, 0, "expiring", "val", clock.NowMs()+10)
	del(t, s, 0, "k0")
	del(t, s, 1, "k1")
	del(t, s, 1, "k3")
	clock.Advance(time.Second) // "expiring" expired, not reaped

	if st := s.Stats(); st.Stashes != 4 || st.Tombstones != 3 || st.Bytes != 3*5+8+3 {
		t.Fatalf("Stats: %+v", st)
	}
	if s.SlotCount(0) != 3 || s.SlotCount(1) != 1 {
		t.Fatalf("SlotCount = %d, %d", s.SlotCount(0), s.SlotCount(1))
	}
	var scanned []string
	s.Scan(0, 100, func(k string) { scanned = append(scanned, k) })
	if len(scanned) != 3 {
		t.Fatalf("Scan visited %v", scanned)
	}
	visit := func(scan func(uint16, func(Stash) bool), slot uint16) map[string]bool {
		m := map[string]bool{}
		scan(slot, func(st Stash) bool { m[st.Key] = st.Deleted; return true })
		return m
	}
	if got, want := visit(s.ScanSlot, 0), map[string]bool{"k2": false, "k4": false}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ScanSlot = %v, want %v", got, want)
	}
	scanAll := func(slot uint16, fn func(Stash) bool) { s.ScanSlotAll(slot, fn) }
	if got, want := visit(scanAll, 0), map[string]bool{"k0": true, "k2": false, "k4": false, "expiring": false}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ScanSlotAll = %v, want %v", got, want)
	}
	if got, want := visit(scanAll, 1), map[string]bool{"k1": true, "k3": true, "k5": false}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ScanSlotAll = %v, want %v", got, want)
	}
	if st, ok := s.Lookup(0, "expiring"); !ok || st.Deleted || st.Value != "val" {
		t.Fatalf("Lookup of an expired stash: %+v %v", st, ok)
	}

	if err := s.DropSlot(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Tombstones != 1 || st.Stashes != 3 {
		t.Fatalf("Stats after DropSlot: %+v", st)
	}
	if _, ok := s.Lookup(1, "k1"); ok {
		t.Fatal("DropSlot left a tombstone")
	}
	s = reopen(t, s, cfg)
	if _, ok := s.Lookup(1, "k1"); ok || s.Stats().Tombstones != 2 { // k0, and "expiring" turned one at load
		t.Fatalf("after DropSlot and reopen: %+v", s.Stats())
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Tombstones != 0 || st.Stashes != 0 {
		t.Fatalf("Stats after FlushAll: %+v", st)
	}
	s = reopen(t, s, cfg)
	if st := s.Stats(); st.Tombstones != 0 || st.Stashes != 0 || len(snapshotAll(s)) != 0 {
		t.Fatalf("after FlushAll and reopen: %+v", st)
	}
}

// TestFormat2Upgraded checks that a stash.db of format 2 (no tombstones)
// and a log segment of format 1 are read, and the file marked format 3.
func TestFormat2Upgraded(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	put(t, s, 1, "a", "v", 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var ckpt uint64
	withBolt(t, dir, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		ckpt = binary.BigEndian.Uint64(meta.Get(metaWALCkpt))
		return meta.Put(metaFormat, binary.BigEndian.AppendUint32(nil, 2))
	})
	// A format 1 segment after the checkpoint, as a crash would leave it.
	b := binary.BigEndian.AppendUint32(walMagic[:], 1)
	b = appendWALRecord(b, &walRecord{op: walPut, slot: 1, kind: KindString, epoch: 1, seq: 7, hw: 7, key: []byte("b"), value: []byte("w")})
	b = appendWALRecord(b, &walRecord{op: walDelete, slot: 1, hw: 7, key: []byte("a")})
	if err := os.WriteFile(filepath.Join(dir, walDirName, segmentName(ckpt+1)), b, 0o600); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Config{Dir: dir})
	if st := s.Stats(); st.Replayed != 2 {
		t.Fatalf("Stats: %+v", st)
	}
	mustGet(t, s, 1, "b")
	if _, ok := s.Lookup(1, "a"); ok {
		t.Fatal("format 1 delete not replayed")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	withBolt(t, dir, func(tx *bolt.Tx) error {
		if got := binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(metaFormat)); got != formatVersion {
			t.Errorf("format %d after Open, want %d", got, formatVersion)
		}
		return nil
	})
}

package stashops

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
	"github.com/stashcluster/stash/tag"
)

func newOps(t testing.TB, now *time.Time) (*Ops, *storage.Store) {
	t.Helper()
	clock := func() time.Time { return *now }
	st, err := storage.Open(storage.Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	codec, err := tag.NewCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	return &Ops{Store: st, Codec: codec, Hint: tag.HintFor("n1"), Slot: ring.Slot, Now: clock, MaxValue: 64, DefaultTTL: time.Hour}, st
}

func TestPutAppliesDefaultTTLAndSetKeepsIt(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	o, st := newOps(t, &now)
	ctx := context.Background()
	tg, err := o.Put(ctx, []byte("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := o.Codec.Decode(tg)
	if dec.Hint != o.Hint {
		t.Fatalf("hint %x, want %x", dec.Hint, o.Hint)
	}
	key := dec.ID.Key()
	s, ok := st.Get(ring.Slot(key), key)
	if !ok || s.ExpireAt != now.Add(time.Hour).UnixMilli() {
		t.Fatalf("after Put: %+v %v", s, ok)
	}
	now = now.Add(10 * time.Minute)
	if err := o.Set(ctx, tg, []byte("b"), 0); err != nil {
		t.Fatal(err)
	}
	s, _ = st.Get(ring.Slot(key), key)
	if s.Value != "b" || s.ExpireAt != now.Add(50*time.Minute).UnixMilli() {
		t.Fatalf("Set without TTL changed the expiry: %+v", s)
	}
	now = now.Add(time.Hour)
	if _, err := o.Get(ctx, tg); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after expiry: %v", err)
	}
	if err := o.Touch(ctx, tg, time.Minute); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Touch of expired: %v", err)
	}
	// Set brings an expired stash back under the same tag.
	if err := o.Set(ctx, tg, []byte("c"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := o.Get(ctx, tg); err != nil || string(v) != "c" {
		t.Fatalf("recreated: %q %v", v, err)
	}
}

// sameID yields the same 16 bytes again and again, then others.
type sameID struct{ n int }

func (r *sameID) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 7
	}
	if r.n >= 2 {
		p[0] = byte(r.n)
	}
	r.n++
	return len(p), nil
}

func TestPutNeverOverwritesAnExistingStash(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	o, _ := newOps(t, &now)
	o.Rand = &sameID{}
	ctx := context.Background()
	t1, err := o.Put(ctx, []byte("first"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := o.Put(ctx, []byte("second"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if t1 == t2 {
		t.Fatal("colliding ID reused")
	}
	if v, _ := o.Get(ctx, t1); string(v) != "first" {
		t.Fatalf("first stash overwritten: %q", v)
	}
}

func TestAcceptRestrictsMintedSlots(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	o, _ := newOps(t, &now)
	o.Accept = func(slot uint16) bool { return slot < 1024 }
	for i := 0; i < 20; i++ {
		tg, err := o.Put(context.Background(), []byte("x"), 0)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := o.Codec.Decode(tg)
		if s := ring.Slot(d.ID.Key()); s >= 1024 {
			t.Fatalf("minted into slot %d", s)
		}
	}
}

func TestErrors(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	o, st := newOps(t, &now)
	ctx := context.Background()
	if _, err := o.Put(ctx, make([]byte, 65), 0); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := o.Put(ctx, []byte("x"), -time.Second); !errors.Is(err, ErrBadTTL) {
		t.Fatalf("negative TTL: %v", err)
	}
	if _, err := o.Get(ctx, "nonsense"); !errors.Is(err, tag.ErrBadTag) {
		t.Fatalf("bad tag: %v", err)
	}
	tg, _ := o.Put(ctx, []byte("x"), 0)
	d, _ := o.Codec.Decode(tg)
	key := d.ID.Key()
	st.Update(ctx, ring.Slot(key), key, func(storage.Stash, bool) (storage.Stash, storage.Op) {
		return storage.Stash{Kind: storage.KindHash, Value: storage.EncodeHash([]storage.Field{{Name: "a", Value: "b"}})}, storage.OpPut
	})
	if _, err := o.Get(ctx, tg); !errors.Is(err, ErrWrongType) {
		t.Fatalf("hash under a stash key: %v", err)
	}
	if err := o.Set(ctx, tg, []byte("y"), 0); !errors.Is(err, ErrWrongType) {
		t.Fatalf("Set over a hash: %v", err)
	}
}

// recoverStore is a storage.Store whose Recover puts a stash it was given
// (the copy "elsewhere") under the key it is asked for, and records the
// hints it was asked with.
type recoverStore struct {
	*storage.Store
	elsewhere map[string]string
	hints     []uint32
	err       error
}

func (s *recoverStore) Recover(ctx context.Context, slot uint16, key string, hint uint32) (bool, error) {
	s.hints = append(s.hints, hint)
	v, ok := s.elsewhere[key]
	if !ok || s.err != nil {
		return false, s.err
	}
	delete(s.elsewhere, key)
	_, err := s.Update(ctx, slot, key, func(storage.Stash, bool) (storage.Stash, storage.Op) {
		return storage.Stash{Kind: storage.KindString, Value: v}, storage.OpPut
	})
	return err == nil, err
}

// TestMissesAskTheStoreToRecover: Get, Touch and Delete of a stash the
// store has no record of ask it to recover the stash, with the tag's
// hint, and act on what it recovered; a failure to recover is reported.
func TestMissesAskTheStoreToRecover(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	o, st := newOps(t, &now)
	rs := &recoverStore{Store: st, elsewhere: map[string]string{}}
	o.Store = rs
	ctx := context.Background()
	minted := map[string]string{} // tag -> key
	mint := func(hint uint32) string {
		o.Hint = hint
		tg, err := o.Put(ctx, []byte("x"), 0)
		if err != nil {
			t.Fatal(err)
		}
		dec, _ := o.Codec.Decode(tg)
		key := dec.ID.Key()
		if _, err := st.Update(ctx, ring.Slot(key), key, func(storage.Stash, bool) (storage.Stash, storage.Op) {
			return storage.Stash{}, storage.OpDelete
		}); err != nil {
			t.Fatal(err)
		}
		minted[tg] = key
		return tg
	}
	// Put, then forget: the tombstone makes the store's record
	// authoritative, so Recover is asked only about a key without one.
	g1 := mint(tag.HintFor("n2"))
	if _, err := o.Get(ctx, g1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a deleted stash: %v", err)
	}
	if len(rs.hints) != 1 || rs.hints[0] != tag.HintFor("n2") {
		t.Fatalf("Recover asked with hints %x, want [%x]", rs.hints, tag.HintFor("n2"))
	}

	rs.elsewhere[minted[g1]] = "found"
	if v, err := o.Get(ctx, g1); err != nil || string(v) != "found" {
		t.Fatalf("Get after recovery: %q %v", v, err)
	}
	g2 := mint(tag.HintFor("n3"))
	rs.elsewhere[minted[g2]] = "gone soon"
	if err := o.Delete(ctx, g2); err != nil {
		t.Fatalf("Delete of a recoverable stash: %v", err)
	}
	if _, ok := st.Get(ring.Slot(minted[g2]), minted[g2]); ok {
		t.Fatal("Delete recovered the stash but left it live")
	}
	g3 := mint(tag.HintFor("n3"))
	rs.elsewhere[minted[g3]] = "touched"
	if err := o.Touch(ctx, g3, time.Minute); err != nil {
		t.Fatalf("Touch of a recoverable stash: %v", err)
	}
	if s, ok := st.Get(ring.Slot(minted[g3]), minted[g3]); !ok || s.ExpireAt != now.Add(time.Minute).UnixMilli() {
		t.Fatalf("after Touch: %+v %v", s, ok)
	}
	rs.err = errors.New("NOQUORUM no")
	g4 := mint(tag.HintFor("n3"))
	if _, err := o.Get(ctx, g4); err != rs.err {
		t.Fatalf("Get with a failing Recover: %v, want its error", err)
	}
	if err := o.Delete(ctx, g4); err != rs.err {
		t.Fatalf("Delete with a failing Recover: %v, want its error", err)
	}
}

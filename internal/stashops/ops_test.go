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

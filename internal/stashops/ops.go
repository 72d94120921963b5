// Package stashops holds the semantics of the STASH.* operations (put,
// set, get, touch, delete a stash named by a signed tag) over a key/value
// store, shared by the RESP front end and the embedded Go API so the two
// cannot drift apart.
//
// Concurrency: an Ops is immutable after construction and safe for
// concurrent use; it holds no locks of its own (the store serialises
// writes per key).
package stashops

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/stashcluster/stash/storage"
	"github.com/stashcluster/stash/tag"
)

var (
	// ErrNotFound: no live stash under that tag.
	ErrNotFound = errors.New("stash: not found")
	// ErrWrongType: the key holds a value of another kind (a hash).
	ErrWrongType = errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")
	// ErrValueTooLarge: see *ValueTooLargeError.
	ErrValueTooLarge = errors.New("stash: value too large")
	// ErrBadTTL: a negative or overflowing time to live.
	ErrBadTTL = errors.New("stash: invalid TTL")
)

// ValueTooLargeError reports a value over the configured limit.
type ValueTooLargeError struct{ Size, Limit int }

func (e *ValueTooLargeError) Error() string {
	return fmt.Sprintf("value of %d bytes exceeds max-value-bytes (%d)", e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrValueTooLarge) true.
func (e *ValueTooLargeError) Is(target error) bool { return target == ErrValueTooLarge }

// Store is the part of the key/value layer the operations need.
// storage.Store satisfies it; the cluster layer wraps it.
type Store interface {
	// Get returns the live stash under key, from the caller's goroutine.
	Get(slot uint16, key string) (storage.Stash, bool)
	// Update runs fn under the key's lock; fn must not block.
	Update(ctx context.Context, slot uint16, key string, fn func(cur storage.Stash, ok bool) (storage.Stash, storage.Op)) (storage.Op, error)
}

// Recoverer is a Store that can look elsewhere for a stash it has no
// record of. In a cluster, a primary asks the node a tag's hint names,
// while a slot table change is recent; it stores what it finds (reporting
// true) so that reading again finds it.
type Recoverer interface {
	Recover(ctx context.Context, slot uint16, key string, hint uint32) (bool, error)
}

// Ops performs stash operations. Fill every field but Rand, Accept and
// DefaultTTL, which may be left zero.
type Ops struct {
	Store Store
	Codec *tag.Codec
	// Hint is this node's hint, written into minted tags.
	Hint uint32
	// Slot maps a key to its slot (ring.Slot).
	Slot func(key string) uint16
	// Now is the clock for expiry.
	Now func() time.Time
	// MaxValue is the largest value accepted, in bytes.
	MaxValue int
	// DefaultTTL applies to a new stash created without a TTL; 0 = none.
	DefaultTTL time.Duration
	// Rand is the source of stash IDs; nil = crypto/rand.
	Rand io.Reader
	// Accept, if set, restricts minted IDs to slots it accepts (an
	// embedded node mints IDs whose slot it is primary for).
	Accept func(slot uint16) bool
}

func (o *Ops) expiry(ttl time.Duration, now time.Time) (int64, error) {
	if ttl < 0 {
		return 0, ErrBadTTL
	}
	if ttl == 0 {
		ttl = o.DefaultTTL
	}
	if ttl == 0 {
		return 0, nil
	}
	ms := ttl.Milliseconds()
	if ms == 0 {
		ms = 1
	}
	n := now.UnixMilli()
	if ms > (1<<62)-n {
		return 0, ErrBadTTL
	}
	return n + ms, nil
}

func (o *Ops) checkSize(v []byte) error {
	if len(v) > o.MaxValue {
		return &ValueTooLargeError{Size: len(v), Limit: o.MaxValue}
	}
	return nil
}

// Put stores value as a new stash and returns its tag. ttl 0 means the
// default TTL.
func (o *Ops) Put(ctx context.Context, value []byte, ttl time.Duration) (string, error) {
	if err := o.checkSize(value); err != nil {
		return "", err
	}
	exp, err := o.expiry(ttl, o.Now())
	if err != nil {
		return "", err
	}
	r := o.Rand
	if r == nil {
		r = rand.Reader
	}
	accept := func(id tag.ID) bool { return true }
	if o.Accept != nil {
		accept = func(id tag.ID) bool { return o.Accept(o.Slot(id.Key())) }
	}
	for attempt := 0; attempt < 4; attempt++ {
		id, err := tag.Mint(r, accept, 1024)
		if err != nil {
			return "", fmt.Errorf("stash: minting an ID: %w", err)
		}
		key := id.Key()
		v := string(value)
		fresh := false
		_, err = o.Store.Update(ctx, o.Slot(key), key, func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
			if ok {
				return cur, storage.OpKeep // 128-bit collision: draw again
			}
			fresh = true
			return storage.Stash{Kind: storage.KindString, Value: v, ExpireAt: exp}, storage.OpPut
		})
		if err != nil {
			return "", err
		}
		if fresh {
			return o.Codec.Encode(tag.Tag{ID: id, Hint: o.Hint}), nil
		}
	}
	return "", errors.New("stash: could not mint a unique ID")
}

// ref is a stash as a tag names it: its key, slot and node hint.
type ref struct {
	key  string
	slot uint16
	hint uint32
}

func (o *Ops) ref(t string) (ref, error) {
	tg, err := o.Codec.Decode(t)
	if err != nil {
		return ref{}, err
	}
	k := tg.ID.Key()
	return ref{key: k, slot: o.Slot(k), hint: tg.Hint}, nil
}

// recover asks the store, if it can, to find the stash r names
// elsewhere, after a miss; it reports whether the store now has it.
func (o *Ops) recover(ctx context.Context, r ref) (bool, error) {
	rc, ok := o.Store.(Recoverer)
	if !ok {
		return false, nil
	}
	return rc.Recover(ctx, r.slot, r.key, r.hint)
}

// Set replaces the value of the stash named by t, creating it again if it
// expired. ttl 0 keeps the current expiry (the default TTL for a stash
// that is created).
func (o *Ops) Set(ctx context.Context, t string, value []byte, ttl time.Duration) error {
	r, err := o.ref(t)
	if err != nil {
		return err
	}
	if err := o.checkSize(value); err != nil {
		return err
	}
	now := o.Now()
	exp, err := o.expiry(ttl, now)
	if err != nil {
		return err
	}
	v := string(value)
	var ferr error
	_, err = o.Store.Update(ctx, r.slot, r.key, func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
		if ok && cur.Kind != storage.KindString {
			ferr = ErrWrongType
			return cur, storage.OpKeep
		}
		e := exp
		if ok && ttl == 0 {
			e = cur.ExpireAt
		}
		return storage.Stash{Kind: storage.KindString, Value: v, ExpireAt: e}, storage.OpPut
	})
	if err != nil {
		return err
	}
	return ferr
}

// Get returns the value of the stash named by t, or ErrNotFound.
func (o *Ops) Get(ctx context.Context, t string) ([]byte, error) {
	r, err := o.ref(t)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, ok := o.Store.Get(r.slot, r.key)
	if !ok {
		found, err := o.recover(ctx, r)
		if err != nil {
			return nil, err
		}
		if found {
			st, ok = o.Store.Get(r.slot, r.key)
		}
	}
	if !ok {
		return nil, ErrNotFound
	}
	if st.Kind != storage.KindString {
		return nil, ErrWrongType
	}
	return []byte(st.Value), nil
}

// Touch sets the stash's expiry to ttl from now (0: no expiry). It
// returns ErrNotFound when there is no live stash.
func (o *Ops) Touch(ctx context.Context, t string, ttl time.Duration) error {
	r, err := o.ref(t)
	if err != nil {
		return err
	}
	if ttl < 0 {
		return ErrBadTTL
	}
	var exp int64
	if ttl > 0 {
		if exp, err = o.expiry(ttl, o.Now()); err != nil {
			return err
		}
	}
	return o.ifPresent(ctx, r, func(cur storage.Stash) (storage.Stash, storage.Op) {
		cur.ExpireAt = exp
		cur.Version = storage.Version{}
		return cur, storage.OpPut
	})
}

// ifPresent applies fn to the live stash r names, or returns ErrNotFound.
// A miss is checked with the store's Recover first, so that a delete or
// touch of a stash the store can still find does not quietly miss it.
func (o *Ops) ifPresent(ctx context.Context, r ref, fn func(cur storage.Stash) (storage.Stash, storage.Op)) error {
	for attempt := 0; ; attempt++ {
		found := false
		_, err := o.Store.Update(ctx, r.slot, r.key, func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
			if !ok {
				return cur, storage.OpKeep
			}
			found = true
			return fn(cur)
		})
		if err != nil || found {
			return err
		}
		if attempt > 0 {
			return ErrNotFound
		}
		if again, err := o.recover(ctx, r); err != nil || !again {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
	}
}

// Delete removes the stash named by t. It returns ErrNotFound when there
// was no live stash.
func (o *Ops) Delete(ctx context.Context, t string) error {
	r, err := o.ref(t)
	if err != nil {
		return err
	}
	return o.ifPresent(ctx, r, func(cur storage.Stash) (storage.Stash, storage.Op) {
		return cur, storage.OpDelete
	})
}

package tag

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// ID identifies a stash: 128 random bits.
type ID [16]byte

// KeyPrefix begins the storage key of every stash ID (see [ID.Key]).
const KeyPrefix = "stash:"

// String returns the ID as 22 characters of unpadded base64url.
func (id ID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// Key returns the storage key of the stash: KeyPrefix followed by
// id.String(), e.g. "stash:AAECAwQFBgcICQoLDA0ODw". Its slot is the
// ring-style slot of this key: CRC16/XMODEM mod 16384, as Redis Cluster
// computes it. The key never contains '{' (base64url has none), so the
// whole key is hashed. This package does not import ring: callers compute
// the slot, e.g. ring.Slot(id.Key()).
func (id ID) Key() string { return KeyPrefix + id.String() }

// ParseID parses the String form of an ID. Errors wrap ErrMalformed.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != idTextLen {
		return id, fmt.Errorf("%w: ID is %d characters, want %d", ErrMalformed, len(s), idTextLen)
	}
	n, err := b64.Decode(id[:], []byte(s))
	if err != nil || n != len(id) {
		return ID{}, fmt.Errorf("%w: ID is not base64url", ErrMalformed)
	}
	return id, nil
}

// idTextLen is the length of ID.String.
const idTextLen = 22

// b64 decodes canonically: trailing bits must be zero, so each value has
// exactly one accepted text.
var b64 = base64.RawURLEncoding.Strict()

// NewID reads a new random ID from r; pass crypto/rand.Reader. Errors
// from r are returned wrapped.
func NewID(r io.Reader) (ID, error) {
	var id ID
	if r == nil {
		return id, errors.New("tag: NewID: nil random source")
	}
	if _, err := io.ReadFull(r, id[:]); err != nil {
		return ID{}, fmt.Errorf("tag: reading random ID: %w", err)
	}
	return id, nil
}

// Mint draws IDs from r with NewID until accept returns true for one, and
// returns it. A nil accept accepts the first ID. After maxTries rejected
// IDs it returns ErrExhausted; maxTries below 1 is treated as 1.
//
// Embedded nodes use it to mint IDs whose slot they are primary for, so
// the common write is local:
//
//	id, err := tag.Mint(rand.Reader, func(id tag.ID) bool {
//		return table.Primary(ring.Slot(id.Key())) == self
//	}, 64*len(table.Members()))
//
// A node that is primary for a fraction p of the slots needs 1/p tries on
// average; k tries all fail with probability (1-p)^k (about e^-64 for
// k = 64/p), so the caller should fall back to any ID on ErrExhausted.
// accept is called on the calling goroutine and should be cheap.
func Mint(r io.Reader, accept func(ID) bool, maxTries int) (ID, error) {
	for range max(maxTries, 1) {
		id, err := NewID(r)
		if err != nil {
			return ID{}, err
		}
		if accept == nil || accept(id) {
			return id, nil
		}
	}
	return ID{}, fmt.Errorf("%w (%d tries)", ErrExhausted, max(maxTries, 1))
}

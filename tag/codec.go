package tag

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// Lengths and limits.
const (
	// EncodedLen is the length of every tag Encode returns.
	EncodedLen = 50 // 37 bytes in unpadded base64url

	// MinSecret is the shortest secret NewCodec accepts, in bytes.
	MinSecret = 16
)

// Layout of an encoded tag, before base64url:
//
//	version (1 byte) ‖ ID (16) ‖ hint (4, big-endian) ‖ MAC (16)
//
// MAC = HMAC-SHA256(K, version ‖ ID ‖ hint), first 16 bytes, where
// K = HMAC-SHA256(secret, macLabel).
const (
	version = 1
	macLen  = 16
	bodyLen = 1 + len(ID{}) + 4
	rawLen  = bodyLen + macLen // 37

	// macLabel separates the tag MAC key from every other use of the
	// cluster secret.
	macLabel = "stash tag MAC key v1"
)

// Codec encodes and decodes tags under one cluster secret. It is
// immutable and safe for concurrent use. Make it with NewCodec: the zero
// Codec has no key, and its methods panic rather than use a known one.
type Codec struct {
	ok bool // made by NewCodec
	// ipad and opad are the HMAC-SHA256 key blocks of the derived MAC key
	// K (K ⊕ 0x36…, K ⊕ 0x5c…, K zero-padded to the 64-byte block). The
	// secret itself is not kept.
	ipad, opad [sha256.BlockSize]byte
}

// NewCodec returns a Codec for secret, which must be at least MinSecret
// bytes (else ErrShortSecret). The Codec keeps a key derived from secret,
// not secret itself; the caller may reuse or wipe secret afterwards.
func NewCodec(secret []byte) (*Codec, error) {
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrShortSecret, len(secret), MinSecret)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(macLabel))
	key := m.Sum(nil)
	c := &Codec{ok: true}
	copy(c.ipad[:], key)
	copy(c.opad[:], key)
	for i := range c.ipad {
		c.ipad[i] ^= 0x36
		c.opad[i] ^= 0x5c
	}
	return c, nil
}

// mac returns HMAC-SHA256(K, body) truncated to macLen bytes, without
// allocating: H(opad ‖ H(ipad ‖ body)).
func (c *Codec) mac(body *[bodyLen]byte) [macLen]byte {
	if !c.ok {
		panic("tag: Codec not made by NewCodec")
	}
	var in [sha256.BlockSize + bodyLen]byte
	copy(in[:], c.ipad[:])
	copy(in[sha256.BlockSize:], body[:])
	inner := sha256.Sum256(in[:])
	var out [sha256.BlockSize + sha256.Size]byte
	copy(out[:], c.opad[:])
	copy(out[sha256.BlockSize:], inner[:])
	sum := sha256.Sum256(out[:])
	return [macLen]byte(sum[:macLen])
}

// Encode returns t as EncodedLen characters of unpadded base64url. The
// same Tag always encodes to the same string, so a stash's tag is stable
// across updates of the stash.
func (c *Codec) Encode(t Tag) string {
	var raw [rawLen]byte
	raw[0] = version
	copy(raw[1:], t.ID[:])
	binary.BigEndian.PutUint32(raw[1+len(t.ID):], t.Hint)
	mac := c.mac((*[bodyLen]byte)(raw[:bodyLen]))
	copy(raw[bodyLen:], mac[:])
	var out [EncodedLen]byte
	base64.RawURLEncoding.Encode(out[:], raw[:])
	return string(out[:])
}

// Decode parses and verifies a tag made by Encode under the same secret.
// Errors wrap ErrMalformed (wrong length, not canonical base64url, unknown
// version) or ErrForged (MAC mismatch, compared in constant time); both
// wrap ErrBadTag. Error messages never include the input.
func (c *Codec) Decode(s string) (Tag, error) {
	raw, err := parse(s)
	if err != nil {
		return Tag{}, err
	}
	if mac := c.mac((*[bodyLen]byte)(raw[:bodyLen])); !hmac.Equal(raw[bodyLen:], mac[:]) {
		return Tag{}, ErrForged
	}
	return fromRaw(raw), nil
}

// Unverified parses a tag without checking its MAC, for a client that
// routes a request by the stash's slot and does not hold the cluster
// secret. Nothing it returns is trustworthy: the node that serves the
// request verifies the tag. Errors wrap ErrMalformed.
func Unverified(s string) (Tag, error) {
	raw, err := parse(s)
	if err != nil {
		return Tag{}, err
	}
	return fromRaw(raw), nil
}

func parse(s string) (*[rawLen]byte, error) {
	if len(s) != EncodedLen {
		return nil, fmt.Errorf("%w: %d characters, want %d", ErrMalformed, len(s), EncodedLen)
	}
	var raw [rawLen]byte
	n, err := b64.Decode(raw[:], []byte(s))
	if err != nil || n != rawLen {
		return nil, fmt.Errorf("%w: not base64url", ErrMalformed)
	}
	if raw[0] != version {
		return nil, fmt.Errorf("%w: unknown version %d", ErrMalformed, raw[0])
	}
	return &raw, nil
}

func fromRaw(raw *[rawLen]byte) Tag {
	var t Tag
	copy(t.ID[:], raw[1:])
	t.Hint = binary.BigEndian.Uint32(raw[1+len(t.ID):])
	return t
}

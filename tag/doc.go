// Package tag mints stash IDs and encodes "luggage tags": what a client
// keeps to get its stash back.
//
// A tag holds the stash's [ID] (128 random bits), a node [Tag.Hint] (the
// node that held the stash when the tag was minted) and a MAC under the
// cluster secret. It is compact (50 characters), URL-safe (unpadded
// base64url), stable across updates of the same stash, and never contains
// the value. A forged or altered tag is rejected.
//
// The package imports only the standard library; in particular it does not
// import ring.
//
// # Usage
//
//	codec, err := tag.NewCodec(clusterSecret) // at least 16 bytes
//
//	// Minting (an embedded node picks an ID whose slot it is primary for):
//	id, err := tag.Mint(rand.Reader, func(id tag.ID) bool {
//		return table.Primary(ring.Slot(id.Key())) == self
//	}, 64*len(table.Members()))
//	s := codec.Encode(tag.Tag{ID: id, Hint: tag.HintFor(selfName)})
//
//	// Lookup:
//	t, err := codec.Decode(s)
//	if errors.Is(err, tag.ErrBadTag) { /* reject the request */ }
//	key := t.ID.Key()          // "stash:" + base64url(ID)
//	slot := ring.Slot(key)     // computed by the caller
//
// # Format
//
// The 37 bytes under the base64url are
//
//	version (1) ‖ ID (16) ‖ hint (4, big-endian) ‖ MAC (16)
//
// with MAC the first 16 bytes of HMAC-SHA256(K, version ‖ ID ‖ hint) and
// K = HMAC-SHA256(secret, "stash tag MAC key v1"): a key used for tags
// only, whatever else the cluster secret keys. Decode accepts exactly the
// strings Encode produces: the right length, canonical base64url (no
// padding, zero trailing bits, no line breaks), a known version and a MAC
// that verifies (compared in constant time).
//
// The hint is the first four bytes of SHA-256 of the node's name
// ([HintFor]); 0 means "no hint". Hints can collide and are only ever a
// suggestion of where to look.
//
// # Concurrency
//
// A [Codec] is immutable after NewCodec and safe for concurrent use. All
// other functions are pure apart from reading the io.Reader they are
// given.
//
// # Caveats
//
//   - A tag is a bearer token: whoever holds it can fetch the stash. The
//     MAC stops forgery and alteration, not theft; keep tags out of logs
//     and URLs that leak.
//   - Rotating the cluster secret invalidates every outstanding tag
//     (Decode returns ErrForged). Accepting old tags during a rotation
//     means trying a Codec per secret.
//   - The MAC covers the hint, so a tag cannot be re-pointed; a stash that
//     moved keeps its original hint, which is why the hint is only tried
//     after the slot's current primary.
//   - Decode does not check that the stash exists; the ID is only a name.
//   - The MAC is truncated to 128 bits: a guessed tag verifies with
//     probability 2^-128.
package tag

package tag

import (
	"crypto/sha256"
	"encoding/binary"
)

// Tag is what a client keeps to get its stash back: the stash ID and a
// hint naming the node that held the stash when the tag was minted. It
// never contains the value. Encode it with a [Codec].
type Tag struct {
	ID   ID
	Hint uint32 // see HintFor; 0 means "no hint"
}

// HintFor returns the compact node hint for nodeName: the first four bytes
// of SHA-256(nodeName), big-endian. It never returns 0, which means "no
// hint" (a name whose hash starts with four zero bytes gets 1). Hints may
// collide; a node resolving a hint compares it with HintFor of each member
// and treats a match as a suggestion, never as proof.
func HintFor(nodeName string) uint32 {
	sum := sha256.Sum256([]byte(nodeName))
	if h := binary.BigEndian.Uint32(sum[:4]); h != 0 {
		return h
	}
	return 1
}

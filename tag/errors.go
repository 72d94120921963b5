package tag

import (
	"errors"
	"fmt"
)

// Sentinel errors. Decode's errors wrap ErrMalformed or ErrForged, and
// both of those wrap ErrBadTag, so
//
//	errors.Is(err, tag.ErrBadTag)
//
// holds for every tag Decode rejects, while ErrMalformed and ErrForged
// tell a garbled tag from one with a wrong MAC.
var (
	// ErrBadTag is the umbrella for every rejected tag.
	ErrBadTag = errors.New("tag: bad tag")
	// ErrMalformed: the tag is not base64url of the right length, or has
	// an unknown version.
	ErrMalformed = fmt.Errorf("%w: malformed", ErrBadTag)
	// ErrForged: the tag is well formed but its MAC does not verify under
	// this codec's secret (altered, forged, or from another cluster).
	ErrForged = fmt.Errorf("%w: MAC mismatch", ErrBadTag)
	// ErrShortSecret: NewCodec was given a secret shorter than MinSecret.
	ErrShortSecret = errors.New("tag: secret too short")
	// ErrExhausted: Mint drew maxTries IDs without one being accepted.
	ErrExhausted = errors.New("tag: no acceptable ID within the allowed tries")
)

package stash

import (
	"errors"

	"github.com/stashcluster/stash/internal/stashops"
	"github.com/stashcluster/stash/replication"
	"github.com/stashcluster/stash/storage"
	"github.com/stashcluster/stash/tag"
)

// Errors returned by Node (and, later, by client.Client). They are the
// same values the lower layers return, so errors.Is works across layers.
var (
	// ErrNotFound: no live stash under the tag (never stored, deleted or
	// expired).
	ErrNotFound = stashops.ErrNotFound
	// ErrBadTag: the tag is malformed or forged. errors.Is(err, ErrForged)
	// or errors.Is(err, ErrMalformed) tells which.
	ErrBadTag = tag.ErrBadTag
	// ErrForged: the tag's MAC does not verify under this cluster's secret.
	ErrForged = tag.ErrForged
	// ErrMalformed: the tag is not a tag at all (encoding, length, version).
	ErrMalformed = tag.ErrMalformed
	// ErrValueTooLarge: the value exceeds Config.MaxValueBytes; the error
	// is a *ValueTooLargeError.
	ErrValueTooLarge = stashops.ErrValueTooLarge
	// ErrBadTTL: a negative or overflowing TTL.
	ErrBadTTL = stashops.ErrBadTTL
	// ErrWrongType: the stash key holds a hash (written through HSET).
	ErrWrongType = stashops.ErrWrongType
	// ErrClosed: the node was shut down or closed.
	ErrClosed = storage.ErrClosed
	// ErrNoQuorum: in a cluster, a write reached fewer copies than the
	// write quorum in time. It may or may not have been applied: read
	// before retrying a non-idempotent change.
	ErrNoQuorum = replication.ErrNoQuorum
	// ErrUnavailable: in a cluster, the stash's slot is not served right
	// now (a failover or table change is under way, or the node lost
	// contact with the cluster). Nothing was done; retry.
	ErrUnavailable = replication.ErrNotServing
	// ErrInvalidConfig wraps every problem Config.Validate reports.
	ErrInvalidConfig = errors.New("stash: invalid config")
)

// ValueTooLargeError carries the size and the limit.
type ValueTooLargeError = stashops.ValueTooLargeError

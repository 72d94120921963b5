package ring

import "errors"

// Sentinel errors returned by [Build], [Builder.Build] and
// [Table.UnmarshalBinary]. They are wrapped with context; test for them with
// [errors.Is].
var (
	// ErrNoMembers: Build was given an empty roster.
	ErrNoMembers = errors.New("ring: no members")
	// ErrBadReplicas: the replica count is outside [1, MaxReplicas].
	ErrBadReplicas = errors.New("ring: replica count out of range")
	// ErrDuplicateID: two members share a NodeID.
	ErrDuplicateID = errors.New("ring: duplicate node ID")
	// ErrEmptyID: a member has the empty NodeID.
	ErrEmptyID = errors.New("ring: empty node ID")
	// ErrTooManyMembers: the roster has more than MaxMembers members.
	ErrTooManyMembers = errors.New("ring: too many members")
	// ErrBadEncoding: UnmarshalBinary was given bytes that are not a table
	// encoded by MarshalBinary.
	ErrBadEncoding = errors.New("ring: bad table encoding")
)

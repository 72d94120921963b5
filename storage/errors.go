package storage

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (or a
// context error) so that callers can test them with errors.Is.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("storage: closed")
	// ErrBadSlot is returned for a slot number >= Slots.
	ErrBadSlot = errors.New("storage: slot out of range")
	// ErrInvalid is returned for an invalid argument or Config: an unknown
	// Kind or Op, a negative duration.
	ErrInvalid = errors.New("storage: invalid argument")
	// ErrTooLarge is returned for a key longer than MaxKeyLen or a value
	// longer than MaxValueLen.
	ErrTooLarge = errors.New("storage: key or value too large")
	// ErrCorrupt is returned when an encoded record or hash cannot be
	// decoded. At Open, corrupt records are logged and quarantined, not
	// returned.
	ErrCorrupt = errors.New("storage: corrupt data")
	// ErrFormat is returned by Open when stash.db was written in an on-disk
	// format this version does not know.
	ErrFormat = errors.New("storage: unknown on-disk format")
	// ErrCommit is wrapped around the error of a failed group commit, as
	// seen by writers waiting for it (FsyncAlways, Sync, DropSlot,
	// FlushAll). The writes stay in memory and are retried by the next
	// commit.
	ErrCommit = errors.New("storage: commit failed")
)

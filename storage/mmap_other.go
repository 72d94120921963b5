//go:build !linux

package storage

// mmapFlags adds nothing to bbolt's memory map outside Linux.
const mmapFlags = 0

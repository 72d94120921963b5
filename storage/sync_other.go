//go:build !linux

package storage

import (
	"os"
	"runtime"
)

// fdatasync flushes f to stable storage (fsync where fdatasync is not
// available).
func fdatasync(f *os.File) error { return f.Sync() }

// syncDir makes the entries of directory dir durable, where the system
// allows syncing a directory (not on Windows, whose directory entries are
// durable with the file).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

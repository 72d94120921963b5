//go:build !linux

package rawio

import (
	"io"
	"net"
)

// Conn returns nc itself for reading and writing: raw calls are used on
// Linux only.
func Conn(nc net.Conn) (io.Reader, io.Writer) { return nc, nc }

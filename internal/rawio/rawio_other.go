//go:build !linux

package rawio

import "errors"

// Elsewhere Conn never hands these out.
const supported = false

func (r *reader) Read(p []byte) (int, error)  { return 0, errors.ErrUnsupported }
func (w *writer) Write(p []byte) (int, error) { return 0, errors.ErrUnsupported }

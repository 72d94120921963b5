package client

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
)

// TestConnErr: only failures to reach a node or broken connections send
// the next try through another node; a node's own answer does not.
func TestConnErr(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("connect: %w", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{refused, true},
		{io.EOF, true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{errors.New("write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe"), true},
		{errors.New("TRYAGAIN slot 7 is being taken over by this node"), false},
		{errors.New("NOQUORUM write reached 1 of 2 copies"), false},
		{errors.New("CLUSTERDOWN the cluster has no slot table yet"), false},
	} {
		if got := connErr(c.err); got != c.want {
			t.Errorf("connErr(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

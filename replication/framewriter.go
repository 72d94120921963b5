package replication

import (
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/stashcluster/stash/internal/wire"
)

// frameWriter sends frames from many goroutines on one connection with
// as few write syscalls as it can: a sender appends its frame to a
// shared buffer; the first one to find nobody flushing becomes the
// flusher, yields once so concurrent senders can add theirs, and writes
// the buffer (swapped for a spare, so senders go on appending meanwhile)
// until it is empty. No goroutine of its own, no channel hand-off.
type frameWriter struct {
	nc net.Conn

	mu       sync.Mutex
	enc      *wire.Encoder
	buf      []byte
	spare    []byte
	flushing bool
	err      error // the connection failed; every later send fails with it
}

func newFrameWriter(nc net.Conn) *frameWriter {
	return &frameWriter{nc: nc, enc: wire.NewEncoder()}
}

// send queues m; it returns at once if another goroutine is flushing
// (that one writes m too), else after writing everything queued. An
// error means the connection failed (or m did not encode): callers fail
// the connection, and whoever waits on it learns of it that way.
func (f *frameWriter) send(m *wire.Msg) error {
	f.mu.Lock()
	if f.err != nil {
		err := f.err
		f.mu.Unlock()
		return err
	}
	buf, err := f.enc.Append(f.buf, m)
	if err != nil {
		f.mu.Unlock()
		return err // not sent; the stream is intact
	}
	f.buf = buf
	if f.flushing {
		f.mu.Unlock()
		return nil
	}
	f.flushing = true
	for {
		f.mu.Unlock()
		runtime.Gosched()
		f.mu.Lock()
		if len(f.buf) == 0 || f.err != nil {
			break
		}
		out := f.buf
		f.buf = f.spare[:0]
		f.mu.Unlock()
		f.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, werr := f.nc.Write(out)
		f.mu.Lock()
		if cap(out) <= 1<<20 {
			f.spare = out[:0]
		}
		if werr != nil {
			f.err = werr
		}
	}
	f.flushing = false
	err = f.err
	f.mu.Unlock()
	return err
}

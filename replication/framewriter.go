package replication

import (
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/stashcluster/stash/internal/rawio"
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
	w  io.Writer // nc, through raw system calls where it can

	mu       sync.Mutex
	buf      []byte
	spare    []byte
	flushing bool
	err      error // the connection failed; every later send fails with it
}

func newFrameWriter(nc net.Conn) *frameWriter {
	_, w := rawio.Conn(nc)
	return &frameWriter{nc: nc, w: w}
}

// send queues m and flushes: it returns at once if another goroutine is
// flushing (that one writes m too), else after writing everything
// queued. An error means the connection failed (or m did not encode):
// callers fail the connection, and whoever waits on it learns of it that
// way.
func (f *frameWriter) send(m *wire.Msg) error {
	f.mu.Lock()
	if err := f.add(m); err != nil {
		f.mu.Unlock()
		return err
	}
	return f.flushLocked()
}

// queue adds m without writing it: a later flush (or a flush already
// under way) sends it.
func (f *frameWriter) queue(m *wire.Msg) error {
	_, err := f.queueLen(m)
	return err
}

// queueLen is queue that also returns how many bytes are now queued.
func (f *frameWriter) queueLen(m *wire.Msg) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.add(m)
	return len(f.buf), err
}

// flush writes whatever is queued, unless another goroutine is already
// doing so.
func (f *frameWriter) flush() error {
	f.mu.Lock()
	return f.flushLocked()
}

func (f *frameWriter) add(m *wire.Msg) error {
	if f.err != nil {
		return f.err
	}
	buf, err := wire.AppendFrame(f.buf, m)
	if err != nil {
		return err // not sent; the stream is intact
	}
	f.buf = buf
	return nil
}

// flushLocked is called with f.mu held and releases it.
func (f *frameWriter) flushLocked() error {
	if f.flushing || len(f.buf) == 0 {
		err := f.err
		f.mu.Unlock()
		return err
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
		_, werr := f.w.Write(out)
		f.mu.Lock()
		if cap(out) <= 1<<20 {
			f.spare = out[:0]
		}
		if werr != nil {
			f.err = werr
		}
	}
	f.flushing = false
	err := f.err
	f.mu.Unlock()
	return err
}

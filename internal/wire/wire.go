// Package wire is the node-to-node message format: length-prefixed
// msgpack frames carrying one Msg each.
//
// # Usage
//
// A sender wraps its connection in a Writer and calls Write for each
// message, then Flush; a receiver wraps its side in a Reader and calls
// Read in a loop. Requests carry an ID that the reply repeats, so many
// requests can be in flight on one connection (pipelining).
//
// # Concurrency
//
// Reader and Writer are not safe for concurrent use: one goroutine reads,
// one (or one at a time, under the caller's lock) writes.
//
// # Caveats
//
// A frame over MaxFrame bytes, or one that does not decode, is an error
// after which the stream cannot be trusted: close the connection. Peers
// are authenticated before the first frame (internal/transport), so a
// bad frame means a bug or a mismatched version, not an attacker.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the message format version, sent in every frame.
const Version = 1

// MaxFrame bounds one frame's body. It leaves room for a batch of values
// at the largest value size a node accepts.
const MaxFrame = 64 << 20

var (
	// ErrFrameTooLarge: a frame announced more than MaxFrame bytes.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrBadFrame: a frame did not decode as a Msg of this Version.
	ErrBadFrame = errors.New("wire: malformed frame")
)

// Kind says what a Msg is.
type Kind uint8

// Message kinds. A request kind's reply has the kind after it.
const (
	KindForward   Kind = iota + 1 // a client command for the slot's primary (Args)
	KindReply                     // its RESP-encoded reply (Reply)
	KindReplicate                 // entries for a backup to apply (Entries)
	KindAck                       // backup applied them (Err empty) or refused (Err)
	KindDigest                    // ask for the digests of Slots
	KindDigests                   // the digests (Digests, same order as Slots)
	KindFetch                     // ask for every entry of Slots
	KindEntries                   // a batch of them; Last marks the final batch
	KindLookup                    // ask what Slot holds for the key in Args[0]; answered by Entries
)

var kindNames = map[Kind]string{
	KindForward: "forward", KindReply: "reply", KindReplicate: "replicate", KindAck: "ack",
	KindDigest: "digest", KindDigests: "digests", KindFetch: "fetch", KindEntries: "entries",
	KindLookup: "lookup",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Entry is one stash as it travels between replicas: its full state and
// version, or a deletion (Deleted) at that version.
type Entry struct {
	Key      string
	Kind     uint8
	Value    string // as the store keeps it: no conversion copies it on the way in or out
	ExpireAt int64
	Epoch    uint32
	Seq      uint64
	Deleted  bool
}

// Msg is one message. Which fields are set depends on Kind.
type Msg struct {
	V       uint8
	Kind    Kind
	ID      uint64 // request ID, echoed by the reply
	Epoch   uint64 // sender's slot-table epoch
	From    string // sender's node name
	Slot    uint16
	Slots   []uint16
	Args    [][]byte
	Reply   []byte
	Entries []Entry
	Digests []uint64
	Last    bool
	Err     string
	Proto   uint8 // RESP protocol a forwarded command replies in (2 or 3)
	// States, in a Digests reply, has one byte per slot of Digests: how
	// complete the sender's copy is (SlotComplete, SlotLost).
	States []byte
	// Fallback, on a Forward, asks the slot's previous primary to run a
	// read while the sender (the primary at Epoch) is still taking the
	// slot over.
	Fallback bool
	// Marks, in an Entries frame, has two numbers (epoch, sequence) per
	// slot of Slots: the newest version the sender's copy held or had
	// assigned when the slot's entries were read. An entry of the
	// receiver's that is no newer and was not sent is one the sender no
	// longer has (see replication's catch-up).
	Marks []uint64
	// ValueArgs, in the Reply to a Forward, has one byte per entry of
	// Entries: 0, or i+1 when the entry's Value was left out because it
	// equals the forward's Args[i], which the forwarding node still has.
	ValueArgs []byte
}

// Bits of Msg.States.
const (
	// SlotComplete: the copy holds every acknowledged write (a primary
	// serving the slot, a backup in sync with it).
	SlotComplete = 1 << iota
	// SlotLost: the node lost its data (restarted with an empty store)
	// and has not resynced the slot since: it may lack writes it once
	// acknowledged, so it does not count as a replica that has them.
	SlotLost
)

// Writer writes frames.
type Writer struct {
	bw  *bufio.Writer
	buf []byte
}

// NewWriter wraps w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, 64<<10)}
}

// Write buffers one frame; Flush sends it.
func (w *Writer) Write(m *Msg) error {
	b, err := AppendFrame(w.buf[:0], m)
	if err != nil {
		return err
	}
	_, err = w.bw.Write(b)
	w.buf = b
	if cap(w.buf) > 1<<20 {
		w.buf = nil // do not pin a big buffer
	}
	return err
}

// Flush sends buffered frames.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Reader reads frames.
type Reader struct {
	br  *bufio.Reader
	buf []byte
}

// NewReader wraps r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Read reads the next frame into a new Msg. io.EOF means the peer closed
// between frames.
//
// A frame that fits in the read buffer is decoded where it lies (Decode
// copies what it keeps); a larger one is first read whole into r.buf.
func (r *Reader) Read() (*Msg, error) {
	hdr, err := r.br.Peek(4)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if n > MaxFrame {
		return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	if 4+int(n) <= r.br.Size() {
		b, err := r.br.Peek(4 + int(n))
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		m, err := Decode(b[4:])
		r.br.Discard(4 + int(n))
		return m, err
	}
	r.br.Discard(4)
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.br, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	m, err := Decode(b)
	if cap(r.buf) > 1<<20 {
		r.buf = nil
	}
	return m, err
}

// Ready reports whether a whole frame is already buffered, so that the
// next Read returns without waiting on the connection. A server that
// answers frames in order uses it to send the replies to everything one
// read brought in with one write.
func (r *Reader) Ready() bool {
	if r.br.Buffered() < 4 {
		return false // Peek would wait for the connection
	}
	hdr, err := r.br.Peek(4)
	if err != nil {
		return false
	}
	n := binary.BigEndian.Uint32(hdr)
	return n > MaxFrame || uint64(r.br.Buffered()) >= 4+uint64(n)
}

// Decode decodes one frame body. The Msg does not alias b.
func Decode(b []byte) (*Msg, error) {
	m := new(Msg)
	if err := m.decode(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if m.V != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrBadFrame, m.V, Version)
	}
	if m.Kind < KindForward || m.Kind > KindLookup {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrBadFrame, m.Kind)
	}
	return m, nil
}

// AppendFrame appends m's frame (length header and body) to dst, for
// writers that batch frames from many goroutines themselves. On error
// dst is returned as it was.
func AppendFrame(dst []byte, m *Msg) ([]byte, error) {
	m.V = Version
	start := len(dst)
	out := m.appendBody(append(dst, 0, 0, 0, 0))
	n := len(out) - start - 4
	if n > MaxFrame {
		return dst[:start], fmt.Errorf("%w: %s of %d bytes", ErrFrameTooLarge, m.Kind, n)
	}
	binary.BigEndian.PutUint32(out[start:], uint32(n))
	return out, nil
}

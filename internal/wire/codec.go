package wire

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// A Msg travels as a msgpack array of its fields in a fixed order, and an
// Entry as an array too: no field names, no reflection on the hot path
// (every replicated write is one Replicate and one Ack). Decoding accepts
// more fields than it knows (a newer sender) and ignores them.

const (
	msgFields   = 15
	minFields   = 14 // before States
	entryFields = 7
)

var errLength = errors.New("length out of range")

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Msg) EncodeMsgpack(e *msgpack.Encoder) error {
	enc := encoder{e: e}
	enc.arrayLen(msgFields)
	enc.uint(uint64(m.V))
	enc.uint(uint64(m.Kind))
	enc.uint(m.ID)
	enc.uint(m.Epoch)
	enc.str(m.From)
	enc.uint(uint64(m.Slot))
	enc.arrayLen(len(m.Slots))
	for _, s := range m.Slots {
		enc.uint(uint64(s))
	}
	enc.arrayLen(len(m.Args))
	for _, a := range m.Args {
		enc.bytes(a)
	}
	enc.bytes(m.Reply)
	enc.arrayLen(len(m.Entries))
	for i := range m.Entries {
		x := &m.Entries[i]
		enc.arrayLen(entryFields)
		enc.str(x.Key)
		enc.uint(uint64(x.Kind))
		enc.bytes(x.Value)
		enc.int(x.ExpireAt)
		enc.uint(uint64(x.Epoch))
		enc.uint(x.Seq)
		enc.bool(x.Deleted)
	}
	enc.arrayLen(len(m.Digests))
	for _, d := range m.Digests {
		enc.uint(d)
	}
	enc.bool(m.Last)
	enc.str(m.Err)
	enc.uint(uint64(m.Proto))
	enc.bytes(m.States)
	return enc.err
}

type encoder struct {
	e   *msgpack.Encoder
	err error
}

func (c *encoder) arrayLen(n int) {
	if c.err == nil {
		c.err = c.e.EncodeArrayLen(n)
	}
}
func (c *encoder) uint(v uint64) {
	if c.err == nil {
		c.err = c.e.EncodeUint(v)
	}
}
func (c *encoder) int(v int64) {
	if c.err == nil {
		c.err = c.e.EncodeInt(v)
	}
}
func (c *encoder) str(s string) {
	if c.err == nil {
		c.err = c.e.EncodeString(s)
	}
}
func (c *encoder) bytes(b []byte) {
	if c.err == nil {
		c.err = c.e.EncodeBytes(b)
	}
}
func (c *encoder) bool(b bool) {
	if c.err == nil {
		c.err = c.e.EncodeBool(b)
	}
}

// DecodeMsgpack implements msgpack.CustomDecoder. Lengths are checked
// against the bytes left, so a hostile length cannot make it allocate
// more than the frame could hold.
func (m *Msg) DecodeMsgpack(d *msgpack.Decoder) error { return m.decode(d, MaxFrame) }

// decode reads m from d; no length may exceed size (the frame's length).
func (m *Msg) decode(d *msgpack.Decoder, size int) error {
	dec := decoder{d: d, left: size}
	n := dec.arrayLen()
	if dec.err == nil && n < minFields {
		return fmt.Errorf("message of %d fields, want %d", n, msgFields)
	}
	m.V = uint8(dec.uint(0xff))
	m.Kind = Kind(dec.uint(0xff))
	m.ID = dec.uint(^uint64(0))
	m.Epoch = dec.uint(^uint64(0))
	m.From = dec.str()
	m.Slot = uint16(dec.uint(0xffff))
	if k := dec.arrayLen(); k > 0 {
		m.Slots = make([]uint16, k)
		for i := range m.Slots {
			m.Slots[i] = uint16(dec.uint(0xffff))
		}
	}
	if k := dec.arrayLen(); k > 0 {
		m.Args = make([][]byte, k)
		for i := range m.Args {
			m.Args[i] = dec.bytes()
		}
	}
	m.Reply = dec.bytes()
	if k := dec.arrayLen(); k > 0 {
		m.Entries = make([]Entry, k)
		for i := range m.Entries {
			x := &m.Entries[i]
			f := dec.arrayLen()
			if dec.err == nil && f < entryFields {
				return fmt.Errorf("entry of %d fields, want %d", f, entryFields)
			}
			x.Key = dec.str()
			x.Kind = uint8(dec.uint(0xff))
			x.Value = dec.bytes()
			x.ExpireAt = dec.int()
			x.Epoch = uint32(dec.uint(0xffffffff))
			x.Seq = dec.uint(^uint64(0))
			x.Deleted = dec.bool()
			for ; dec.err == nil && f > entryFields; f-- {
				dec.skip()
			}
		}
	}
	if k := dec.arrayLen(); k > 0 {
		m.Digests = make([]uint64, k)
		for i := range m.Digests {
			m.Digests[i] = dec.uint(^uint64(0))
		}
	}
	m.Last = dec.bool()
	m.Err = dec.str()
	m.Proto = uint8(dec.uint(0xff))
	if n >= msgFields {
		m.States = dec.bytes()
	}
	for ; dec.err == nil && n > msgFields; n-- {
		dec.skip()
	}
	return dec.err
}

type decoder struct {
	d    *msgpack.Decoder
	left int // bound on what any length may claim
	err  error
}

func (c *decoder) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func (c *decoder) arrayLen() int {
	if c.err != nil {
		return 0
	}
	n, err := c.d.DecodeArrayLen()
	if err != nil {
		c.fail(err)
		return 0
	}
	if n > c.left {
		c.fail(errLength)
		return 0
	}
	return max(n, 0)
}

func (c *decoder) uint(limit uint64) uint64 {
	if c.err != nil {
		return 0
	}
	v, err := c.d.DecodeUint64()
	if err != nil {
		c.fail(err)
		return 0
	}
	if v > limit {
		c.fail(fmt.Errorf("value %d out of range", v))
		return 0
	}
	return v
}

func (c *decoder) int() int64 {
	if c.err != nil {
		return 0
	}
	v, err := c.d.DecodeInt64()
	c.fail(err)
	return v
}

func (c *decoder) str() string {
	if c.err != nil {
		return ""
	}
	s, err := c.d.DecodeString()
	c.fail(err)
	return s
}

func (c *decoder) bytes() []byte {
	if c.err != nil {
		return nil
	}
	b, err := c.d.DecodeBytes()
	c.fail(err)
	return b
}

func (c *decoder) bool() bool {
	if c.err != nil {
		return false
	}
	b, err := c.d.DecodeBool()
	c.fail(err)
	return b
}

func (c *decoder) skip() { c.fail(c.d.Skip()) }

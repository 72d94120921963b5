package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A Msg travels as a msgpack array of its fields in a fixed order, and an
// Entry as an array too: no field names, no reflection. Every replicated
// write is one Replicate and one Ack (per backup), so the codec appends
// and parses msgpack itself instead of going through an encoder object:
// that took most of a frame's cost and a few dozen allocations. Any
// msgpack encoder can still produce a frame (integers and lengths in any
// width, nil for empty), and decoding accepts more fields than it knows
// (a newer sender) and ignores them.

const (
	msgFields   = 18
	minFields   = 14 // before States, Fallback and Marks
	entryFields = 7
)

var (
	errLength = errors.New("length out of range")
	errShort  = errors.New("frame ends inside a value")
)

// appendBody appends m's msgpack body (no length header) to b.
func (m *Msg) appendBody(b []byte) []byte {
	b = appendArrayLen(b, msgFields)
	b = appendUint(b, uint64(m.V))
	b = appendUint(b, uint64(m.Kind))
	b = appendUint(b, m.ID)
	b = appendUint(b, m.Epoch)
	b = appendStr(b, m.From)
	b = appendUint(b, uint64(m.Slot))
	b = appendArrayLen(b, len(m.Slots))
	for _, s := range m.Slots {
		b = appendUint(b, uint64(s))
	}
	b = appendArrayLen(b, len(m.Args))
	for _, a := range m.Args {
		b = appendBin(b, a)
	}
	b = appendBin(b, m.Reply)
	b = appendArrayLen(b, len(m.Entries))
	for i := range m.Entries {
		x := &m.Entries[i]
		b = appendArrayLen(b, entryFields)
		b = appendStr(b, x.Key)
		b = appendUint(b, uint64(x.Kind))
		b = appendBinStr(b, x.Value)
		b = appendInt(b, x.ExpireAt)
		b = appendUint(b, uint64(x.Epoch))
		b = appendUint(b, x.Seq)
		b = appendBool(b, x.Deleted)
	}
	b = appendArrayLen(b, len(m.Digests))
	for _, d := range m.Digests {
		b = appendUint(b, d)
	}
	b = appendBool(b, m.Last)
	b = appendStr(b, m.Err)
	b = appendUint(b, uint64(m.Proto))
	b = appendBin(b, m.States)
	b = appendBool(b, m.Fallback)
	b = appendArrayLen(b, len(m.Marks))
	for _, x := range m.Marks {
		b = appendUint(b, x)
	}
	b = appendBin(b, m.ValueArgs)
	return b
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
	}
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
	}
}

func appendStr(b []byte, s string) []byte {
	if n := len(s); n < 32 {
		b = append(b, 0xa0|byte(n))
	} else {
		b = appendLen(b, n, 0xd9, 0xda, 0xdb)
	}
	return append(b, s...)
}

// appendBin encodes nil as msgpack nil, so that nil and empty stay apart.
func appendBin(b []byte, p []byte) []byte {
	if p == nil {
		return append(b, 0xc0)
	}
	return append(appendLen(b, len(p), 0xc4, 0xc5, 0xc6), p...)
}

// appendBinStr encodes s as bin (a value is bytes, not text), "" as an
// empty bin.
func appendBinStr(b []byte, s string) []byte {
	return append(appendLen(b, len(s), 0xc4, 0xc5, 0xc6), s...)
}

// appendLen appends a str or bin header: code c8, c16 or c32 (by the
// length's width) and the length n.
func appendLen(b []byte, n int, c8, c16, c32 byte) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, c8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, c16), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, c32), uint32(n))
	}
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

// decode reads m from b, which must hold exactly one message. No length
// may claim more than the bytes left, so a hostile length cannot make it
// allocate more than the frame holds.
func (m *Msg) decode(b []byte) error {
	d := decoder{b: b}
	n := d.arrayLen()
	if d.err == nil && n < minFields {
		return fmt.Errorf("message of %d fields, want %d", n, msgFields)
	}
	m.V = uint8(d.uint(0xff))
	m.Kind = Kind(d.uint(0xff))
	m.ID = d.uint(math.MaxUint64)
	m.Epoch = d.uint(math.MaxUint64)
	m.From = d.str()
	m.Slot = uint16(d.uint(0xffff))
	if k := d.arrayLen(); k > 0 {
		m.Slots = make([]uint16, k)
		for i := range m.Slots {
			m.Slots[i] = uint16(d.uint(0xffff))
		}
	}
	if k := d.arrayLen(); k > 0 {
		m.Args = make([][]byte, k)
		for i := range m.Args {
			m.Args[i] = d.bytes()
		}
	}
	m.Reply = d.bytes()
	if k := d.arrayLen(); k > 0 {
		m.Entries = make([]Entry, k)
		for i := range m.Entries {
			x := &m.Entries[i]
			f := d.arrayLen()
			if d.err == nil && f < entryFields {
				return fmt.Errorf("entry of %d fields, want %d", f, entryFields)
			}
			x.Key = d.str()
			x.Kind = uint8(d.uint(0xff))
			x.Value = d.str()
			x.ExpireAt = d.int()
			x.Epoch = uint32(d.uint(math.MaxUint32))
			x.Seq = d.uint(math.MaxUint64)
			x.Deleted = d.bool()
			for ; d.err == nil && f > entryFields; f-- {
				d.skip()
			}
		}
	}
	if k := d.arrayLen(); k > 0 {
		m.Digests = make([]uint64, k)
		for i := range m.Digests {
			m.Digests[i] = d.uint(math.MaxUint64)
		}
	}
	m.Last = d.bool()
	m.Err = d.str()
	m.Proto = uint8(d.uint(0xff))
	if n >= 15 {
		m.States = d.bytes()
	}
	if n >= 16 {
		m.Fallback = d.bool()
	}
	if n >= 17 {
		if k := d.arrayLen(); k > 0 {
			m.Marks = make([]uint64, k)
			for i := range m.Marks {
				m.Marks[i] = d.uint(math.MaxUint64)
			}
		}
	}
	if n >= 18 {
		m.ValueArgs = d.bytes()
	}
	for ; d.err == nil && n > msgFields; n-- {
		d.skip()
	}
	if d.err == nil && d.off != len(d.b) {
		d.err = fmt.Errorf("%d bytes after the message", len(d.b)-d.off)
	}
	return d.err
}

// decoder parses msgpack values from b; after the first error every read
// returns a zero value and err keeps that error.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail(errShort)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

// next returns the following n bytes.
func (d *decoder) next(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail(errShort)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) be(n int) uint64 {
	p := d.next(n)
	switch len(p) {
	case 1:
		return uint64(p[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(p))
	case 4:
		return uint64(binary.BigEndian.Uint32(p))
	case 8:
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) typeErr(c byte, want string) {
	d.fail(fmt.Errorf("msgpack code %#x where %s was expected", c, want))
}

// length checks a claimed length against the bytes left.
func (d *decoder) length(n uint64) int {
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(errLength)
		return 0
	}
	return int(n)
}

func (d *decoder) arrayLen() int {
	c := d.byte()
	switch {
	case d.err != nil:
		return 0
	case c&0xf0 == 0x90:
		return int(c & 0x0f)
	case c == 0xdc:
		return d.length(d.be(2))
	case c == 0xdd:
		return d.length(d.be(4))
	case c == 0xc0:
		return 0
	}
	d.typeErr(c, "an array")
	return 0
}

// integer reads any msgpack integer: as a uint64 and whether it is
// negative (then v holds its two's complement).
func (d *decoder) integer() (v uint64, neg bool) {
	c := d.byte()
	switch {
	case d.err != nil:
		return 0, false
	case c <= 0x7f:
		return uint64(c), false
	case c >= 0xe0:
		return uint64(int64(int8(c))), true
	case c >= 0xcc && c <= 0xcf:
		return d.be(1 << (c - 0xcc)), false
	case c >= 0xd0 && c <= 0xd3:
		raw := d.be(1 << (c - 0xd0))
		var s int64
		switch c {
		case 0xd0:
			s = int64(int8(raw))
		case 0xd1:
			s = int64(int16(raw))
		case 0xd2:
			s = int64(int32(raw))
		default:
			s = int64(raw)
		}
		return uint64(s), s < 0
	case c == 0xc0:
		return 0, false
	}
	d.typeErr(c, "an integer")
	return 0, false
}

func (d *decoder) uint(limit uint64) uint64 {
	v, neg := d.integer()
	if neg || v > limit {
		d.fail(fmt.Errorf("value %d out of range", int64(v)))
		return 0
	}
	return v
}

func (d *decoder) int() int64 {
	v, _ := d.integer()
	return int64(v)
}

// raw reads a str or bin value; isNil reports msgpack nil.
func (d *decoder) raw() (p []byte, isNil bool) {
	c := d.byte()
	var n uint64
	switch {
	case d.err != nil:
		return nil, true
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == 0xd9 || c == 0xc4:
		n = d.be(1)
	case c == 0xda || c == 0xc5:
		n = d.be(2)
	case c == 0xdb || c == 0xc6:
		n = d.be(4)
	case c == 0xc0:
		return nil, true
	default:
		d.typeErr(c, "a string")
		return nil, true
	}
	return d.next(d.length(n)), false
}

func (d *decoder) str() string {
	p, _ := d.raw()
	return string(p)
}

// bytes returns a copy (the frame's buffer is reused), nil for nil.
func (d *decoder) bytes() []byte {
	p, isNil := d.raw()
	if isNil || d.err != nil {
		return nil
	}
	return append(make([]byte, 0, len(p)), p...)
}

func (d *decoder) bool() bool {
	switch c := d.byte(); {
	case d.err != nil:
		return false
	case c == 0xc3:
		return true
	case c == 0xc2 || c == 0xc0:
		return false
	default:
		d.typeErr(c, "a bool")
		return false
	}
}

// skip passes over one value of any type (a field from a newer sender).
func (d *decoder) skip() {
	for pending := 1; pending > 0 && d.err == nil; pending-- {
		c := d.byte()
		var n uint64
		switch {
		case d.err != nil:
			return
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c&0xf0 == 0x80: // fixmap
			pending += 2 * int(c&0x0f)
		case c&0xf0 == 0x90: // fixarray
			pending += int(c & 0x0f)
		case c&0xe0 == 0xa0:
			d.next(int(c & 0x1f))
		case c == 0xc4 || c == 0xd9:
			n = d.be(1)
			d.next(d.length(n))
		case c == 0xc5 || c == 0xda:
			n = d.be(2)
			d.next(d.length(n))
		case c == 0xc6 || c == 0xdb:
			n = d.be(4)
			d.next(d.length(n))
		case c == 0xc7, c == 0xc8, c == 0xc9: // ext 8/16/32: length, type, data
			n = d.be(1 << (c - 0xc7))
			d.next(1 + d.length(n))
		case c == 0xca:
			d.next(4)
		case c == 0xcb:
			d.next(8)
		case c >= 0xcc && c <= 0xcf:
			d.next(1 << (c - 0xcc))
		case c >= 0xd0 && c <= 0xd3:
			d.next(1 << (c - 0xd0))
		case c >= 0xd4 && c <= 0xd8: // fixext 1..16: type and data
			d.next(1 + 1<<(c-0xd4))
		case c == 0xdc:
			pending += d.length(d.be(2))
		case c == 0xdd:
			pending += d.length(d.be(4))
		case c == 0xde:
			pending += 2 * d.length(d.be(2))
		case c == 0xdf:
			pending += 2 * d.length(d.be(4))
		default: // 0xc1, never used
			d.typeErr(c, "a value")
		}
	}
}

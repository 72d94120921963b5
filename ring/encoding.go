package ring

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// encodingVersion is the first byte of an encoded Table.
const encodingVersion = 1

// Encoding (all integers unsigned varints, minimal length):
//
//	version byte (1)
//	epoch
//	replica count
//	member count n, then n × (length, bytes) in strictly ascending order
//	Slots × min(replicas, n) member indices, slot by slot, primary first
//
// With up to 128 members each index is one byte: about Slots × replicas
// bytes in all (48 KiB for three replicas).

// AppendBinary appends the table's encoding to b (encoding.BinaryAppender).
// It fails only for the zero Table.
func (t *Table) AppendBinary(b []byte) ([]byte, error) {
	if t.width == 0 {
		return b, fmt.Errorf("%w: cannot encode the zero Table", ErrNoMembers)
	}
	b = append(b, encodingVersion)
	b = binary.AppendUvarint(b, t.epoch)
	b = binary.AppendUvarint(b, uint64(t.replicas))
	b = binary.AppendUvarint(b, uint64(len(t.members)))
	for _, id := range t.members {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
	}
	for _, i := range t.rows {
		b = binary.AppendUvarint(b, uint64(i))
	}
	return b, nil
}

// MarshalBinary encodes the table compactly (encoding.BinaryMarshaler).
// It fails only for the zero Table.
func (t *Table) MarshalBinary() ([]byte, error) {
	return t.AppendBinary(make([]byte, 0, 64+Slots*t.width))
}

// UnmarshalBinary decodes a table encoded by MarshalBinary
// (encoding.BinaryUnmarshaler). It accepts only the canonical encoding, so
// a decoded table re-encodes to the same bytes, and it checks structure
// (member order, indices in range, distinct replicas per slot) but not the
// zone rule or balance, which depend on information not encoded.
//
// Call it only on a new zero Table that no other goroutine can see: it is
// the one method that writes to a Table. On error t is left unchanged;
// errors wrap ErrBadEncoding.
func (t *Table) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	if v := d.byte(); d.err == nil && v != encodingVersion {
		return fmt.Errorf("%w: version %d", ErrBadEncoding, v)
	}
	epoch := d.uvarint()
	replicas := d.uvarint()
	n := d.uvarint()
	if d.err != nil {
		return d.err
	}
	if replicas < 1 || replicas > MaxReplicas {
		return fmt.Errorf("%w: replica count %d", ErrBadEncoding, replicas)
	}
	if n < 1 || n > MaxMembers {
		return fmt.Errorf("%w: member count %d", ErrBadEncoding, n)
	}
	members := make([]NodeID, n)
	for i := range members {
		l := d.uvarint()
		if d.err == nil && (l == 0 || l > uint64(len(d.b))) {
			d.fail("member %d: bad length %d", i, l)
		}
		if d.err != nil {
			return d.err
		}
		members[i] = NodeID(d.b[:l])
		d.b = d.b[l:]
		if i > 0 && members[i-1] >= members[i] {
			return fmt.Errorf("%w: members not in ascending order", ErrBadEncoding)
		}
	}
	width := int(min(replicas, n))
	if len(d.b) < Slots*width {
		return fmt.Errorf("%w: truncated slot lists", ErrBadEncoding)
	}
	ids := make([]NodeID, Slots*width)
	rows := make([]uint16, Slots*width)
	seen := make([]int32, n) // slot+1 that last used each member
	for s := range Slots {
		for k := range width {
			i := d.uvarint()
			if d.err == nil && i >= n {
				d.fail("slot %d: member index %d out of range", s, i)
			}
			if d.err == nil && seen[i] == int32(s+1) {
				d.fail("slot %d: duplicate replica", s)
			}
			if d.err != nil {
				return d.err
			}
			seen[i] = int32(s + 1)
			ids[s*width+k] = members[i]
			rows[s*width+k] = uint16(i)
		}
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadEncoding, len(d.b))
	}
	*t = Table{epoch: epoch, replicas: int(replicas), width: width, members: members, ids: ids, rows: rows}
	return nil
}

// decoder reads from b, recording the first error; later reads then
// return zero.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrBadEncoding}, args...)...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// uvarint reads a minimally encoded unsigned varint.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	if k != uvarintLen(v) {
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[k:]
	return v
}

func uvarintLen(v uint64) int { return max(1, (bits.Len64(v)+6)/7) }

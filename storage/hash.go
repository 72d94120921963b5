package storage

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Field is one field of a hash stash.
type Field struct {
	Name, Value string
}

// EncodeHash encodes fields, in the given order, as the Value of a KindHash
// stash: for each field, uvarint(len(Name)) Name uvarint(len(Value)) Value.
// No fields encode as "". Duplicate names are kept as given; callers that
// want map semantics (HSET) replace a field in place before encoding.
//
// A hash is stored as one value, as Redis stores small hashes in a
// listpack: compact (2 bytes of overhead per short field, no per-field
// allocation in the index) at the price of O(n) work per update — HSET
// decodes, edits and re-encodes the whole hash. That suits session state,
// whose hashes are small; a hash of many thousands of fields updated field
// by field would be better stored as several keys.
func EncodeHash(fields []Field) string {
	n := 0
	for _, f := range fields {
		n += uvarintLen(len(f.Name)) + len(f.Name) + uvarintLen(len(f.Value)) + len(f.Value)
	}
	var b strings.Builder
	b.Grow(n)
	var tmp [binary.MaxVarintLen64]byte
	for _, f := range fields {
		b.Write(binary.AppendUvarint(tmp[:0], uint64(len(f.Name))))
		b.WriteString(f.Name)
		b.Write(binary.AppendUvarint(tmp[:0], uint64(len(f.Value))))
		b.WriteString(f.Value)
	}
	return b.String()
}

// DecodeHash decodes a value made by EncodeHash. The returned names and
// values are substrings of v (no copies), so holding any of them keeps all
// of v alive. An invalid encoding yields an error wrapping ErrCorrupt.
func DecodeHash(v string) ([]Field, error) {
	// First pass validates and counts, so the result is allocated once.
	n := 0
	for p := 0; p < len(v); n++ {
		for range 2 {
			l, q, err := readLen(v, p)
			if err != nil {
				return nil, err
			}
			p = q + l
		}
	}
	if n == 0 {
		return nil, nil
	}
	fields := make([]Field, 0, n)
	for p := 0; p < len(v); {
		l, q, _ := readLen(v, p)
		name := v[q : q+l]
		l, q, _ = readLen(v, q+l)
		fields = append(fields, Field{Name: name, Value: v[q : q+l]})
		p = q + l
	}
	return fields, nil
}

// readLen reads a uvarint length at v[p:] and checks that that many bytes
// follow it. It returns the length and the offset after the uvarint.
func readLen(v string, p int) (int, int, error) {
	var x uint64
	for shift := uint(0); ; shift += 7 {
		if p >= len(v) {
			return 0, 0, fmt.Errorf("%w: hash: truncated length", ErrCorrupt)
		}
		if shift >= 63 {
			return 0, 0, fmt.Errorf("%w: hash: length overflows", ErrCorrupt)
		}
		c := v[p]
		p++
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	if x > uint64(len(v)-p) {
		return 0, 0, fmt.Errorf("%w: hash: length %d exceeds the %d bytes left", ErrCorrupt, x, len(v)-p)
	}
	return int(x), p, nil
}

func uvarintLen(x int) int {
	n := 1
	for ux := uint64(x); ux >= 0x80; ux >>= 7 {
		n++
	}
	return n
}

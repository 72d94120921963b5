package storage

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestHashCodec(t *testing.T) {
	cases := []struct {
		name   string
		fields []Field
	}{
		{"none", nil},
		{"one", []Field{{"a", "1"}}},
		{"empty strings", []Field{{"", ""}, {"x", ""}, {"", "y"}}},
		{"order kept", []Field{{"z", "1"}, {"a", "2"}, {"m", "3"}}},
		{"long", []Field{{strings.Repeat("n", 300), strings.Repeat("v", 70000)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			enc := EncodeHash(tc.fields)
			got, err := DecodeHash(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.fields) {
				t.Fatalf("round trip: %v, want %v", got, tc.fields)
			}
		})
	}
	if got := len(EncodeHash([]Field{{"ab", "c"}})); got != 5 {
		t.Fatalf("encoding of a short field is %d bytes, want 5", got)
	}
	for _, bad := range []string{"\x01", "\x01a", "\x01a\x02b", "\x80", "\x05abc", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"} {
		if _, err := DecodeHash(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("DecodeHash(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
}

func TestRecordCodec(t *testing.T) {
	cases := []struct {
		name string
		slot uint16
		key  string
		kind Kind
		exp  int64
		ver  Version
		val  string
	}{
		{"plain", 0, "k", KindString, 0, Version{1, 1}, "v"},
		{"hash", Slots - 1, "session:abc", KindHash, 1_700_000_000_000, Version{7, 1 << 40}, EncodeHash([]Field{{"a", "b"}})},
		{"empty", 5, "", KindString, -1, Version{}, ""},
		{"tombstone", 9, "gone", kindTombstone, 1_700_000_000_000, Version{2, 5}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := appendRecordKey(nil, tc.slot, tc.key)
			v := appendRecordValue(nil, k, tc.kind, tc.exp, tc.ver, tc.val)
			if len(k) != recordKeyLen(tc.key) || len(v) != recordValLen(tc.val) {
				t.Fatalf("lengths %d %d", len(k), len(v))
			}
			r, err := decodeRecord(k, v)
			if err != nil {
				t.Fatal(err)
			}
			if r.slot != tc.slot || string(r.key) != tc.key || r.kind != tc.kind || r.exp != tc.exp || r.ver != tc.ver || string(r.value) != tc.val {
				t.Fatalf("decoded %+v", r)
			}
			// Every single-byte change is caught.
			for i := range v {
				w := bytes.Clone(v)
				w[i] ^= 0x10
				if _, err := decodeRecord(k, w); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("flip of byte %d not detected", i)
				}
			}
			// A record moved under another key is caught.
			if _, err := decodeRecord(appendRecordKey(nil, tc.slot, tc.key+"x"), v); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("moved record not detected")
			}
		})
	}
	for _, tc := range []struct{ k, v []byte }{
		{nil, nil}, {[]byte{1}, nil}, {[]byte{0xff, 0xff}, make([]byte, recHdrLen)}, {[]byte{0, 1}, make([]byte, recHdrLen-1)},
	} {
		if _, err := decodeRecord(tc.k, tc.v); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decodeRecord(%x, %x) = %v", tc.k, tc.v, err)
		}
	}
	// A tombstone never has a value, even with a valid checksum.
	k := appendRecordKey(nil, 1, "t")
	if _, err := decodeRecord(k, appendRecordValue(nil, k, kindTombstone, 1, Version{1, 1}, "x")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tombstone with a value: %v", err)
	}
}

func FuzzDecodeHash(f *testing.F) {
	f.Add("")
	f.Add(EncodeHash([]Field{{"a", "1"}, {"bb", "22"}}))
	f.Add("\x80\x01")
	f.Add("\x05abc")
	f.Fuzz(func(t *testing.T, v string) {
		fields, err := DecodeHash(v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		again, err := DecodeHash(EncodeHash(fields))
		if err != nil || !reflect.DeepEqual(again, fields) {
			t.Fatalf("re-encoding %v: %v, %v", fields, again, err)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	k := appendRecordKey(nil, 12, "key")
	f.Add(k, appendRecordValue(nil, k, KindString, 5, Version{1, 2}, "value"))
	f.Add(k, appendRecordValue(nil, k, kindTombstone, 5, Version{1, 3}, ""))
	f.Add([]byte{0}, []byte{})
	f.Add([]byte{0xff, 0xff, 'x'}, make([]byte, 40))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		r, err := decodeRecord(k, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		k2 := appendRecordKey(nil, r.slot, string(r.key))
		v2 := appendRecordValue(nil, k2, r.kind, r.exp, r.ver, string(r.value))
		if !bytes.Equal(k, k2) || !bytes.Equal(v, v2) {
			t.Fatalf("re-encoding differs: %x/%x vs %x/%x", k, v, k2, v2)
		}
	})
}

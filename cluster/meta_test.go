package cluster

import (
	"bytes"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	long := strings.Repeat("x", maxAddrLen)
	for _, m := range []meta{
		{State: StateJoining, Name: "a", ClusterAddr: "127.0.0.1:7380"},
		{State: StateDraining, Clustered: true, Leaving: true, Expect: 5, Name: strings.Repeat("n", maxNameLen),
			Zone: strings.Repeat("z", maxNameLen), ClusterAddr: long, RESPAddr: long, AdminAddr: long,
			ClusterID: strings.Repeat("f", 32)},
	} {
		b := m.encode()
		if len(b) > metaMaxSize {
			t.Fatalf("meta of %d bytes exceeds memberlist's %d", len(b), metaMaxSize)
		}
		got, err := decodeMeta(b)
		if err != nil || got != m {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", m, got, err)
		}
		// A later version may append fields.
		if got, err := decodeMeta(append(b, 1, 2, 3)); err != nil || got != m {
			t.Fatalf("with trailing bytes: %+v, %v", got, err)
		}
	}
}

func TestMetaRejects(t *testing.T) {
	good := (&meta{State: StateActive, Name: "a", ClusterAddr: "x:1"}).encode()
	for name, b := range map[string][]byte{
		"empty":      nil,
		"version 2":  append([]byte{2}, good[1:]...),
		"bad state":  append([]byte{1, 9}, good[2:]...),
		"truncated":  good[:len(good)-2],
		"no name":    (&meta{State: StateActive, ClusterAddr: "x:1"}).encode(),
		"no address": (&meta{State: StateActive, Name: "a"}).encode(),
		"space name": (&meta{State: StateActive, Name: "a b", ClusterAddr: "x:1"}).encode(),
	} {
		if _, err := decodeMeta(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzMeta: decodeMeta never panics, and what it accepts re-encodes to a
// prefix of the input (trailing bytes are a later version's fields).
func FuzzMeta(f *testing.F) {
	f.Add((&meta{State: StateActive, Name: "node-1", ClusterAddr: "10.0.0.1:7380", ClusterID: "abc"}).encode())
	f.Add([]byte{1, 1, 0, 3, 1, 'a', 0, 3, 'x', ':', '1', 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		enc := m.encode()
		// Flag bits this version does not know are dropped; compare the rest.
		if len(enc) > len(b) || !bytes.Equal(enc[:2], b[:2]) || !bytes.Equal(enc[3:], b[3:len(enc)]) {
			t.Fatalf("decode(%x) = %+v re-encodes to %x", b, m, enc)
		}
	})
}

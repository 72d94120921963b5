package ring

import (
	"bytes"
	"errors"
	"testing"
)

func TestMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		n, replicas, zones int
		epoch              uint64
	}{
		{1, 1, 0, 0}, {3, 3, 0, 1}, {2, 5, 0, 1 << 40}, {20, 3, 3, 99}, {200, 2, 0, 7},
	}
	for _, tt := range tests {
		ms := roster(tt.n, tt.zones)
		a := mustBuild(t, ms, tt.replicas, tt.epoch, nil)
		enc, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var b Table
		if err := b.UnmarshalBinary(enc); err != nil {
			t.Fatalf("n=%d: %v", tt.n, err)
		}
		if b.Epoch() != a.Epoch() || b.ReplicaCount() != a.ReplicaCount() || b.Moved(a) != 0 {
			t.Fatalf("n=%d: decoded table differs", tt.n)
		}
		for s := range Slots {
			if !equalIDs(a.Replicas(uint16(s)), b.Replicas(uint16(s))) {
				t.Fatalf("slot %d: %v != %v", s, a.Replicas(uint16(s)), b.Replicas(uint16(s)))
			}
		}
		again, _ := b.MarshalBinary()
		if !bytes.Equal(enc, again) {
			t.Fatal("re-encoding differs")
		}
		// A decoded table works as prev.
		checkTable(t, mustBuild(t, ms, tt.replicas, tt.epoch+1, &b), ms, tt.replicas)
		if tt.n <= 128 && len(enc) > 64+Slots*min(tt.n, tt.replicas)+tt.n*8 {
			t.Errorf("n=%d: encoding is %d bytes", tt.n, len(enc))
		}
		t.Logf("n=%d replicas=%d: %d bytes", tt.n, tt.replicas, len(enc))
	}
}

func equalIDs(a, b []NodeID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMarshalZeroTable(t *testing.T) {
	var z Table
	if _, err := z.MarshalBinary(); !errors.Is(err, ErrNoMembers) {
		t.Errorf("MarshalBinary of zero Table: %v", err)
	}
	if z.Replicas(5) != nil || z.Primary(5) != "" || len(z.Members()) != 0 || len(z.PrimaryCounts()) != 0 {
		t.Error("zero Table is not empty")
	}
	if z.Moved(&Table{}) != 0 || z.Moved(nil) != Slots {
		t.Error("zero Table Moved")
	}
}

func TestUnmarshalRejects(t *testing.T) {
	good, err := mustBuild(t, roster(3, 0), 2, 5, nil).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"version", mod(func(b []byte) []byte { b[0] = 2; return b })},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"truncated", good[:len(good)-1]},
		{"header only", good[:4]},
		// good = 1, epoch 5, replicas 2, n 3, (4 "n000") ×3, then indices.
		{"zero replicas", mod(func(b []byte) []byte { b[2] = 0; return b })},
		{"too many replicas", mod(func(b []byte) []byte { b[2] = MaxReplicas + 1; return b })},
		{"zero members", mod(func(b []byte) []byte { b[3] = 0; return b })},
		{"unsorted members", mod(func(b []byte) []byte { b[8] = '9'; return b })},
		{"duplicate member", mod(func(b []byte) []byte { b[13] = '0'; return b })},
		{"index out of range", mod(func(b []byte) []byte { b[19] = 3; return b })},
		{"duplicate replica", mod(func(b []byte) []byte { b[20] = b[19]; return b })},
		{"non-minimal varint", append([]byte{1, 0x85, 0x00}, good[2:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tab Table
			if err := tab.UnmarshalBinary(tt.data); !errors.Is(err, ErrBadEncoding) {
				t.Fatalf("UnmarshalBinary = %v, want ErrBadEncoding", err)
			}
			if tab.width != 0 {
				t.Fatal("failed UnmarshalBinary changed the table")
			}
		})
	}
	for i := range len(good) {
		var tab Table
		if tab.UnmarshalBinary(good[:i]) == nil {
			t.Fatalf("accepted a truncation to %d bytes", i)
		}
	}
}

func FuzzUnmarshalBinary(f *testing.F) {
	for _, n := range []int{1, 3} {
		b, err := mustBuild(f, roster(n, 0), 2, 5, nil).MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1, 0, 1, 1, 1, 'a'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var tab Table
		if err := tab.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrBadEncoding) {
				t.Fatalf("error %v does not wrap ErrBadEncoding", err)
			}
			return
		}
		again, err := tab.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, data) {
			t.Fatal("accepted input does not re-encode to itself")
		}
		for s := range Slots {
			if r := tab.Replicas(uint16(s)); len(r) == 0 || r[0] != tab.Primary(uint16(s)) {
				t.Fatalf("slot %d: bad replica list %v", s, r)
			}
		}
	})
}

package ring

import (
	"strings"
	"testing"
)

// crc16Bitwise is CRC16/XMODEM computed bit by bit, as a reference for the
// table-driven version.
func crc16Bitwise(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// refSlot transliterates keyHashSlot from Redis's cluster.c.
func refSlot(key []byte) uint16 {
	keylen := len(key)
	s := 0
	for s = 0; s < keylen; s++ {
		if key[s] == '{' {
			break
		}
	}
	if s == keylen {
		return crc16Bitwise(key) & 0x3FFF
	}
	e := 0
	for e = s + 1; e < keylen; e++ {
		if key[e] == '}' {
			break
		}
	}
	if e == keylen || e == s+1 {
		return crc16Bitwise(key) & 0x3FFF
	}
	return crc16Bitwise(key[s+1:e]) & 0x3FFF
}

func TestCRC16(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
	}{
		{"", 0},
		{"123456789", 0x31C3}, // the CRC catalogue's check value for CRC-16/XMODEM
		{"A", 0x58E5},
	}
	for _, tt := range tests {
		if got := crc16(tt.in); got != tt.want {
			t.Errorf("crc16(%q) = %#04x, want %#04x", tt.in, got, tt.want)
		}
		if got := crc16([]byte(tt.in)); got != tt.want {
			t.Errorf("crc16([]byte(%q)) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
	for i := range 256 {
		b := []byte{byte(i), byte(255 - i), 'x'}
		if crc16(b) != crc16Bitwise(b) {
			t.Fatalf("table and bitwise CRC differ for %v", b)
		}
	}
}

func TestSlot(t *testing.T) {
	tests := []struct {
		key  string
		want uint16
	}{
		// CLUSTER KEYSLOT results from a real Redis.
		{"foo", 12182},
		{"bar", 5061},
		{"hello", 866},
		{"somekey", 11058},
		{"foo{hash_tag}", 2515},
		{"bar{hash_tag}", 2515},
		{"123456789", 0x31C3 % Slots},
		{"", 0},
		// Hash tag rules: first '{', then the first '}' after it, non-empty.
		{"{user1000}.following", Slot("user1000")},
		{"{user1000}.followers", Slot("user1000")},
		{"foo{}{bar}", crc16("foo{}{bar}") % Slots},
		{"foo{{bar}}zap", crc16("{bar") % Slots},
		{"foo{bar}{zap}", crc16("bar") % Slots},
		{"{}", crc16("{}") % Slots},
		{"{", crc16("{") % Slots},
		{"}{a}", crc16("a") % Slots},
		{"a{b", crc16("a{b") % Slots},
		{"a}b{c}", crc16("c") % Slots},
		{"{a}", crc16("a") % Slots},
	}
	for _, tt := range tests {
		if got := Slot(tt.key); got != tt.want {
			t.Errorf("Slot(%q) = %d, want %d", tt.key, got, tt.want)
		}
		if got := SlotBytes([]byte(tt.key)); got != tt.want {
			t.Errorf("SlotBytes(%q) = %d, want %d", tt.key, got, tt.want)
		}
		if got := refSlot([]byte(tt.key)); got != tt.want {
			t.Errorf("reference slot of %q = %d, want %d", tt.key, got, tt.want)
		}
	}
}

func TestSlotNoAlloc(t *testing.T) {
	key := []byte("prefix{user:1000}.suffix")
	skey := strings.Repeat("k", 100)
	if n := testing.AllocsPerRun(100, func() { SlotBytes(key) }); n != 0 {
		t.Errorf("SlotBytes allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { Slot(skey) }); n != 0 {
		t.Errorf("Slot allocates %v times", n)
	}
}

func FuzzSlot(f *testing.F) {
	for _, s := range []string{"", "foo", "{a}b", "foo{}{bar}", "foo{{bar}}zap", "{", "}", "{}}", "\xff{\x00}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		want := refSlot(key)
		if got := SlotBytes(key); got != want {
			t.Fatalf("SlotBytes(%q) = %d, want %d", key, got, want)
		}
		if got := Slot(string(key)); got != want {
			t.Fatalf("Slot(%q) = %d, want %d", key, got, want)
		}
	})
}

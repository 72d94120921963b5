package tag

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	mrand "math/rand/v2"
	"strings"
	"testing"
)

var (
	secret1 = []byte("0123456789abcdef-cluster-one")
	secret2 = []byte("0123456789abcdef-cluster-two")
)

func mustCodec(tb testing.TB, secret []byte) *Codec {
	tb.Helper()
	c, err := NewCodec(secret)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func sampleTag() Tag {
	return Tag{ID: ID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, Hint: HintFor("node-a")}
}

func TestNewCodec(t *testing.T) {
	tests := []struct {
		secret []byte
		err    error
	}{
		{nil, ErrShortSecret},
		{[]byte("short"), ErrShortSecret},
		{make([]byte, MinSecret-1), ErrShortSecret},
		{make([]byte, MinSecret), nil},
		{secret1, nil},
	}
	for _, tt := range tests {
		c, err := NewCodec(tt.secret)
		if !errors.Is(err, tt.err) || (err == nil) != (c != nil) {
			t.Errorf("NewCodec(%d bytes) = %v, %v; want error %v", len(tt.secret), c, err, tt.err)
		}
	}
}

// The codec keeps no reference to the caller's secret.
func TestNewCodecCopiesSecret(t *testing.T) {
	secret := bytes.Clone(secret1)
	c := mustCodec(t, secret)
	s := c.Encode(sampleTag())
	clear(secret)
	if _, err := c.Decode(s); err != nil {
		t.Fatalf("wiping the secret broke the codec: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	c := mustCodec(t, secret1)
	rng := mrand.New(mrand.NewPCG(1, 2))
	tags := []Tag{{}, sampleTag(), {ID: ID{255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255}, Hint: ^uint32(0)}}
	for range 100 {
		var tg Tag
		for i := range tg.ID {
			tg.ID[i] = byte(rng.Uint32())
		}
		tg.Hint = rng.Uint32()
		tags = append(tags, tg)
	}
	for _, tg := range tags {
		s := c.Encode(tg)
		if len(s) != EncodedLen {
			t.Fatalf("Encode gave %d characters, want %d", len(s), EncodedLen)
		}
		if strings.ContainsAny(s, "+/=") {
			t.Fatalf("Encode gave %q: not unpadded base64url", s)
		}
		if c.Encode(tg) != s {
			t.Fatal("Encode is not stable")
		}
		got, err := c.Decode(s)
		if err != nil || got != tg {
			t.Fatalf("Decode(Encode(%v)) = %v, %v", tg, got, err)
		}
		if got, err := Unverified(s); err != nil || got != tg {
			t.Fatalf("Unverified(Encode(%v)) = %v, %v", tg, got, err)
		}
	}
}

// TestUnverified: it reads a tag of another secret (routing needs no
// secret) and rejects what is not a tag at all.
func TestUnverified(t *testing.T) {
	tg := sampleTag()
	s := mustCodec(t, secret2).Encode(tg)
	if _, err := mustCodec(t, secret1).Decode(s); !errors.Is(err, ErrForged) {
		t.Fatalf("Decode under another secret: %v, want ErrForged", err)
	}
	if got, err := Unverified(s); err != nil || got != tg {
		t.Fatalf("Unverified of another secret's tag = %v, %v", got, err)
	}
	for _, bad := range []string{"", s[:len(s)-1], strings.Repeat("*", EncodedLen), "B" + s[1:]} {
		if _, err := Unverified(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Unverified(%q): %v, want ErrMalformed", bad, err)
		}
	}
}

// TestFormat pins the layout documented in doc.go.
func TestFormat(t *testing.T) {
	tg := sampleTag()
	s := mustCodec(t, secret1).Encode(tg)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, secret1)
	m.Write([]byte("stash tag MAC key v1"))
	key := m.Sum(nil)
	body := append([]byte{1}, tg.ID[:]...)
	body = binary.BigEndian.AppendUint32(body, tg.Hint)
	m = hmac.New(sha256.New, key)
	m.Write(body)
	want := append(body, m.Sum(nil)[:16]...)
	if !bytes.Equal(raw, want) {
		t.Fatalf("layout:\n got %x\nwant %x", raw, want)
	}
}

func checkRejected(t *testing.T, c *Codec, s string, want error) {
	t.Helper()
	_, err := c.Decode(s)
	if !errors.Is(err, ErrBadTag) || !errors.Is(err, want) {
		t.Fatalf("Decode(%q) = %v, want %v", s, err, want)
	}
	other := ErrForged
	if want == ErrForged {
		other = ErrMalformed
	}
	if errors.Is(err, other) {
		t.Fatalf("Decode(%q) = %v, which is also %v", s, err, other)
	}
	if len(s) >= 8 && strings.Contains(err.Error(), s) {
		t.Fatalf("error %q echoes the input", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	c := mustCodec(t, secret1)
	good := c.Encode(sampleTag())
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	enc := base64.RawURLEncoding.EncodeToString
	mutate := func(f func(b []byte)) string { b := bytes.Clone(raw); f(b); return enc(b) }
	tests := []struct {
		name string
		s    string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"one char", "A", ErrMalformed},
		{"extra char", good + "A", ErrMalformed},
		{"extra bytes", enc(append(bytes.Clone(raw), 0)), ErrMalformed},
		{"padded", good + "==", ErrMalformed},
		{"std alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(good[:49]) + "+", ErrMalformed},
		{"newline inside", good[:20] + "\n" + good[21:], ErrMalformed},
		{"space", good[:49] + " ", ErrMalformed},
		{"non-zero trailing bits", good[:49] + string(flipLow(good[49])), ErrMalformed},
		{"version 0", mutate(func(b []byte) { b[0] = 0 }), ErrMalformed},
		{"version 2", mutate(func(b []byte) { b[0] = 2 }), ErrMalformed},
		{"ID altered", mutate(func(b []byte) { b[5] ^= 1 }), ErrForged},
		{"hint altered", mutate(func(b []byte) { b[18] ^= 0x80 }), ErrForged},
		{"MAC altered", mutate(func(b []byte) { b[36] ^= 1 }), ErrForged},
		{"MAC zeroed", mutate(func(b []byte) { clear(b[21:]) }), ErrForged},
		{"wrong secret", mustCodec(t, secret2).Encode(sampleTag()), ErrForged},
		{"hint re-pointed", c.Encode(Tag{ID: sampleTag().ID, Hint: 7})[:21*4/3] + good[21*4/3:], ErrForged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkRejected(t, c, tt.s, tt.want) })
	}
}

// flipLow returns the base64url character whose value differs from c's in
// the lowest bit, which for the last character of a tag is a padding bit.
func flipLow(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return alphabet[strings.IndexByte(alphabet, c)^1]
}

// Every single-byte alteration of the raw tag, every single-character
// alteration of the text and every truncation is rejected.
func TestDecodeRejectsEveryAlteration(t *testing.T) {
	c := mustCodec(t, secret1)
	good := c.Encode(sampleTag())
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	for i := range raw {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(raw)
			b[i] ^= x
			want := ErrForged
			if i == 0 {
				want = ErrMalformed
			}
			checkRejected(t, c, base64.RawURLEncoding.EncodeToString(b), want)
		}
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. \n\x00\xff"
	for i := range len(good) {
		for j := range len(alphabet) {
			if alphabet[j] == good[i] {
				continue
			}
			s := good[:i] + alphabet[j:j+1] + good[i+1:]
			if _, err := c.Decode(s); !errors.Is(err, ErrBadTag) {
				t.Fatalf("altered tag %q accepted (position %d)", s, i)
			}
		}
	}
	for i := range len(good) {
		checkRejected(t, c, good[:i], ErrMalformed)
		checkRejected(t, c, good[i+1:], ErrMalformed)
	}
}

func TestHintFor(t *testing.T) {
	sum := sha256.Sum256([]byte("node-a"))
	if got, want := HintFor("node-a"), binary.BigEndian.Uint32(sum[:]); got != want {
		t.Errorf("HintFor(node-a) = %#x, want %#x", got, want)
	}
	if HintFor("node-a") == HintFor("node-b") {
		t.Error("distinct names gave the same hint")
	}
	for i := range 10000 {
		if HintFor(string(rune(i))) == 0 {
			t.Fatal("HintFor returned 0")
		}
	}
}

func TestID(t *testing.T) {
	id := ID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	if got, want := id.String(), "AAECAwQFBgcICQoLDA0ODw"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := id.Key(), "stash:AAECAwQFBgcICQoLDA0ODw"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	if strings.ContainsAny(id.Key(), "{}") {
		t.Error("key contains a hash tag delimiter")
	}
	back, err := ParseID(id.String())
	if err != nil || back != id {
		t.Errorf("ParseID(String()) = %v, %v", back, err)
	}
	for _, bad := range []string{"", "AAECAwQFBgcICQoLDA0OD", "AAECAwQFBgcICQoLDA0ODx", "AAECAwQFBgcICQoLDA0OD+", "AAECAwQFBgcICQoLDA0ODw=", "AAECAwQFBgcICQoLDA0O\nw"} {
		if _, err := ParseID(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseID(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestNewID(t *testing.T) {
	a, err := NewID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewID(rand.Reader)
	if a == b || a == (ID{}) {
		t.Errorf("NewID gave %v and %v", a, b)
	}
	src := bytes.NewReader(bytes.Repeat([]byte{7}, 16))
	if id, err := NewID(src); err != nil || id != (ID{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}) {
		t.Errorf("NewID(sevens) = %v, %v", id, err)
	}
	if _, err := NewID(bytes.NewReader(make([]byte, 15))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("NewID(short reader) = %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := NewID(nil); err == nil {
		t.Error("NewID(nil) succeeded")
	}
}

// counter yields IDs whose first byte counts up 0, 1, 2, …
type counter struct{ n byte }

func (c *counter) Read(p []byte) (int, error) {
	clear(p)
	p[0] = c.n
	c.n++
	return len(p), nil
}

func TestMint(t *testing.T) {
	tests := []struct {
		name     string
		accept   func(ID) bool
		maxTries int
		want     byte // first byte of the accepted ID
		err      error
	}{
		{"nil accept", nil, 5, 0, nil},
		{"first", func(ID) bool { return true }, 1, 0, nil},
		{"fourth", func(id ID) bool { return id[0] == 3 }, 4, 3, nil},
		{"too few tries", func(id ID) bool { return id[0] == 3 }, 3, 0, ErrExhausted},
		{"never", func(ID) bool { return false }, 10, 0, ErrExhausted},
		{"zero tries means one", func(ID) bool { return true }, 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := Mint(&counter{}, tt.accept, tt.maxTries)
			if !errors.Is(err, tt.err) || (err == nil && id[0] != tt.want) {
				t.Fatalf("Mint = %v, %v; want ID starting %d, error %v", id, err, tt.want, tt.err)
			}
		})
	}
	if _, err := Mint(bytes.NewReader(nil), nil, 3); !errors.Is(err, io.EOF) {
		t.Errorf("Mint with an empty reader = %v, want io.EOF", err)
	}
	// With crypto/rand and a 1-in-4 acceptance, 200 tries never fail in
	// practice (probability (3/4)^200 ≈ 1e-25).
	id, err := Mint(rand.Reader, func(id ID) bool { return id[0]%4 == 0 }, 200)
	if err != nil || id[0]%4 != 0 {
		t.Fatalf("Mint = %v, %v", id, err)
	}
}

func FuzzDecode(f *testing.F) {
	c := mustCodec(f, secret1)
	f.Add(c.Encode(sampleTag()))
	f.Add(c.Encode(Tag{}))
	f.Add(mustCodec(f, secret2).Encode(sampleTag()))
	f.Add("")
	f.Add(strings.Repeat("A", EncodedLen))
	f.Add(strings.Repeat("_", EncodedLen+1))
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := c.Decode(s)
		if err != nil {
			if !errors.Is(err, ErrBadTag) || errors.Is(err, ErrMalformed) == errors.Is(err, ErrForged) {
				t.Fatalf("Decode error %v is not exactly one of ErrMalformed, ErrForged", err)
			}
			return
		}
		if again := c.Encode(tg); again != s {
			t.Fatalf("accepted %q re-encodes to %q", s, again)
		}
	})
}

func FuzzParseID(f *testing.F) {
	f.Add("AAECAwQFBgcICQoLDA0ODw")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseID error %v is not ErrMalformed", err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("accepted %q re-encodes to %q", s, id.String())
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	c := mustCodec(b, secret1)
	tg := sampleTag()
	b.ReportAllocs()
	for b.Loop() {
		c.Encode(tg)
	}
}

func BenchmarkDecode(b *testing.B) {
	c := mustCodec(b, secret1)
	s := c.Encode(sampleTag())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(s); err != nil {
			b.Fatal(err)
		}
	}
}

func TestZeroCodecPanics(t *testing.T) {
	for name, f := range map[string]func(c *Codec){
		"Encode": func(c *Codec) { c.Encode(Tag{}) },
		"Decode": func(c *Codec) { c.Decode(mustCodec(t, secret1).Encode(Tag{})) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s on the zero Codec did not panic", name)
				}
			}()
			f(&Codec{})
		}()
	}
}

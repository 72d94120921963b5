package transport

import (
	"bytes"
	"testing"
)

// rw feeds scripted input to a handshake and records its output.
type rw struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (r *rw) Read(p []byte) (int, error)  { return r.in.Read(p) }
func (r *rw) Write(p []byte) (int, error) { return r.out.Write(p) }

func validHello(kind Kind) []byte {
	h := hello{kind: kind}
	copy(h.nonce[:], bytes.Repeat([]byte{0xab}, nonceLen))
	return h.encode()
}

// FuzzHeader feeds arbitrary bytes to the hello parser and to the
// listener's side of the handshake. Neither may panic; the parser accepts
// exactly the canonical encoding; the listener never accepts (it cannot:
// the proof covers its own fresh nonce) and sends nothing before a valid
// hello of a served kind.
func FuzzHeader(f *testing.F) {
	f.Add(validHello(KindData))
	f.Add(append(validHello(KindRaft), bytes.Repeat([]byte{1}, macLen)...))
	f.Add([]byte("STSH"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{})
	key, err := deriveKey(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	served := func(k Kind) bool { return k == KindData || k == KindRaft }
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHello(data)
		if err == nil && !bytes.Equal(h.encode(), data) {
			t.Fatalf("parseHello accepted a non-canonical hello %x", data)
		}

		r := &rw{in: bytes.NewReader(data)}
		kind, err := acceptHandshake(r, key, served)
		if err == nil {
			t.Fatalf("handshake accepted %x (kind %v)", data, kind)
		}
		valid := len(data) >= helloLen
		if valid {
			h, perr := parseHello(data[:helloLen])
			valid = perr == nil && served(h.kind)
		}
		if !valid && r.out.Len() != 0 {
			t.Fatalf("listener wrote %d bytes before a valid hello", r.out.Len())
		}
		if valid && r.out.Len() != challengeLen {
			t.Fatalf("listener wrote %d bytes after a valid hello, want the %d-byte challenge", r.out.Len(), challengeLen)
		}
	})
}

// The dialer's side against scripted listener answers: never panics,
// never succeeds without the key.
func FuzzDialHandshake(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0}, challengeLen+1))
	f.Add([]byte{})
	key, err := deriveKey(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &rw{in: bytes.NewReader(data)}
		if err := dialHandshake(r, key, KindData); err == nil {
			t.Fatalf("dialer accepted a forged challenge %x", data)
		}
	})
}

package transport

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
)

// Wire format of the handshake (version 1). All lengths are fixed.
//
//	dialer → listener  hello     magic "STSH" | version 1 | kind | nonceD (32 bytes)
//	listener → dialer  challenge nonceL (32) | HMAC(K, "stash mux listener" | hello | nonceL)
//	dialer → listener  proof     HMAC(K, "stash mux dialer" | hello | nonceL)
//	listener → dialer  ok        0x01
//
// K is HKDF-SHA256 of the cluster secret with the label keyLabel. Both MACs
// cover both nonces (nonceD is inside hello), so neither side can replay an
// old exchange, and the distinct labels stop a reflection of one side's MAC
// as the other's. The listener answers an unknown kind or a bad hello by
// closing the connection before it sends anything.
const (
	magic        = "STSH"
	version      = 1
	nonceLen     = 32
	macLen       = sha256.Size
	helloLen     = len(magic) + 2 + nonceLen
	challengeLen = nonceLen + macLen
	okByte       = 0x01

	keyLabel      = "stash transport v1"
	listenerLabel = "stash mux listener"
	dialerLabel   = "stash mux dialer"
)

// deriveKey derives the handshake key from the cluster secret.
func deriveKey(secret []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, nil, keyLabel, 32)
}

// hello is the dialer's opening message.
type hello struct {
	kind  Kind
	nonce [nonceLen]byte
}

func (h *hello) encode() []byte {
	b := make([]byte, 0, helloLen)
	b = append(b, magic...)
	b = append(b, version, byte(h.kind))
	return append(b, h.nonce[:]...)
}

// parseHello decodes a hello. It rejects anything but exactly helloLen
// bytes with the right magic and version; the kind is not checked here.
func parseHello(b []byte) (hello, error) {
	var h hello
	if len(b) != helloLen {
		return h, fmt.Errorf("%w: hello of %d bytes", ErrBadHeader, len(b))
	}
	if string(b[:len(magic)]) != magic {
		return h, fmt.Errorf("%w: bad magic %q", ErrBadHeader, b[:len(magic)])
	}
	if v := b[len(magic)]; v != version {
		return h, fmt.Errorf("%w: version %d", ErrBadHeader, v)
	}
	h.kind = Kind(b[len(magic)+1])
	copy(h.nonce[:], b[len(magic)+2:])
	return h, nil
}

func mac(key []byte, label string, hello []byte, nonce []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(hello)
	m.Write(nonce)
	return m.Sum(nil)
}

// dialHandshake runs the dialer's side over rw. Deadlines are the
// caller's business.
func dialHandshake(rw io.ReadWriter, key []byte, kind Kind) error {
	h := hello{kind: kind}
	if _, err := rand.Read(h.nonce[:]); err != nil {
		return err
	}
	hb := h.encode()
	if _, err := rw.Write(hb); err != nil {
		return fmt.Errorf("transport: send hello: %w", err)
	}
	var ch [challengeLen]byte
	if _, err := io.ReadFull(rw, ch[:]); err != nil {
		return fmt.Errorf("%w: no challenge (unknown kind, or not a Stash cluster port): %w", ErrRejected, err)
	}
	nonceL, macL := ch[:nonceLen], ch[nonceLen:]
	if !hmac.Equal(macL, mac(key, listenerLabel, hb, nonceL)) {
		return fmt.Errorf("%w: the listener does not know the cluster secret", ErrAuth)
	}
	if _, err := rw.Write(mac(key, dialerLabel, hb, nonceL)); err != nil {
		return fmt.Errorf("transport: send proof: %w", err)
	}
	var ok [1]byte
	if _, err := io.ReadFull(rw, ok[:]); err != nil || ok[0] != okByte {
		return fmt.Errorf("%w: listener refused the stream", ErrRejected)
	}
	return nil
}

// acceptHandshake runs the listener's side over rw and returns the stream
// kind. known reports whether a kind is served; an unknown kind is refused
// before anything is sent. Deadlines are the caller's business.
func acceptHandshake(rw io.ReadWriter, key []byte, known func(Kind) bool) (Kind, error) {
	var hb [helloLen]byte
	if _, err := io.ReadFull(rw, hb[:]); err != nil {
		// A short read is garbage too, unless it is a timeout, which the
		// caller tells apart by the error.
		return 0, fmt.Errorf("%w: %w", ErrBadHeader, err)
	}
	h, err := parseHello(hb[:])
	if err != nil {
		return 0, err
	}
	if !known(h.kind) {
		return h.kind, fmt.Errorf("%w: %q", ErrUnknownKind, h.kind)
	}
	var ch [challengeLen]byte
	if _, err := rand.Read(ch[:nonceLen]); err != nil {
		return h.kind, err
	}
	copy(ch[nonceLen:], mac(key, listenerLabel, hb[:], ch[:nonceLen]))
	if _, err := rw.Write(ch[:]); err != nil {
		return h.kind, fmt.Errorf("transport: send challenge: %w", err)
	}
	var proof [macLen]byte
	if _, err := io.ReadFull(rw, proof[:]); err != nil {
		return h.kind, fmt.Errorf("%w: no proof: %w", ErrAuth, err)
	}
	if !hmac.Equal(proof[:], mac(key, dialerLabel, hb[:], ch[:nonceLen])) {
		return h.kind, fmt.Errorf("%w: the dialer does not know the cluster secret", ErrAuth)
	}
	if _, err := rw.Write([]byte{okByte}); err != nil {
		return h.kind, fmt.Errorf("transport: send ok: %w", err)
	}
	return h.kind, nil
}

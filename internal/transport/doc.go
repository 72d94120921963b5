// Package transport carries several kinds of authenticated node-to-node
// streams over one TCP port, the cluster port.
//
// # Usage
//
// Each node opens one Mux on its cluster listener with the kinds it
// serves, and hands each kind's net.Listener to the protocol that owns it:
//
//	ln, _ := net.Listen("tcp", ":7380")
//	cfg := transport.DefaultConfig()
//	cfg.Secret = secret
//	cfg.Kinds = []transport.Kind{transport.KindRaft, transport.KindData}
//	mux, err := transport.Open(ln, cfg)
//	raftLn := mux.Listener(transport.KindRaft) // Accept, Close, Addr
//	conn, err := mux.Dial(ctx, "10.0.0.2:7380", transport.KindData)
//
// # Handshake
//
// The dialer opens with a 38-byte hello: the magic "STSH", the handshake
// version (1), the stream kind and a 32-byte random nonce. The listener
// answers with its own nonce and an HMAC-SHA256 over the hello and its
// nonce; the dialer checks it and answers with its own HMAC over the same
// bytes under another label; the listener checks that (constant-time) and
// sends one byte, 0x01. The HMAC key is derived from the cluster secret
// with HKDF-SHA256 and the label "stash transport v1", so the secret never
// crosses the wire and the key differs from every other use of the secret.
// Each side thereby proves it knows the secret, over nonces of both sides,
// so a recorded handshake cannot be replayed. After the handshake the
// stream is the kind's protocol, unencrypted.
//
// Garbage, another protocol, a wrong secret, an unknown kind, a handshake
// slower than HandshakeTimeout or more than MaxPending handshakes at once:
// the Mux closes that connection only, logs it (debug for garbage and
// timeouts, warn for authentication failures and unknown kinds) and counts
// it in Stats. The node stays up.
//
// # Concurrency
//
// Mux, Dialer and the kind listeners are safe for concurrent use. The Mux
// runs one accept goroutine plus one goroutine per handshake in progress;
// Close stops and waits for all of them. Authenticated streams wait for
// Accept in a per-kind backlog of Config.Backlog; a kind whose listener is
// not accepting refuses new streams once it is full rather than blocking
// the others.
//
// # Caveats
//
//   - Streams are authenticated, not encrypted or integrity-protected
//     after the handshake: an attacker on the path can read them and, with
//     effort, hijack a TCP stream. Optional TLS is planned for the cluster
//     port.
//   - Closing a kind's listener does not close the streams it already
//     returned; the acceptor owns those.
package transport

package transport

import "errors"

// Errors returned by Open, Mux.Dial and the handshake. They are wrapped
// with context; test for them with errors.Is.
var (
	// ErrClosed: the Mux or the kind's listener is closed.
	ErrClosed = errors.New("transport: closed")
	// ErrInvalidConfig wraps every problem Config.Validate reports.
	ErrInvalidConfig = errors.New("transport: invalid config")
	// ErrBadHeader: the peer did not open with a valid hello (garbage,
	// another protocol, another handshake version).
	ErrBadHeader = errors.New("transport: bad stream header")
	// ErrAuth: the peer failed the challenge: it does not know the
	// cluster secret.
	ErrAuth = errors.New("transport: authentication failed")
	// ErrUnknownKind: the dialer asked for a stream kind the listener does
	// not serve.
	ErrUnknownKind = errors.New("transport: unknown stream kind")
	// ErrRejected: the listener closed the stream during the handshake
	// (unknown kind, overload, wrong secret, not a Stash port).
	ErrRejected = errors.New("transport: stream rejected")
)

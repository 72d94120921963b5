package cluster

import (
	"errors"

	"github.com/stashcluster/stash/internal/transport"
)

// Errors returned by Node. They are wrapped with context; test for them
// with errors.Is.
var (
	// ErrClosed: the node was closed (Close or Leave); every method but
	// Table, Changes, Self and Close returns it afterwards.
	ErrClosed = errors.New("cluster: node closed")
	// ErrInvalidConfig wraps every problem Config.Validate reports.
	ErrInvalidConfig = errors.New("cluster: invalid config")
	// ErrUnknownMember: no live or rostered member has that name.
	ErrUnknownMember = errors.New("cluster: unknown member")
	// ErrBadState: SetState was given something other than StateActive
	// or StateDraining.
	ErrBadState = errors.New("cluster: bad member state")
	// ErrAuth: a node-to-node stream failed authentication: the peer does
	// not know the cluster secret (DialData).
	ErrAuth = transport.ErrAuth
)

// errStale is the FSM's answer to a command computed from a state that
// is no longer current (another leader committed in between). The leader
// recomputes and tries again; it never leaves this package.
var errStale = errors.New("cluster: stale control-plane command")

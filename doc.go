// Package stash is a store for short-lived session state ("stashes"): the
// state a server process holds for one user's live connection, kept so it
// survives the connection dropping, the process dying and the servers
// being redeployed.
//
// # Usage
//
// A Go program embeds a node with Open and stores state with Put, getting
// back a tag: a short, URL-safe, signed string naming the stash. It hands
// the tag to the browser (a cookie, a LiveView session param) and, when
// the user reconnects, gets the state back with Get:
//
//	cfg := stash.DefaultConfig()
//	cfg.DataDir = "/var/lib/myapp/stash"
//	node, err := stash.Open(ctx, cfg)
//	...
//	defer node.Shutdown(context.Background())
//	t, err := node.Put(ctx, state, 30*time.Minute)
//	...
//	state, err = node.Get(ctx, t) // stash.ErrNotFound once expired
//
// The same node also serves the Redis protocol (Config.Port) and an HTTP
// admin port (Config.AdminPort: /healthz, /readyz, /metrics, /v1/node),
// so other processes can use it with any Redis client.
//
// # Concurrency
//
// A Node's methods are safe for concurrent use. Writes to one key are
// applied in one order; a write returns once it is as durable as
// Config.Fsync asks ("always": on disk; "batch": on disk within 10 ms).
//
// # Caveats
//
// Tags are signed with Config.Secret; without one, a node keeps a random
// secret in its data directory, so tags minted by one node do not verify
// on another. Clustering (Join, Replicas, Zone) is not available yet:
// a Config with Join fails validation. Values are bounded by
// Config.MaxValueBytes (1 MiB by default).
package stash

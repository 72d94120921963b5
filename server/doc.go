// Package server holds a node's front ends: RESP, the Redis protocol that
// clients speak (redis-cli, go-redis, any Redis library), and Admin, the
// HTTP port for operators (/healthz, /readyz, /metrics, /v1/node).
//
// # Usage
//
// NewRESP takes a KV (storage.Store satisfies it; the cluster layer will
// wrap it to route and replicate) and a stashops.Ops for the STASH.*
// commands; Serve runs it on a listener. NewAdmin takes callbacks for
// readiness and node info, and the Metrics that RESP updates.
//
// # Concurrency
//
// Each client connection has one goroutine, which reads a request, runs
// it, and flushes replies only when no further pipelined request is
// already buffered (so a pipeline of N requests costs one write). KV
// methods are called from these goroutines concurrently. Shutdown stops
// accepting, lets every connection finish the command it is running,
// flushes its replies, and closes it; Close cuts connections at once.
//
// # Limits and bad input
//
// A value over Config.MaxValueBytes gets "-ERR value of N bytes exceeds
// max-value-bytes (L)"; a request over Config.MaxRequestBytes is read off
// the socket without being kept and answered with an error — in both
// cases the connection stays usable and nothing is written. Bytes that
// are not RESP get "-ERR Protocol error: …" and that connection (only)
// is closed. Past Config.MaxClients a new connection is told "-ERR max
// number of clients reached" and closed.
//
// # Caveats
//
// One database (SELECT 0). MSET and multi-key DEL are applied key by key,
// not atomically. SCAN's cursor is a slot number: a scan visits the 16384
// slots in order, whole slots at a time, so COUNT is a lower bound per
// call and every key present for the whole scan is returned exactly once.
// Hashes are stored as one encoded value, so HSET and HDEL cost O(size of
// the hash), which max-value-bytes bounds.
package server

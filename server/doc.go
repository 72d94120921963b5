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
// # Cluster
//
// With Config.Router set the node is one of a cluster of 16384 slots, as
// in Redis Cluster. Before a keyed command runs, the slot of its keys is
// computed (the key positions of COMMAND INFO; for STASH.SET/GET/TOUCH/DEL
// the slot of the tag's stash key; a tag that does not decode is answered
// -BADTAG here); keys in different slots get -CROSSSLOT. Router.Route then
// decides: run it here, reply its error (TRYAGAIN, CLUSTERDOWN…), or send
// it to the node serving the slot. A connection that said it understands
// clusters (READONLY, READWRITE, CLIENT CAPA redirect) — every connection
// with Config.ClusterRedirects — gets "-MOVED slot host:port"; any other
// is served by forwarding the command (Router.Forward) and relaying the
// reply byte for byte. A forward that fails answers -NOQUORUM for a write
// (it may or may not have happened) and -TRYAGAIN for a read. The node
// at the other end runs the command with RESP.Exec, which never forwards
// again.
//
// STASH.PUT mints IDs in slots this node serves, so the write is local;
// a node that serves none forwards the PUT to a random slot's primary.
// SCAN, DBSIZE and INFO's keyspace cover the slots this node is primary
// for (it also holds replicas of others). FLUSHALL and FLUSHDB are
// refused: one node emptying itself would make its replicas diverge.
// CLUSTER INFO, MYID, SLOTS, SHARDS, NODES, COUNTKEYSINSLOT and
// GETKEYSINSLOT describe Router.View in Redis's formats; CLUSTER NODES
// lists every node as a master with the slots it is primary for, since a
// node here is primary for some slots and replica for others, which
// Redis's format cannot say.
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

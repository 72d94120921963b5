// Package replication is Stash's data plane in a cluster: it runs each
// slot's writes on the slot's primary, copies them to the backups, and
// decides which slots this node serves.
//
// # Write path
//
// A node that receives a command for a slot it is not primary for
// forwards it over the cluster port (Forward, a wire.KindForward frame on
// a pooled, pipelined data stream); the primary runs it through its RESP
// engine (the exec function given to Start) and sends the RESP reply
// back, so every command behaves exactly as on a single node.
//
// On the primary, the store wrapper (KV) applies a change locally through
// storage.Store.Change, which versions it {table epoch, slot sequence},
// then sends the new state of the key (a value or a tombstone) to every
// backup of the slot in parallel and returns once W copies hold it (self
// included). W is Config.WriteQuorum, by default a majority of the slot's
// replicas. Fewer than W → ErrNoQuorum: the change is on the primary and
// maybe on some backups, so the client must treat the write as "may or may
// not have happened" (RESP: -NOQUORUM). The primary keeps offering such a
// change to the backups in the background.
//
// A write forwarded by a node that is itself a backup of the slot sends
// that node no separate copy: the primary puts the changed entries in its
// reply, leaving out values the forwarded command carried, counts the
// forwarding node towards W, and holds the keys' reads until it confirms
// (carry.go). The forwarding node applies them, fenced like any copy,
// before it answers its client, so an answered write is still on W
// nodes; one message and one round trip fewer per forwarded write.
//
// Backups apply newer-wins (storage.Store.Apply), so duplicated, delayed
// or reordered copies converge, and a tombstone keeps a deleted key from
// coming back. A backup refuses a copy from a node that its own, newer
// table no longer names as the slot's primary (epoch fencing).
//
// # Reads
//
// Reads run on the primary. A read of a key whose latest change has not
// yet reached W copies waits for it, so a value is never returned before
// it is acknowledged-durable on W nodes.
//
// A primary that has no record at all of a stash (no value, no
// tombstone) in the two minutes after a table change asks the node the
// stash's tag names (KV.Recover, a wire.KindLookup frame) and adopts a
// live copy through the write path before answering; a copy can be only
// there when it was acknowledged without a quorum (Async, W = 1) or its
// quorum was lost.
//
// # Taking over a slot
//
// A node serves a slot as primary only when the committed table says so,
// it is in contact with the raft leader (cluster lease), and the slot is
// ready. A slot becomes ready LeaseTimeout after the node first saw itself
// as its primary — the old primary stops acknowledging once its lease runs
// out — and after reconciliation: the node compares per-slot digests with
// enough of the slot's other replicas (R−W of them, so together with
// itself they meet every set of W nodes that may hold an acknowledged
// write), fetches the slots that differ and applies them newer-wins.
// Until then writes on the slot answer TRYAGAIN (retryable; nothing was
// done). Reads go to the slot's primary in the previous table (Route's
// Fallback, Msg.Fallback), which runs them on its own copy while that
// copy is the slot's whole state: it still serves the slot, or it handed
// the slot over in exactly that table and has applied no copy from the
// new primary since (canServePrev). Otherwise reads answer TRYAGAIN too.
//
// # Backups
//
// A backup that may have missed copies (it restarted, was cut off, lost
// its stream, or was just given the slot) compares per-slot digests with
// the primary and fetches what differs before it counts as in sync
// (catchup.go); every copy is compared again every AntiEntropy. A node
// that lost its data is not counted as a replica a takeover must hear
// from until it has resynced. Reads never go to a backup unless the
// connection asked for READONLY.
package replication

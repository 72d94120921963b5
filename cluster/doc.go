// Package cluster is Stash's control plane: membership by gossip
// (hashicorp/memberlist), and a raft group (hashicorp/raft, log in bbolt
// through raft-boltdb) that holds the member roster and the slot table.
// It is the only package that imports memberlist and raft; none of their
// types appear in its API.
//
// # Usage
//
//	cfg := cluster.DefaultConfig()
//	cfg.Name = "node-1"
//	cfg.Secret = secret // ≥ 16 bytes, the same on every node
//	cfg.BindAddr = "10.0.0.1"
//	cfg.Join = []string{"stash-headless.default.svc:7946"}
//	cfg.BootstrapExpect = 3
//	cfg.DataDir = "/var/lib/stash"
//	n, err := cluster.Open(ctx, cfg)
//	...
//	for {
//		ch := n.Changes()
//		t := n.Table() // *ring.Table: slot → replicas, primary first
//		...
//		<-ch
//	}
//	...
//	n.SetState(ctx, cluster.StateDraining) // hand primaries away
//	n.Leave(ctx)                           // then leave for good
//
// The layers above see the cluster only through Node: Table and Changes
// for the slot table, Members, Self, Leader and Status for membership,
// SetState for draining, and DataListener and DialData for authenticated
// node-to-node streams on the cluster port (kind 'D' of
// internal/transport; raft uses kind 'R' on the same port).
//
// # Forming a cluster
//
// Nodes find each other through gossip (Config.Join, host:port or DNS
// names, re-resolved on every attempt; the list may name the node
// itself). Gossip is encrypted with an AES-256 key derived from the
// cluster secret, and cluster-port streams are authenticated with another
// key derived from it, so a node without the secret can neither join nor
// talk to raft.
//
// A new cluster forms without a manual step. Every node started with
// BootstrapExpect N ≥ 2 advertises N and whether it has raft state. Once a
// node sees at least N live nodes that have no raft state and the same N,
// sees no live node that is already in a cluster, is itself the lowest
// name among the N lowest such nodes, and that set has held for a settle
// time (2 s; 300 ms with ProfileLocal), it bootstraps raft with exactly
// those N as voters. The others never bootstrap: they are in its
// configuration, and its leader contacts them. Nodes beyond the N, and
// nodes started later, see a node that is in a cluster and wait to be
// added: the leader adds every live gossip member it does not have. A
// node that has raft state (a restart) never bootstraps again; raft itself
// also refuses. BootstrapExpect 0 or 1 with no Join is a cluster of one at
// once, as is 1 with a Join.
//
// Raft dials a server at the cluster address its gossip meta advertises
// now, falling back to the one in the raft configuration, so a cluster
// whose nodes all restart at new addresses (Kubernetes pods) still elects
// a leader, which then records the new addresses.
//
// The first leader mints a cluster ID and commits it; nodes gossip it,
// and gossip refuses peers that carry another cluster's ID, so two
// clusters that share a secret still never merge.
//
// # Roster and table
//
// The leader turns gossip into a committed roster (name, zone, addresses,
// state, down-since) and slot table (ring.Build with the table in force as
// prev, epoch + 1), debounced by Config.Debounce, and commits both in one
// raft entry that every node applies; a command computed from an outdated
// state is refused by the state machine, and a table's epoch must grow.
// The rules:
//
//   - A new live member joins the roster and the table (state joining; it
//     turns itself active once it sees itself in a table).
//   - A failed member (memberlist declares it dead) stays in the roster
//     with its down-since time and keeps its replica places, but at once
//     stops being primary: in each of its slots the next replica in the
//     list takes over. After DownGrace it leaves the roster and the table.
//     If it comes back before, it gets primaries again.
//   - A draining member likewise keeps its places but is primary nowhere.
//   - A member that calls Leave is dropped at once (no DownGrace).
//
// Raft has at most MaxVoters voters (default 5), the largest odd number
// not above the live members; the rest are non-voters. Live non-voters
// are promoted preferring zones with fewer voters; a voter is replaced
// only when it is dropped from the roster after DownGrace (or leaves).
//
// # Concurrency
//
// All Node methods are safe for concurrent use. Table is a lock-free
// atomic load of an immutable table. Changes returns a channel closed on
// the next table (any number of waiters; nothing blocks the control
// plane). The node runs two goroutines of its own (the control loop and
// the join loop) plus memberlist's and raft's; Close stops them all and
// waits. Raft applies entries on its own goroutine, which only swaps the
// table in and closes the Changes channel. Members, Status and Self
// return values the caller owns.
//
// # Caveats
//
//   - A table only says who should be primary. Two nodes may briefly
//     both believe they are primary of a slot (an old leader's table still
//     applied on a partitioned or stopped node), so the data plane must
//     not rely on the table alone: it acts on it only while InContact (a
//     follower heard from the leader, or the leader had a quorum confirm
//     it, within LeaseTimeout; see lease.go) and fences copies by epoch.
//   - Failover promotes the next replica in the slot's list, whether or
//     not it is in sync: in-sync tracking belongs to replication.
//   - While a node is down, every later table demotes it again after
//     ring.Build, which may shift a few extra primaries among live nodes.
//   - DownGrace is measured by the leader's clock against a down-since
//     time recorded by whichever leader noticed the failure; clock skew
//     between leaders shifts it.
//   - With more than BootstrapExpect fresh nodes whose gossip views
//     differ for longer than the settle time (a partition during the very
//     first start), two sets could each bootstrap. They then never merge
//     (distinct cluster IDs); restart one side with empty data.
//   - memberlist cannot tell a departed node from a failed one; Leave
//     marks the node as leaving in its gossip meta first, so a node that
//     only shuts down its process looks failed and waits out DownGrace.
//   - Raft entries carry whole tables (≈ 48 KiB at 3 replicas); the log
//     is snapshotted every 64 entries.
//   - A restarted node's Table is at first the one in its last raft
//     snapshot; later entries are applied once a leader is known.
//   - With DataDir "" a restarted node has lost its raft state: it comes
//     back as a new member, and as a voter it may have voted before.
//     Tests only.
package cluster

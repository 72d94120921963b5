// Package ring maps keys to slots and slots to nodes.
//
// It is pure: no I/O, no goroutines, no locks, no package-level mutable
// state. It imports nothing from Stash and nothing outside the standard
// library.
//
// # Usage
//
// Keys map to one of [Slots] (16384) slots exactly as Redis Cluster maps
// them, so cluster-aware Redis clients route by themselves:
//
//	s := ring.Slot("{user1000}.following") // == ring.Slot("user1000")
//
// The control plane turns the roster into a [Table] with [Build], passing
// the table currently in force so that little moves, and commits the
// table's MarshalBinary encoding through raft:
//
//	next, err := ring.Build(members, 3, prev.Epoch()+1, prev)
//	enc, err := next.MarshalBinary()
//
// Every node decodes it and swaps it in whole:
//
//	var t ring.Table
//	err := t.UnmarshalBinary(enc)
//	current.Store(&t) // an atomic.Pointer[ring.Table]
//	owner := current.Load().Primary(ring.Slot(key))
//
// # Slots
//
// [Slot] is CRC16/XMODEM (polynomial 0x1021, the CRC of Redis Cluster's
// crc16.c) of the key, mod 16384. If the key contains a '{' and, after the
// first '{', a '}' with at least one byte between them, only the bytes
// between that first '{' and that first following '}' are hashed: the hash
// tag. "foo{}{bar}" hashes the whole key, "foo{{bar}}zap" hashes "{bar".
// [SlotBytes] is the same for a []byte and does not allocate.
//
// # Tables
//
// A [Table] gives each slot an ordered list of min(replicas, members)
// distinct nodes, primary first, and carries the epoch it was built with.
// Build guarantees, for any roster of up to [MaxMembers] nodes:
//
//   - Determinism: the table depends only on the roster as a set (not on
//     its order), the replica count, the epoch and prev.
//   - Zones: each slot's replicas are spread over zones as evenly as the
//     zone sizes allow: in distinct zones when there are at least as many
//     zones as replicas, otherwise no zone holds two more replicas of a
//     slot than another zone that still has a node to spare. This is a
//     hard rule; balance yields to it.
//   - Primary balance: every node is primary for floor(16384/N) or
//     ceil(16384/N) slots (well within ±5 % of the fair share for N up to
//     hundreds), whenever the replica lists allow it, which is always
//     without zones.
//   - Replica balance: without zones (or when every node has its own),
//     every node replicates floor or ceil of 16384·R/N slots. With zones,
//     loads are even within each zone and as even as the zone rule allows
//     across zones (three zones of 5, 4 and 4 nodes with three replicas
//     give the first zone's nodes 4/5 of the load of the others').
//   - Movement: with prev, close to the minimum moves when one of N nodes
//     joins or leaves: about 16384/N primaries and 16384·R/N replica
//     places, so about 16384·R/N slots change replica set.
//
// Measured movement (nodes n000…, R = 3, prev given; the minimum in
// brackets):
//
//	                      primaries moved   slots changed
//	join 8→9              1823 (1820)       5462 (5461)
//	leave 9→8             1838 (1820)       5588 (5461)
//	join 31→32             512 (512)        1536 (1536)
//	leave 32→31            539 (512)        1561 (1536)
//	join 63→64             256 (256)         768 (768)
//	leave 64→63            276 (256)         788 (768)
//	zones 4+4+4, join      1260 (1260)      3276 (3276: all in its zone)
//
// # Algorithm
//
// Nodes are indexed in ID order; every tie is broken by that index. Each
// node has a 64-bit hash ([Builder.Hash]); its rendezvous score for slot s
// is SplitMix64(hash ^ (⌊s/64⌋+1)·φ64): runs of 64 slots score alike, so
// a table built from scratch hands out runs of slots, and CLUSTER SLOTS,
// one range per run with the same replica list, stays small (about 200
// ranges for 3 nodes, 35 KB; scored slot by slot it was 13,500 and 2.4 MB).
// Steps 2–4 keep runs together as tables change: after joins 3→8 and a
// leave, about 400 ranges (moving single slots, it was 8,000).
//
//  1. Seed. With prev, each slot starts from prev's list, in order, less
//     departed nodes, entries past the new replica count, and entries the
//     zone rule no longer admits.
//  2. Fill. Empty places are filled: without prev, by rendezvous (the
//     highest-scoring nodes the zone rule admits, so even a table built
//     from scratch is mostly stable under roster changes); with prev, by
//     the least loaded admissible node (ties to the higher score), which
//     spreads a departed node's places evenly; within a run of slots that
//     kept the same places, the previous slot's choice while its load is
//     within a slack of the least (Slots/(8·N²): large for few nodes, 0
//     from 46 on).
//  3. Balance replicas. While some node carries at least two more places
//     than another to which it can hand a slot (not already a replica,
//     zone rule kept), move one place from the most loaded to the least
//     loaded such node. Each move lowers the sum of squared loads, so this
//     ends; without zones it ends with all loads within one, having moved
//     only surplus places. The moved place is a backup place, unless the
//     receiver holds fewer than its fair share of primary places and the
//     giver more, in which case the primary place moves with the slot.
//     The same move then extends to the neighbouring slots of the run
//     that had the same list, while the giver keeps at least the average
//     load (rounded up) and the receiver gets at most the average
//     (rounded down), so the run moves whole.
//  4. Choose primaries. A slot keeps prev's primary if it is still a
//     replica; otherwise the first entry (fresh) or the replica with the
//     fewest primaries so far (within the slack, the previous slot's, in
//     a run with the same list). Then, while primary counts differ by two or
//     more, shift one primary from a most-loaded node: directly to a
//     co-replica of one of its slots with at least two fewer, or else
//     along the shortest chain of slots found by breadth-first search
//     (a→b when a is primary of a slot b replicates), which leaves the
//     counts between the ends unchanged. Each shift lowers the sum of
//     squared counts, so this ends too.
//  5. Order each slot's list: primary first, backups in their previous
//     order.
//
// Build costs O(16384·R·N) at worst; with N = 64 and R = 3 it takes about
// 30 ms from scratch and 3–4 ms from prev on a modest machine.
//
// # Concurrency
//
// Everything is safe for concurrent use: functions are pure, and a Table
// is never modified after Build or UnmarshalBinary returns it. Slices
// returned by [Table.Replicas] are shared with the table and must not be
// modified; [Table.Members] and [Table.PrimaryCounts] return new values.
//
// # Caveats
//
//   - Minimal movement needs prev. Without it the table is rendezvous plus
//     balancing: deterministic and mostly stable, but balancing noise adds
//     moves that grow with N. Between fresh tables for N and N+1 nodes
//     (R = 3), primaries moved are 1.04× the minimum at N = 8, 1.4× at 32
//     and 2.4× at 64.
//   - Build does not check that epoch exceeds prev's; the caller owns the
//     epoch sequence.
//   - Zones are a hard rule. A small zone whose nodes must appear in many
//     slots (a zone of one node among three zones with three replicas)
//     carries a correspondingly large replica load. A node with an empty
//     zone is a zone of its own.
//   - UnmarshalBinary checks structure (member order, indices, distinct
//     replicas) but cannot check the zone rule or balance: it does not
//     know the zones.
//   - The encoding holds about 16384·R bytes for up to 128 members,
//     twice that up to [MaxMembers]; it has no checksum of its own.
package ring

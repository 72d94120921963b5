// Package stashtest runs Stash clusters inside one test process, over an
// in-memory network that can partition, drop and delay, so that failover
// and fencing can be tested quickly and without root or real sockets
// between members.
//
// # Usage
//
// StartCluster starts n members and waits until they are one ready
// cluster; the test then drives them through their stash.Node and the
// network's fault controls:
//
//	func TestSurvivesPartition(t *testing.T) {
//		c := stashtest.StartCluster(t, 3, stashtest.Options{})
//		ctx := context.Background()
//		n1, n2 := c.Members[0], c.Members[1]
//		tag, err := n1.Node().Put(ctx, []byte("state"), time.Hour)
//		...
//		c.Net.Partition([]string{"n1"}) // {n1} | {n2, n3}
//		// n1 now answers stash.ErrNoQuorum or stash.ErrUnavailable for
//		// its slots; n2 and n3 take them over within seconds.
//		...
//		c.Net.Heal()
//		c.WaitConverged(30 * time.Second)
//		got, err := n2.Node().Get(ctx, tag)
//		...
//		n1.Kill()    // a crash: no drain, no leave
//		n1.Restart() // same name, address and data directory
//	}
//
// Members are called "n1", "n2", … and run on hosts of those names with
// the addresses 10.0.0.1, 10.0.0.2, …; each uses GossipPort and
// ClusterPort on its own host. Their client ports are on the OS loopback
// interface (stash.Node.Addr), so Redis clients can reach them too.
//
// A Network can also be used without StartCluster: give each member its
// own Host as stash.Config.Network (or cluster.Config.Network), with
// Config.Advertise set to the host's IP and Join listing the others'
// gossip addresses on the network.
//
// # Faults
//
// Partition(groups...) splits the hosts into groups that cannot reach
// each other; Block(from, to) cuts one direction; Heal undoes both.
// SetDrop drops packets, and resets streams, with a probability; SetDelay
// adds latency to every hop. A cut stream behaves like TCP through a
// black hole: its bytes wait, readers wait for their deadlines, and
// everything flows again in order on Heal; new streams wait in Dial. A
// cut therefore looks to the members like a real partition, not like a
// crash: nothing tells them the other side is gone but silence.
//
// # Concurrency
//
// Network, Host, Cluster and Member are safe for concurrent use. Faults
// take effect at once for every packet and for every stream write and
// read not yet done.
//
// # Caveats
//
//   - Use timeouts: a call forwarded to a primary behind a partition gets
//     no answer, so give every operation a context with a deadline.
//   - A member cut off from its peers takes seconds to Kill (raft waits
//     out its RPCs to them); the cluster's cleanup heals the network
//     first.
//   - Drops are seeded (Network.Seed), but which message a drop hits
//     depends on goroutine scheduling: a failing run may not repeat.
//   - Timings follow the "local" cluster profile (failure detection in
//     about a second); a heavily loaded machine can make members suspect
//     each other without any fault injected. Wait on conditions
//     (WaitConverged, polling) rather than sleeping.
package stashtest

package server

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/stashcluster/stash/ring"
)

// cmdReadOnly is READONLY and READWRITE. Either makes the connection
// cluster-aware (it gets -MOVED rather than forwarded commands); READONLY
// also lets its reads go to replicas.
func cmdReadOnly(c *client, args [][]byte) {
	if c.srv.cfg.Router == nil {
		c.err(errNoCluster)
		return
	}
	c.readonly = eq(args[0], "readonly")
	c.redirect = true
	c.wr.OK()
}

// cmdCluster answers CLUSTER. Without a Router only KEYSLOT works and the
// rest answer as a Redis server without cluster support does.
func cmdCluster(c *client, args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	if sub == "keyslot" {
		if len(args) != 3 {
			c.arityErr("cluster|keyslot")
			return
		}
		c.wr.Int(int64(ring.SlotBytes(args[2])))
		return
	}
	r := c.srv.cfg.Router
	if r == nil {
		c.err(errNoCluster)
		return
	}
	var n int
	switch sub {
	case "info", "myid", "slots", "shards", "nodes":
		n = 2
	case "countkeysinslot":
		n = 3
	case "getkeysinslot":
		n = 4
	default:
		c.err("ERR unknown subcommand '" + trunc(args[1], 64) + "'. Try CLUSTER HELP.")
		return
	}
	if len(args) != n {
		c.arityErr("cluster|" + sub)
		return
	}
	switch sub {
	case "countkeysinslot":
		slot, ok := parseSlot(args[2])
		if !ok {
			c.err("ERR Invalid slot")
			return
		}
		c.wr.Int(int64(c.srv.kv.SlotCount(slot)))
		return
	case "getkeysinslot":
		c.getKeysInSlot(args)
		return
	}
	v := checkView(r.View())
	switch sub {
	case "info":
		c.wr.Verbatim(clusterInfo(v))
	case "myid":
		c.wr.BulkString(v.MyID)
	case "slots":
		c.clusterSlots(v)
	case "shards":
		c.clusterShards(v)
	case "nodes":
		c.wr.Verbatim(clusterNodes(v))
	}
}

func parseSlot(b []byte) (uint16, bool) {
	n, ok := parseInt(b)
	if !ok || n < 0 || n >= ring.Slots {
		return 0, false
	}
	return uint16(n), true
}

// getKeysInSlot is CLUSTER GETKEYSINSLOT slot count: up to count keys of
// slot held by this node.
func (c *client) getKeysInSlot(args [][]byte) {
	slot, ok := parseSlot(args[2])
	if !ok {
		c.err("ERR Invalid or out of range slot")
		return
	}
	limit, ok := parseInt(args[3])
	if !ok || limit < 0 {
		c.err("ERR Invalid slot or number of keys")
		return
	}
	var keys []string
	if limit > 0 && c.srv.kv.SlotCount(slot) > 0 {
		// Scan passes whole slots: with count 1 it stops after this one
		// (or, if every key in it has expired, after the next live key).
		c.srv.kv.Scan(uint64(slot), 1, func(k string) {
			if int64(len(keys)) < limit && ring.Slot(k) == slot {
				keys = append(keys, k)
			}
		})
	}
	c.wr.Array(len(keys))
	for _, k := range keys {
		c.wr.BulkString(k)
	}
}

// checkView drops node indexes that point outside v.Nodes, so a bad view
// cannot crash a connection.
func checkView(v ClusterView) ClusterView {
	bad := false
	for _, r := range v.Ranges {
		for _, i := range r.Nodes {
			if i < 0 || i >= len(v.Nodes) {
				bad = true
			}
		}
	}
	if !bad {
		return v
	}
	rs := make([]SlotRange, len(v.Ranges))
	for k, r := range v.Ranges {
		rs[k] = SlotRange{Start: r.Start, End: r.End}
		for _, i := range r.Nodes {
			if i >= 0 && i < len(v.Nodes) {
				rs[k].Nodes = append(rs[k].Nodes, i)
			}
		}
	}
	v.Ranges = rs
	return v
}

// clusterInfo is CLUSTER INFO's text, with Redis's field names.
func clusterInfo(v ClusterView) string {
	var assigned, ok, fail int
	primaries := map[int]bool{}
	for _, r := range v.Ranges {
		if len(r.Nodes) == 0 || r.End < r.Start {
			continue
		}
		n := int(r.End-r.Start) + 1
		assigned += n
		primaries[r.Nodes[0]] = true
		if v.Nodes[r.Nodes[0]].Alive {
			ok += n
		} else {
			fail += n
		}
	}
	state := "fail"
	if v.OK {
		state = "ok"
	}
	var b strings.Builder
	for _, kv := range []struct {
		k string
		v any
	}{
		{"cluster_enabled", 1},
		{"cluster_state", state},
		{"cluster_slots_assigned", assigned},
		{"cluster_slots_ok", ok},
		{"cluster_slots_pfail", 0},
		{"cluster_slots_fail", fail},
		{"cluster_known_nodes", len(v.Nodes)},
		{"cluster_size", len(primaries)},
		{"cluster_current_epoch", v.Epoch},
		{"cluster_my_epoch", v.Epoch},
	} {
		fmt.Fprintf(&b, "%s:%v\r\n", kv.k, kv.v)
	}
	return b.String()
}

// clusterSlots writes CLUSTER SLOTS: per range with replicas, [start, end,
// [host, port, id] of the primary, then of each live replica].
func (c *client) clusterSlots(v ClusterView) {
	type entry struct {
		r     SlotRange
		nodes []int
	}
	var es []entry
	for _, r := range v.Ranges {
		if len(r.Nodes) == 0 {
			continue
		}
		nodes := []int{r.Nodes[0]}
		for _, i := range r.Nodes[1:] {
			if v.Nodes[i].Alive {
				nodes = append(nodes, i)
			}
		}
		es = append(es, entry{r, nodes})
	}
	w := c.wr
	w.Array(len(es))
	for _, e := range es {
		w.Array(2 + len(e.nodes))
		w.Int(int64(e.r.Start))
		w.Int(int64(e.r.End))
		for _, i := range e.nodes {
			n := v.Nodes[i]
			w.Array(3)
			w.BulkString(n.Host)
			w.Int(int64(n.Port))
			w.BulkString(n.ID)
		}
	}
}

// clusterShards writes CLUSTER SHARDS in Redis 7's shape. A shard is a
// replica list: the ranges that share it, and its nodes (the primary
// first). A node in no replica list is a shard of its own without slots.
func (c *client) clusterShards(v ClusterView) {
	type shard struct {
		slots []uint16 // start, end pairs
		nodes []int
	}
	var shards []*shard
	byList := map[string]*shard{}
	seen := make([]bool, len(v.Nodes))
	for _, r := range v.Ranges {
		if len(r.Nodes) == 0 {
			continue
		}
		key := fmt.Sprint(r.Nodes)
		sh := byList[key]
		if sh == nil {
			sh = &shard{nodes: r.Nodes}
			byList[key] = sh
			shards = append(shards, sh)
		}
		sh.slots = append(sh.slots, r.Start, r.End)
		for _, i := range r.Nodes {
			seen[i] = true
		}
	}
	for i := range v.Nodes {
		if !seen[i] {
			shards = append(shards, &shard{nodes: []int{i}})
		}
	}
	w := c.wr
	w.Array(len(shards))
	for _, sh := range shards {
		w.Map(2)
		w.BulkString("slots")
		w.Array(len(sh.slots))
		for _, s := range sh.slots {
			w.Int(int64(s))
		}
		w.BulkString("nodes")
		w.Array(len(sh.nodes))
		for k, i := range sh.nodes {
			n := v.Nodes[i]
			w.Map(7)
			w.BulkString("id")
			w.BulkString(n.ID)
			w.BulkString("port")
			w.Int(int64(n.Port))
			w.BulkString("ip")
			w.BulkString(n.Host)
			w.BulkString("endpoint")
			w.BulkString(n.Host)
			w.BulkString("role")
			if k == 0 {
				w.BulkString("master")
			} else {
				w.BulkString("replica")
			}
			w.BulkString("replication-offset")
			w.Int(0)
			w.BulkString("health")
			if n.Alive {
				w.BulkString("online")
			} else {
				w.BulkString("fail")
			}
		}
	}
}

// clusterNodes is CLUSTER NODES' text. Redis's format gives a node one
// role; here a node is primary for some ranges and replica for others, so
// every node is listed as a master with the ranges it is primary for
// (adjacent ranges merged).
func clusterNodes(v ClusterView) string {
	owned := make([][][2]int, len(v.Nodes))
	for _, r := range v.Ranges {
		if len(r.Nodes) == 0 {
			continue
		}
		p := r.Nodes[0]
		rs := owned[p]
		if k := len(rs) - 1; k >= 0 && rs[k][1]+1 == int(r.Start) {
			rs[k][1] = int(r.End)
		} else {
			rs = append(rs, [2]int{int(r.Start), int(r.End)})
		}
		owned[p] = rs
	}
	epoch := strconv.FormatUint(v.Epoch, 10)
	var b strings.Builder
	for i, n := range v.Nodes {
		flags := "master"
		if n.Self {
			flags = "myself,master"
		}
		link := "connected"
		if !n.Alive {
			flags += ",fail"
			if !n.Self {
				link = "disconnected"
			}
		}
		fmt.Fprintf(&b, "%s %s:%d@%d %s - 0 0 %s %s", n.ID, n.Host, n.Port, n.ClusterPort, flags, epoch, link)
		for _, r := range owned[i] {
			if r[0] == r[1] {
				fmt.Fprintf(&b, " %d", r[0])
			} else {
				fmt.Fprintf(&b, " %d-%d", r[0], r[1])
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

package cluster

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipKeyLabel derives memberlist's AES-256 key from the cluster secret.
const gossipKeyLabel = "stash gossip v1"

func gossipKey(secret []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, nil, gossipKeyLabel, 32)
}

// memberlistConfig builds memberlist's configuration for n.
func (n *Node) memberlistConfig() (*memberlist.Config, error) {
	t := n.timing
	c := memberlist.DefaultLANConfig()
	c.Name = string(n.name)
	c.BindAddr = n.cfg.BindAddr
	c.BindPort = n.cfg.GossipPort
	c.AdvertiseAddr = n.cfg.AdvertiseAddr
	c.AdvertisePort = n.cfg.GossipPort
	key, err := gossipKey(n.cfg.Secret)
	if err != nil {
		return nil, err
	}
	c.SecretKey = key
	c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	c.ProbeInterval, c.ProbeTimeout = t.probeInterval, t.probeTimeout
	c.SuspicionMult, c.SuspicionMaxTimeoutMult = t.suspicionMult, t.suspMaxMult
	c.GossipInterval = t.gossipInterval
	c.PushPullInterval = t.pushPull
	c.TCPTimeout = t.tcpTimeout
	c.GossipToTheDeadTime = t.toTheDead
	c.DeadNodeReclaimTime = t.reclaim
	if n.cfg.Profile == ProfileLocal {
		c.IndirectChecks = 1
	}
	if n.cfg.Network != nil {
		t, err := openGossipTransport(n.cfg.Network, n.cfg.BindAddr, n.cfg.GossipPort, n.log.With("component", "memberlist"))
		if err != nil {
			return nil, err
		}
		c.Transport = t
		c.BindPort, c.AdvertisePort = t.port, t.port
	}
	d := &gossipDelegate{n: n}
	c.Delegate, c.Events, c.Alive, c.Merge = d, d, d, d
	c.Logger = log.New(levelWriter{log: n.log.With("component", "memberlist")}, "", 0)
	return c, nil
}

// gossipDelegate receives memberlist's callbacks. memberlist calls them
// from its own goroutines, some with its node lock held: they must not
// block and must not call back into memberlist.
type gossipDelegate struct{ n *Node }

// NodeMeta returns this node's encoded meta.
func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.n.metaMu.Lock()
	defer d.n.metaMu.Unlock()
	b := d.n.self.encode()
	if len(b) > limit {
		// Validate bounds every field, so this cannot happen.
		panic(fmt.Sprintf("cluster: node meta of %d bytes exceeds %d", len(b), limit))
	}
	return b
}

func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// admit decides whether a node may be part of our gossip pool: its meta
// must decode, name itself, and not belong to another cluster.
func (d *gossipDelegate) admit(node *memberlist.Node) error {
	m, err := decodeMeta(node.Meta)
	if err != nil {
		return fmt.Errorf("node %q: %w", node.Name, err)
	}
	if m.Name != node.Name {
		return fmt.Errorf("node %q: meta names %q", node.Name, m.Name)
	}
	ours := d.n.clusterID()
	if m.ClusterID != "" && ours != "" && m.ClusterID != ours {
		return fmt.Errorf("node %q belongs to cluster %s, this is %s", node.Name, m.ClusterID, ours)
	}
	return nil
}

// NotifyAlive refuses nodes that admit refuses.
func (d *gossipDelegate) NotifyAlive(node *memberlist.Node) error {
	if node.Name == string(d.n.name) {
		return nil
	}
	if err := d.admit(node); err != nil {
		d.n.log.Warn("refusing gossip peer", "err", err)
		return err
	}
	return nil
}

// NotifyMerge refuses a join (either way) with any node admit refuses.
func (d *gossipDelegate) NotifyMerge(nodes []*memberlist.Node) error {
	for _, node := range nodes {
		if node.Name == string(d.n.name) {
			continue
		}
		if err := d.admit(node); err != nil {
			d.n.log.Warn("refusing to merge with another gossip pool", "err", err)
			return err
		}
	}
	return nil
}

func (d *gossipDelegate) NotifyJoin(node *memberlist.Node)   { d.n.updatePeer(node, peerAlive) }
func (d *gossipDelegate) NotifyUpdate(node *memberlist.Node) { d.n.updatePeer(node, peerAlive) }

// NotifyLeave reports a failed or departed node. (memberlist does not set
// node.State here, so a graceful departure is told by meta.Leaving.)
func (d *gossipDelegate) NotifyLeave(node *memberlist.Node) { d.n.updatePeer(node, peerDead) }

// updatePeer records a gossip event in the view and wakes the control
// loop (debounced). Called by memberlist; must not block.
func (n *Node) updatePeer(node *memberlist.Node, st peerStatus) {
	if node.Name == string(n.name) {
		return // self is always taken from n.self
	}
	m, err := decodeMeta(node.Meta)
	if err != nil {
		n.log.Debug("ignoring gossip peer with bad meta", "peer", node.Name, "err", err)
		return
	}
	n.viewMu.Lock()
	old, had := n.view[node.Name]
	n.view[node.Name] = peer{meta: m, gossipAddr: node.Address(), status: st}
	n.viewMu.Unlock()
	if !had || old.status != st {
		n.log.Debug("gossip peer", "peer", node.Name, "status", [...]string{"alive", "failed"}[st])
	}
	if !had || old.status != st || old.meta != m || old.gossipAddr != node.Address() {
		n.peers.notify()
	}
	select {
	case n.gossipKick <- struct{}{}:
	default:
	}
}

// viewSnapshot returns a copy of the gossip view with this node in it.
func (n *Node) viewSnapshot() map[string]peer {
	n.viewMu.Lock()
	v := make(map[string]peer, len(n.view)+1)
	for k, p := range n.view {
		v[k] = p
	}
	n.viewMu.Unlock()
	n.metaMu.Lock()
	v[string(n.name)] = peer{meta: n.self, gossipAddr: n.gossipAddr, status: peerAlive}
	n.metaMu.Unlock()
	return v
}

// joinLoop joins the gossip pool through cfg.Join: with backoff until
// some other node answers, then now and then for addresses that are not
// alive members (which heals a pool split by a long partition). Names are
// resolved anew on every round. It runs until n.ctx is done.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	if len(n.cfg.Join) == 0 {
		return
	}
	wait := n.timing.joinMin
	joined := false
	for {
		addrs := n.resolveJoin(n.ctx)
		if len(addrs) > 0 {
			n.joinAttempts.Add(1)
			k, err := n.ml.Join(addrs)
			switch {
			case k > 0 && n.ml.NumMembers() > 1:
				if !joined {
					n.log.Info("joined gossip pool", "contacted", k, "members", n.ml.NumMembers())
				}
				joined = true
			case err != nil:
				n.log.Debug("gossip join failed; retrying", "addrs", addrs, "err", err, "retry", wait)
			}
		}
		next := n.timing.rejoin
		if !joined {
			next = wait
			wait = min(2*wait, n.timing.joinMax)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// resolveJoin resolves cfg.Join to ip:port strings, less this node's own
// address and addresses of alive members.
func (n *Node) resolveJoin(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	members := map[string]bool{}
	for _, p := range n.viewSnapshot() {
		if p.status == peerAlive {
			members[p.gossipAddr] = true
		}
	}
	self := map[string]bool{n.gossipAddr: true}
	if p, err := netip.ParseAddrPort(n.gossipAddr); err == nil {
		self[netip.AddrPortFrom(netip.MustParseAddr(n.cfg.BindAddr), p.Port()).String()] = true
	}
	var out []string
	for _, j := range n.cfg.Join {
		host, port, err := net.SplitHostPort(j)
		if err != nil {
			host, port = j, strconv.Itoa(DefaultGossipPort)
		}
		var ips []string
		if _, err := netip.ParseAddr(host); err == nil {
			ips = []string{host}
		} else if ips, err = net.DefaultResolver.LookupHost(ctx, host); err != nil {
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
				n.log.Debug("cannot resolve join address", "addr", j, "err", err)
			}
			continue
		}
		for _, ip := range ips {
			a := net.JoinHostPort(ip, port)
			if !self[a] && !members[a] && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

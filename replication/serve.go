package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/stashcluster/stash/internal/rawio"
	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

// fetchBatch bounds the bytes of values in one Entries frame.
const fetchBatch = 4 << 20

func (r *Replicator) accept(ln net.Listener) {
	defer r.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if r.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("accepting data stream", "err", err)
			select {
			case <-r.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		r.connsMu.Lock()
		if r.closed.Load() {
			r.connsMu.Unlock()
			nc.Close()
			return
		}
		r.conns[nc] = struct{}{}
		r.connsMu.Unlock()
		r.wg.Add(1)
		go r.serveConn(nc)
	}
}

// serveConn answers one peer's requests. Each request runs in its own
// goroutine (a forwarded write waits for its backups); replies go out
// through one writer that batches flushes.
func (r *Replicator) serveConn(nc net.Conn) {
	defer r.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	fw := newFrameWriter(nc)
	var from ring.NodeID // the primary that sent copies on this stream
	var cs carries       // copies sent in forward replies, awaiting confirmation
	sweeping := false
	defer func() {
		cancel()
		nc.Close()
		if from != "" {
			r.streamLost(from)
		}
		r.connsMu.Lock()
		delete(r.conns, nc)
		r.connsMu.Unlock()
	}()
	fail := func() {
		cancel()
		nc.Close()
	}
	// reply sends m (nil: only what is queued).
	reply := func(m *wire.Msg) {
		if ctx.Err() != nil {
			return
		}
		var err error
		if m == nil {
			err = fw.flush()
		} else {
			err = fw.send(m)
		}
		if err != nil {
			fail()
		}
	}
	raw, _ := rawio.Conn(nc)
	rd := wire.NewReader(raw)
	for {
		if !rd.Ready() {
			reply(nil) // about to wait on the connection: send what is queued
		}
		m, err := rd.Read()
		if err != nil {
			return
		}
		switch m.Kind {
		case wire.KindForward:
			if !sweeping && !r.cfg.Async {
				sweeping = true
				r.wg.Add(1)
				go func() {
					defer r.wg.Done()
					r.sweepCarries(ctx, &cs)
				}()
			}
			r.workers.run(func() { reply(r.handleForward(ctx, m, &cs)) })
		case wire.KindAck:
			// A forwarding node's word on the copy in a reply.
			if c := cs.take(m.ID); c != nil {
				r.confirmed(c, m.Err)
			}
		case wire.KindReplicate:
			from = ring.NodeID(m.From)
			if r.cfg.ApplyWaits {
				r.workers.run(func() { reply(r.handleReplicate(ctx, m)) })
			} else {
				// Applying does not wait for the disk: do it in order,
				// here, without a goroutine per copy, and acknowledge
				// everything one read brought in with one write.
				if err := fw.queue(r.handleReplicate(ctx, m)); err != nil {
					fail()
				}
			}
		case wire.KindDigest:
			r.workers.run(func() { reply(r.handleDigest(m)) })
		case wire.KindFetch:
			go r.handleFetch(ctx, m, reply)
		case wire.KindLookup:
			r.workers.run(func() { reply(r.handleLookup(m)) })
		default:
			reply(&wire.Msg{Kind: wire.KindAck, ID: m.ID, Err: fmt.Sprintf("ERR unexpected %s frame", m.Kind)})
		}
	}
}

func (r *Replicator) handleForward(ctx context.Context, m *wire.Msg, cs *carries) *wire.Msg {
	r.Forwarded.Add(1)
	if m.Fallback {
		if !r.canServePrev(m.Slot, m.Epoch, ring.NodeID(m.From)) {
			return &wire.Msg{Kind: wire.KindReply, ID: m.ID, Reply: fmt.Appendf(nil, "-TRYAGAIN slot %d is being taken over by %s\r\n", m.Slot, m.From)}
		}
		r.FallbackReads.Add(1)
		ctx = context.WithValue(ctx, localReadKey{}, m.Slot)
	}
	// No timer of its own: a write it runs waits for its backups at most
	// the replication timeout, and ctx ends with the stream.
	proto := int(m.Proto)
	if proto != 3 {
		proto = 2
	}
	if r.exec == nil || len(m.Args) == 0 {
		return &wire.Msg{Kind: wire.KindReply, ID: m.ID, Reply: []byte("-TRYAGAIN node is not serving yet\r\n")}
	}
	var cr *carry
	if !m.Fallback && !r.cfg.Async {
		if t := r.table.Load(); t != nil && m.Slot < ring.Slots && ring.NodeID(m.From) != r.cfg.Self && slices.Contains(t.Replicas(m.Slot), ring.NodeID(m.From)) {
			cr = &carry{to: ring.NodeID(m.From), slot: m.Slot, t: t, w: r.quorum(len(t.Replicas(m.Slot)))}
			ctx = context.WithValue(ctx, carryKey{}, cr)
		}
	}
	t0 := time.Now()
	rep := r.exec(ctx, proto, m.Args)
	if d := time.Since(t0); d > slowForward {
		r.log.Warn("slow forwarded command", "slot", m.Slot, "from", m.From, "fallback", m.Fallback, "took", d.Round(time.Millisecond), "reply", string(rep[:min(len(rep), 60)]))
	}
	out := &wire.Msg{Kind: wire.KindReply, ID: m.ID, Reply: rep}
	if cr != nil && len(cr.entry) > 0 {
		out.Entries, out.Epoch, out.From = cr.entry, cr.t.Epoch(), string(r.cfg.Self)
		out.ValueArgs = valueArgs(cr.entry, m.Args)
		if !cs.add(m.ID, cr, r.cfg.Timeout) {
			r.unconfirmed(cr) // the stream is gone: the reply will not arrive
		}
	}
	return out
}

// handleReplicate applies a primary's changes newer-wins, unless this
// node's table is newer than the sender's and no longer names the sender
// as the slot's primary (a deposed primary must not gather acks).
func (r *Replicator) handleReplicate(ctx context.Context, m *wire.Msg) *wire.Msg {
	ack := &wire.Msg{Kind: wire.KindAck, ID: m.ID, From: string(r.cfg.Self)}
	if len(m.Slots) > 0 {
		// A primary's word that copies for these slots did not arrive.
		r.resync(m.Slots)
		return ack
	}
	if t := r.table.Load(); t != nil && m.Epoch < t.Epoch() && t.Primary(m.Slot) != ring.NodeID(m.From) {
		r.Refused.Add(1)
		ack.Err = fmt.Sprintf("STALE epoch %d: table %d names %s as primary of slot %d", m.Epoch, t.Epoch(), t.Primary(m.Slot), m.Slot)
		return ack
	}
	// The slot changes here now: fallback reads of it must stop.
	if m.Slot < ring.Slots && r.handedOver[m.Slot].Load() != 0 {
		r.handedOver[m.Slot].Store(0)
	}
	for _, e := range m.Entries {
		if _, err := r.store.Apply(ctx, m.Slot, fromEntry(e), e.Deleted); err != nil {
			ack.Err = "ERR " + err.Error()
			return ack
		}
	}
	return ack
}

func (r *Replicator) handleDigest(m *wire.Msg) *wire.Msg {
	// The epoch first: a node that already applied a table tells the
	// asker so, and everything it acknowledged before is in the digests
	// below (see takeover's early start).
	t := r.table.Load()
	var epoch uint64
	if t != nil {
		epoch = t.Epoch()
	}
	d := make([]uint64, len(m.Slots))
	for i, s := range m.Slots {
		if s < ring.Slots {
			d[i] = r.store.Digest(s)
		}
	}
	st := make([]byte, len(m.Slots))
	for i, s := range m.Slots {
		if s < ring.Slots {
			st[i] = r.slotState(t, s)
		}
	}
	return &wire.Msg{Kind: wire.KindDigests, ID: m.ID, Epoch: epoch, Digests: d, States: st}
}

// handleFetch streams every entry of the requested slots, tombstones
// included, in batches; the last batch has Last set. The batch that ends
// a slot lists it in Slots, with its mark in Marks (see
// storage.ScanSlotAll).
func (r *Replicator) handleFetch(ctx context.Context, m *wire.Msg, reply func(*wire.Msg)) {
	batch := &wire.Msg{Kind: wire.KindEntries, ID: m.ID}
	size := 0
	for _, s := range m.Slots {
		if s >= ring.Slots {
			continue
		}
		mark := r.store.ScanSlotAll(s, func(st storage.Stash) bool {
			batch.Entries = append(batch.Entries, toEntry(st))
			size += len(st.Key) + len(st.Value) + 32
			r.ServedBytes.Add(int64(len(st.Key) + len(st.Value)))
			if size >= fetchBatch {
				reply(batch)
				batch = &wire.Msg{Kind: wire.KindEntries, ID: m.ID}
				size = 0
			}
			return ctx.Err() == nil
		})
		batch.Slots = append(batch.Slots, s)
		batch.Marks = append(batch.Marks, uint64(mark.Epoch), mark.Seq)
	}
	batch.Last = true
	reply(batch)
}

func toEntry(st storage.Stash) wire.Entry {
	return wire.Entry{
		Key: st.Key, Kind: uint8(st.Kind), Value: st.Value, ExpireAt: st.ExpireAt,
		Epoch: st.Version.Epoch, Seq: st.Version.Seq, Deleted: st.Deleted,
	}
}

func fromEntry(e wire.Entry) storage.Stash {
	return storage.Stash{
		Key: e.Key, Kind: storage.Kind(e.Kind), Value: e.Value, ExpireAt: e.ExpireAt,
		Version: storage.Version{Epoch: e.Epoch, Seq: e.Seq}, Deleted: e.Deleted,
	}
}

package replication

import (
	"context"
	"sync"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

// asyncFlush is how often asynchronous replication ships what piled up:
// one frame per slot and backup instead of one per write. It is also how
// much a primary failure can lose in that mode.
const asyncFlush = 20 * time.Millisecond

// asyncQueue holds changes acknowledged before their backups have them
// (Config.Async, or W = 1), batched per backup and slot.
type asyncQueue struct {
	mu      sync.Mutex
	pending map[ring.NodeID]map[uint16][]wire.Entry
	epoch   uint64
}

// enqueue queues st for every backup of slot in t; the flusher sends it
// within asyncFlush.
func (r *Replicator) enqueueAsync(t *ring.Table, slot uint16, st storage.Stash, backups []ring.NodeID) {
	q := &r.async
	q.mu.Lock()
	if q.pending == nil {
		q.pending = make(map[ring.NodeID]map[uint16][]wire.Entry)
	}
	e := toEntry(st)
	for _, id := range backups {
		m := q.pending[id]
		if m == nil {
			m = make(map[uint16][]wire.Entry)
			q.pending[id] = m
		}
		m[slot] = append(m[slot], e)
	}
	q.epoch = t.Epoch()
	q.mu.Unlock()
}

func (r *Replicator) flushAsync() {
	defer r.wg.Done()
	tick := time.NewTicker(asyncFlush)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		q := &r.async
		q.mu.Lock()
		batch, epoch := q.pending, q.epoch
		q.pending = nil
		q.mu.Unlock()
		for id, slots := range batch {
			for slot, entries := range slots {
				ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
				c, err := r.peer(id).get(ctx)
				if err == nil {
					// Fire and forget: the reply, if any, is dropped.
					m := &wire.Msg{Kind: wire.KindReplicate, ID: r.id(), From: string(r.cfg.Self), Epoch: epoch, Slot: slot, Entries: entries}
					if err := c.fw.send(m); err != nil {
						c.fail(err)
					}
				}
				cancel()
			}
		}
	}
}

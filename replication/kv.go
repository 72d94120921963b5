package replication

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/stashcluster/stash/internal/wire"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

// KV is the store as the RESP engine and the stash operations see it in a
// cluster: reads wait for changes still on their way to W copies, and
// changes are applied here and replicated before they return.
type KV struct{ r *Replicator }

// KV returns the replicated store view.
func (r *Replicator) KV() *KV { return &KV{r} }

// pending tracks keys whose latest change has not reached W copies yet.
type pending struct {
	mu   sync.Mutex
	keys map[pkey]*pend
}

type pkey struct {
	slot uint16
	key  string
}

type pend struct {
	n    int           // changes in flight
	done chan struct{} // closed when n drops to 0
}

func (p *pending) init() { p.keys = make(map[pkey]*pend) }

func (p *pending) add(slot uint16, key string) {
	p.mu.Lock()
	k := pkey{slot, key}
	e := p.keys[k]
	if e == nil {
		e = &pend{done: make(chan struct{})}
		k.key = strings.Clone(key) // key may point into a request buffer
		p.keys[k] = e
	}
	e.n++
	p.mu.Unlock()
}

func (p *pending) finish(slot uint16, key string) {
	p.mu.Lock()
	k := pkey{slot, key}
	if e := p.keys[k]; e != nil {
		e.n--
		if e.n == 0 {
			close(e.done)
			delete(p.keys, k)
		}
	}
	p.mu.Unlock()
}

// wait blocks until no change to key is in flight, or d passed; it
// reports whether none is.
func (p *pending) wait(slot uint16, key string, d time.Duration) (ok bool, waited time.Duration) {
	p.mu.Lock()
	e := p.keys[pkey{slot, key}]
	p.mu.Unlock()
	if e == nil {
		return true, 0
	}
	t0 := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.done:
		return true, time.Since(t0)
	case <-t.C:
		return false, time.Since(t0)
	}
}

// ErrInDoubt: a read of a key whose latest write is not confirmed on a
// write quorum yet (it missed its quorum and is being retried).
var ErrInDoubt = &Error{"TRYAGAIN", "the key's latest write is not confirmed on a write quorum yet; retry"}

// Settled implements server.ReadGate: it waits up to the replication
// timeout for key's in-flight writes and fails with ErrInDoubt if one is
// still unconfirmed, so a RESP read never returns a value a failover
// could undo.
func (kv *KV) Settled(slot uint16, key string) error {
	ok, waited := kv.r.pend.wait(slot, key, kv.r.cfg.Timeout)
	if waited > slowForward {
		kv.r.log.Warn("slow read: waited for a write to reach its quorum", "slot", slot, "took", waited.Round(time.Millisecond), "settled", ok)
	}
	if !ok {
		return ErrInDoubt
	}
	return nil
}

// Get returns the live stash under key once no change to it is still
// on its way to W copies (bounded by the replication timeout).
func (kv *KV) Get(slot uint16, key string) (storage.Stash, bool) {
	kv.r.pend.wait(slot, key, kv.r.cfg.Timeout)
	return kv.r.store.Get(slot, key)
}

// Update applies fn on this node, which must be serving slot as primary
// (else ErrNotServing, nothing done), then replicates the result and
// returns once W copies hold it (else ErrNoQuorum).
func (kv *KV) Update(ctx context.Context, slot uint16, key string, fn func(cur storage.Stash, ok bool) (storage.Stash, storage.Op)) (storage.Op, error) {
	r := kv.r
	if r.closed.Load() {
		return storage.OpKeep, ErrClosed
	}
	if !r.Serving(slot) {
		return storage.OpKeep, ErrNotServing
	}
	t := r.table.Load()
	added := false
	op, st, err := r.store.Change(ctx, slot, key, func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
		next, op := fn(cur, ok)
		if op != storage.OpKeep && !added {
			// Registered under the key's lock, before the change is
			// visible: a read that sees it waits for its copies.
			added = true
			r.pend.add(slot, key)
		}
		return next, op
	})
	if st.Key == "" {
		// Nothing changed (or the change failed before it applied).
		if added {
			r.pend.finish(slot, key)
		}
		return op, err
	}
	if err != nil {
		// Applied in memory, but the local commit failed or ctx ended:
		// still replicate; report the error.
		r.replicateBackground(t, slot, st)
		return op, err
	}
	if err := r.replicate(ctx, t, slot, st); err != nil {
		return op, err
	}
	return op, nil
}

// Scan, FlushAll, Stats and SlotCount act on the local store.
func (kv *KV) Scan(cursor uint64, count int, fn func(key string)) uint64 {
	return kv.r.store.Scan(cursor, count, fn)
}

func (kv *KV) FlushAll(ctx context.Context) error { return kv.r.store.FlushAll(ctx) }

func (kv *KV) Stats() storage.Stats { return kv.r.store.Stats() }

func (kv *KV) SlotCount(slot uint16) int { return kv.r.store.SlotCount(slot) }

// replicate sends st to the slot's backups and waits for W copies in all.
// It releases the key's pending mark once the outcome is known; after a
// failure the change is still offered to the backups in the background.
func (r *Replicator) replicate(ctx context.Context, t *ring.Table, slot uint16, st storage.Stash) error {
	reps := t.Replicas(slot)
	w := r.quorum(len(reps))
	backups := make([]ring.NodeID, 0, len(reps))
	for _, id := range reps {
		if id != r.cfg.Self {
			backups = append(backups, id)
		}
	}
	if r.cfg.Async || w <= 1 {
		// Acknowledged now; the backups get it within asyncFlush.
		if len(backups) > 0 {
			r.enqueueAsync(t, slot, st, backups)
		}
		r.pend.finish(slot, st.Key)
		return nil
	}
	r.Replicated.Add(1)
	// The forwarding node's copy, when it is a backup, goes in the
	// forward's reply (see carry.go).
	cr := r.takeCarry(ctx, t, slot, &backups)
	timeout := r.dl.after(r.cfg.Timeout)
	// Send to every backup at once; replies share one channel (room for
	// one per backup, failures included).
	replies := make(chan *wire.Msg, len(backups))
	entry := []wire.Entry{toEntry(st)}
	got := 1
	if cr != nil {
		got++ // counted now; the client is answered only once it holds it
	}
	// The first connected backups, as many as W still needs, get the
	// copy at once; the others lazily (see lazyFlush), unless one of the
	// first fails.
	eager := w - got
	var lazy []*peerConn
	sent := 0
	for _, id := range backups {
		m := &wire.Msg{Kind: wire.KindReplicate, Epoch: t.Epoch(), Slot: slot, Entries: entry}
		p := r.peer(id)
		if !p.connected() {
			// Dialing may take long (a node starting or stopping
			// accepts and does not answer yet): it must not hold up
			// the copies to the others. The copy goes when the stream
			// is up, within the timeout; if it cannot, a stand-in
			// reply counts it as failed.
			sent++
			r.copying.Add(1)
			go func() {
				defer r.copying.Add(-1)
				sctx, scancel := context.WithTimeout(ctx, r.cfg.Timeout)
				defer scancel()
				if _, err := p.start(sctx, m, replies); err != nil {
					r.missed(id, slot)
					replies <- &wire.Msg{ID: m.ID, From: string(id), Err: err.Error()}
				}
			}()
			continue
		}
		c, err := p.startHow(ctx, m, replies, eager <= 0)
		if err == nil {
			sent++
			defer c.forget(m.ID)
			if eager <= 0 {
				lazy = append(lazy, c)
			}
			eager--
		} else {
			r.missed(id, slot)
		}
	}
	answered := 0
	var heard []string
	for got < w && answered < sent {
		select {
		case rep := <-replies:
			answered++
			heard = append(heard, rep.From)
			if !gone(rep) && rep.Err == "" {
				got++
			} else {
				if rep.From != "" {
					r.missed(ring.NodeID(rep.From), slot)
				}
				for _, c := range lazy {
					c.flushLazy() // needed now
				}
				lazy = nil
			}
		case <-timeout:
			answered = sent
			r.missedExcept(backups, heard, slot)
		case <-ctx.Done():
			answered = sent
			r.missedExcept(backups, heard, slot)
		}
	}
	// An old primary stops acknowledging once its lease ran out or a
	// newer table moved the slot: the new one may already be serving.
	if got >= w && r.Serving(slot) {
		if cr != nil {
			// The pending mark is released when the forwarding
			// node confirms it applied the copy.
			cr.sts = append(cr.sts, st)
			cr.entry = append(cr.entry, entry[0])
			r.Carried.Add(1)
			return nil
		}
		r.pend.finish(slot, st.Key)
		return nil
	}
	r.NoQuorum.Add(1)
	r.log.Warn("write did not reach the write quorum", "slot", slot, "copies", got, "quorum", w)
	go r.retry(t, slot, st, w)
	return ErrNoQuorum
}

func (r *Replicator) send(ctx context.Context, t *ring.Table, id ring.NodeID, slot uint16, st storage.Stash) error {
	rep, err := r.peer(id).call(ctx, &wire.Msg{
		Kind: wire.KindReplicate, Epoch: t.Epoch(), Slot: slot, Entries: []wire.Entry{toEntry(st)},
	})
	if err == nil && rep.Err != "" {
		err = errString(rep.Err)
	}
	if err != nil {
		r.missed(id, slot)
	}
	return err
}

type errString string

func (e errString) Error() string { return string(e) }

// replicateBackground offers st to every backup without waiting, and
// releases the pending mark when all answered or gave up.
func (r *Replicator) replicateBackground(t *ring.Table, slot uint16, st storage.Stash) {
	go func() {
		defer r.pend.finish(slot, st.Key)
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
		defer cancel()
		var wg sync.WaitGroup
		for _, id := range t.Replicas(slot) {
			if id == r.cfg.Self {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.send(ctx, t, id, slot, st)
			}()
		}
		wg.Wait()
	}()
}

// retry keeps offering a change that missed its quorum to the backups
// until W copies hold it or this node stops being the slot's primary,
// holding the key's pending mark so reads of it keep waiting meanwhile.
func (r *Replicator) retry(t *ring.Table, slot uint16, st storage.Stash, w int) {
	defer r.pend.finish(slot, st.Key)
	for i := 0; i < 30; i++ {
		select {
		case <-r.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
		cur := r.table.Load()
		if cur == nil || cur.Primary(slot) != r.cfg.Self {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
		got := 1
		for _, id := range cur.Replicas(slot) {
			if id != r.cfg.Self && r.send(ctx, cur, id, slot, st) == nil {
				got++
			}
		}
		cancel()
		if got >= w {
			return
		}
	}
}

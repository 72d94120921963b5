package storage

import (
	"hash/maphash"
	"math"
	"time"
)

// reapBudget bounds the entries one reaper pass examines, so that a burst
// of expirations is spread over several passes instead of one long stall.
const reapBudget = 1 << 16

// reaper is the goroutine that turns expired stashes into tombstones and
// removes tombstones whose TombstoneTTL has passed. Each pass reads the
// per-slot lower bound of the earliest expiry (one atomic load per slot)
// and scans only slots whose bound is due; a pass stops after examining
// reapBudget entries and the next one resumes where it stopped, soon.
func (s *Store) reaper() {
	defer s.wg.Done()
	t := time.NewTimer(s.cfg.ReapInterval)
	defer t.Stop()
	cursor := 0
	var keys []string
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		var more bool
		cursor, more, keys = s.reapPass(cursor, reapBudget, keys)
		d := s.cfg.ReapInterval
		if more {
			d = min(d, time.Millisecond)
		}
		t.Reset(d)
	}
}

// reapPass visits the slots once round from cursor, reaping those whose
// bound is due, until budget entries were examined. It returns where to
// resume and whether it stopped early; keys is scratch space.
func (s *Store) reapPass(cursor, budget int, keys []string) (int, bool, []string) {
	now := s.nowMs()
	for range Slots {
		i := cursor
		if cursor++; cursor == Slots {
			cursor = 0
		}
		if s.slots[i].minExp.Load() > now {
			continue
		}
		var n int
		n, keys = s.reapSlot(uint16(i), now, keys)
		if budget -= n; budget <= 0 {
			return cursor, true, keys
		}
	}
	return cursor, false, keys
}

// reapSlot turns slot's expired stashes into tombstones (or removes them,
// if their tombstone would already be due), removes its due tombstones,
// enqueues those changes for disk, recomputes the slot's bound and returns
// the number of entries examined.
func (s *Store) reapSlot(slot uint16, now int64, keys []string) (int, []string) {
	sl := &s.slots[slot]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.minExp.Load() > now {
		return 0, keys
	}
	examined := sl.t.n
	keys = keys[:0]
	next := int64(math.MaxInt64)
	for j, tg := range sl.t.tags {
		if tg == 0 {
			continue
		}
		e := &sl.t.entries[j]
		switch {
		case e.exp == 0:
		case e.exp <= now:
			keys = append(keys, e.key)
		default:
			next = min(next, e.exp)
		}
	}
	// After Close the enqueues fail with ErrClosed; the next Open turns
	// the expired record into a tombstone, or skips the due tombstone and
	// deletes it, anyway.
	for _, k := range keys {
		i := sl.t.find(maphash.String(s.seed, k), k)
		if sl.t.entries[i].tombstone() {
			s.removeLocked(sl, i)
			_, _ = s.enqueue(slot, sl, k, nil)
			continue
		}
		if gcAt, _, _ := s.expireLocked(slot, sl, i, now); gcAt != 0 {
			next = min(next, gcAt)
		}
	}
	sl.minExp.Store(next)
	clear(keys)
	return examined, keys
}

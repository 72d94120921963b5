package storage

import (
	"hash/maphash"
	"math"
	"time"
)

// reapBudget bounds the entries one reaper pass examines, so that a burst
// of expirations is spread over several passes instead of one long stall.
const reapBudget = 1 << 16

// reaper is the goroutine that deletes expired stashes. Each pass reads the
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

// reapSlot removes slot's expired stashes from memory, enqueues their
// deletion from disk, recomputes the slot's bound and returns the number
// of entries examined.
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
	for _, k := range keys {
		s.removeLocked(sl, sl.t.find(maphash.String(s.seed, k), k))
		// After Close this fails with ErrClosed; the next Open skips and
		// deletes the record anyway.
		_, _ = s.enqueue(slot, sl, k, nil, true)
	}
	sl.minExp.Store(next)
	if len(keys) > 0 {
		s.expired.Add(int64(len(keys)))
	}
	clear(keys)
	return examined, keys
}

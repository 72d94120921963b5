package replication

import (
	"sync"
	"time"
)

// deadlines hands out channels that close at a coarse deadline, shared by
// every waiter whose deadline falls in the same tick: a replicated write
// waits for its backups with one of these instead of a timer of its own
// (a timer per write was a measurable share of the CPU).
type deadlines struct {
	tick time.Duration
	stop <-chan struct{}

	mu      sync.Mutex
	buckets map[int64]chan struct{}
	running bool
}

// after returns a channel closed between d and d+tick from now.
func (dl *deadlines) after(d time.Duration) <-chan struct{} {
	at := time.Now().Add(d+dl.tick).UnixNano() / int64(dl.tick)
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.buckets == nil {
		dl.buckets = make(map[int64]chan struct{})
	}
	ch := dl.buckets[at]
	if ch == nil {
		ch = make(chan struct{})
		dl.buckets[at] = ch
	}
	if !dl.running {
		dl.running = true
		go dl.run()
	}
	return ch
}

// run closes due buckets every tick; it exits when none are left (after
// returns it to life) or at stop.
func (dl *deadlines) run() {
	t := time.NewTicker(dl.tick)
	defer t.Stop()
	for {
		select {
		case <-dl.stop:
			dl.mu.Lock()
			for k, ch := range dl.buckets {
				close(ch)
				delete(dl.buckets, k)
			}
			dl.running = false
			dl.mu.Unlock()
			return
		case <-t.C:
		}
		now := time.Now().UnixNano() / int64(dl.tick)
		dl.mu.Lock()
		for k, ch := range dl.buckets {
			if k <= now {
				close(ch)
				delete(dl.buckets, k)
			}
		}
		if len(dl.buckets) == 0 {
			dl.running = false
			dl.mu.Unlock()
			return
		}
		dl.mu.Unlock()
	}
}

package replication

import "time"

// workers runs request handlers on goroutines that outlive one request:
// a forwarded write runs the whole command path (exec, store, replicate),
// and a fresh goroutine per request spent measurable time growing its
// stack each time. A worker exits after one to two workerIdle periods
// without work.
type workers struct {
	work chan func() // unbuffered: a send succeeds only if a worker is idle
	stop <-chan struct{}
}

const workerIdle = 10 * time.Second

// newWorkers returns a pool whose idle workers exit when stop closes.
func newWorkers(stop <-chan struct{}) *workers {
	return &workers{work: make(chan func()), stop: stop}
}

// run runs f on an idle worker, or on a new one.
func (w *workers) run(f func()) {
	select {
	case w.work <- f:
	default:
		go w.loop(f)
	}
}

func (w *workers) loop(f func()) {
	f()
	// The timer is not reset per task (that was a measurable cost at
	// tens of thousands of tasks a second): a worker exits at the first
	// tick it finds it ran nothing since the last, after 1–2 idle periods.
	ran := false
	t := time.NewTicker(workerIdle)
	defer t.Stop()
	for {
		select {
		case f := <-w.work:
			f()
			ran = true
		case <-t.C:
			if !ran {
				return
			}
			ran = false
		case <-w.stop:
			return
		}
	}
}

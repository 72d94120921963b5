package replication

import "time"

// workers runs request handlers on goroutines that outlive one request:
// a forwarded write runs the whole command path (exec, store, replicate),
// and a fresh goroutine per request spent measurable time growing its
// stack each time. An idle worker exits after workerIdle.
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
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		select {
		case f := <-w.work:
			f()
			t.Reset(workerIdle)
		case <-t.C:
			return
		case <-w.stop:
			return
		}
	}
}

package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stashcluster/stash/storage"
)

// Metrics holds the node's Prometheus metrics on a registry of its own (no
// global registry: two nodes in one process keep separate figures).
type Metrics struct {
	Registry  *prometheus.Registry
	commands  *prometheus.CounterVec
	forwarded *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	fsync     prometheus.Histogram
	commitN   prometheus.Histogram
}

// StatsFunc returns the store's current figures; called at scrape time.
type StatsFunc func() storage.Stats

// NewMetrics registers the node's metrics. stats is read at scrape time.
func NewMetrics(stats StatsFunc) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stash_commands_total",
			Help: "Client commands processed, by command name and result (ok or error).",
		}, []string{"cmd", "result"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stash_forwarded_total",
			Help: "Client commands forwarded to the node serving their slot, by command name.",
		}, []string{"cmd"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stash_command_duration_seconds",
			Help:    "Time to execute a client command, from parsed request to reply buffered.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 4, 10),
		}, []string{"cmd"}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stash_fsync_duration_seconds",
			Help:    "Duration of one group commit to disk, fsync included.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 3, 10),
		}),
		commitN: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stash_commit_writes",
			Help:    "Writes carried by one group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
	}
	r.MustRegister(m.commands, m.forwarded, m.latency, m.fsync, m.commitN,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if stats != nil {
		gauge := func(name, help string, v func(storage.Stats) int64) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(v(stats())) })
		}
		counter := func(name, help string, v func(storage.Stats) int64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(stats())) })
		}
		r.MustRegister(
			gauge("stash_stashes", "Stashes held by this node.", func(s storage.Stats) int64 { return s.Stashes }),
			gauge("stash_bytes", "Key and value bytes held by this node.", func(s storage.Stats) int64 { return s.Bytes }),
			counter("stash_expired_total", "Stashes removed by expiry.", func(s storage.Stats) int64 { return s.Expired }),
			gauge("stash_wal_bytes", "Bytes of write-ahead log a crash now would replay (not yet checkpointed into stash.db).",
				func(s storage.Stats) int64 { return s.WALBytes }),
			counter("stash_checkpoints_total", "Checkpoints that moved the write-ahead log into stash.db.",
				func(s storage.Stats) int64 { return s.Checkpoints }),
			counter("stash_checkpoint_failures_total", "Checkpoints that failed (retried with the next; the log is kept meanwhile).",
				func(s storage.Stats) int64 { return s.CheckpointFailed }),
			counter("stash_write_stalls_total", "Writes held back because the write-ahead log was over twice --checkpoint-bytes.",
				func(s storage.Stats) int64 { return s.Stalls }),
			counter("stash_commit_failures_total", "Group commits to the write-ahead log that failed (their writes are retried).",
				func(s storage.Stats) int64 { return s.Failed }),
		)
	}
	return m
}

// ObserveCommit records one group commit; it matches storage's
// Config.ObserveFsync.
func (m *Metrics) ObserveCommit(d time.Duration, writes int) {
	m.fsync.Observe(d.Seconds())
	m.commitN.Observe(float64(writes))
}

type cmdMetrics struct {
	ok, fail prometheus.Counter
	lat      prometheus.Observer
}

func (m *Metrics) forCommand(name string) *cmdMetrics {
	return &cmdMetrics{
		ok:   m.commands.WithLabelValues(name, "ok"),
		fail: m.commands.WithLabelValues(name, "error"),
		lat:  m.latency.WithLabelValues(name),
	}
}

func (cm *cmdMetrics) observe(ok bool, d time.Duration) {
	if ok {
		cm.ok.Inc()
	} else {
		cm.fail.Inc()
	}
	cm.lat.Observe(d.Seconds())
}

func (m *Metrics) command(name string, ok bool, d time.Duration) {
	r := "ok"
	if !ok {
		r = "error"
	}
	m.commands.WithLabelValues(name, r).Inc()
}

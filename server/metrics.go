package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
type StatsFunc func() (stashes, bytes, expired int64)

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
		r.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stash_stashes", Help: "Stashes held by this node."},
				func() float64 { n, _, _ := stats(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stash_bytes", Help: "Key and value bytes held by this node."},
				func() float64 { _, b, _ := stats(); return float64(b) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stash_expired_total", Help: "Stashes removed by expiry."},
				func() float64 { _, _, e := stats(); return float64(e) }),
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

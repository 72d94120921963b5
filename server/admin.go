package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminConfig configures the HTTP admin front end.
type AdminConfig struct {
	// Ready reports whether the node should receive traffic, and why not.
	// Called from HTTP handler goroutines; must not block.
	Ready func() (bool, string)
	// Node returns the JSON document served at /v1/node. Called from HTTP
	// handler goroutines.
	Node func() any
	// Metrics is served at /metrics; nil serves 404.
	Metrics *Metrics
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
	// Routes, if set, adds handlers to the admin mux (fault hooks).
	Routes func(mux *http.ServeMux)
	// Logger; nil discards.
	Logger *slog.Logger
}

// Admin is the HTTP admin front end: /healthz, /readyz, /metrics, /v1/node.
type Admin struct {
	cfg AdminConfig
	srv *http.Server
}

// NewAdmin builds the admin front end.
func NewAdmin(cfg AdminConfig) *Admin {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Admin{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, why := true, ""
		if cfg.Ready != nil {
			ok, why = cfg.Ready()
		}
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: " + why + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /v1/node", func(w http.ResponseWriter, r *http.Request) {
		var doc any = map[string]string{}
		if cfg.Node != nil {
			doc = cfg.Node()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(doc)
	})
	if cfg.Routes != nil {
		cfg.Routes(mux)
	}
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return a
}

// Serve serves on ln until Shutdown; it returns nil after a clean stop.
func (a *Admin) Serve(ln net.Listener) error {
	err := a.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the admin server gracefully.
func (a *Admin) Shutdown(ctx context.Context) error { return a.srv.Shutdown(ctx) }

// Close stops it at once.
func (a *Admin) Close() error { return a.srv.Close() }

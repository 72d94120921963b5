package cluster

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Name = "n1"
	good.Secret = testSecret
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}

	bad := Config{
		Name:            "has space",
		Zone:            strings.Repeat("z", 65),
		BindAddr:        "0.0.0.0",
		GossipPort:      70000,
		ClusterPort:     -1,
		Join:            []string{""},
		BootstrapExpect: 7,
		Secret:          []byte("short"),
		Replicas:        0,
		MaxVoters:       0,
		DownGrace:       -time.Second,
		Debounce:        -time.Second,
		RESPAddr:        strings.Repeat("r", 65),
		AdminAddr:       strings.Repeat("a", 65),
		Profile:         "wan",
	}
	err := bad.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate: %v", err)
	}
	for _, field := range []string{"Name", "Zone", "AdvertiseAddr", "GossipPort", "ClusterPort", "Join[0]",
		"BootstrapExpect", "Secret", "Replicas", "MaxVoters", "DownGrace", "Debounce", "RESPAddr", "AdminAddr", "Profile"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}

	c := good
	c.BindAddr = "not-an-ip"
	c.AdvertiseAddr = "0.0.0.0"
	err = c.Validate()
	for _, field := range []string{"BindAddr", "AdvertiseAddr"} {
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}

	// Open validates and does not touch the caller's config.
	c = good
	c.Join = []string{"x"}
	c.Secret = nil
	if _, err := Open(context.Background(), c); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Open with a bad config: %v", err)
	}
}

func TestLogAdapters(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))

	levelWriter{log: l}.Write([]byte("2024/01/01 00:00:00 [WARN] memberlist: something odd\n[DEBUG] memberlist: chatter\n[ERR] memberlist: broken\n"))
	out := buf.String()
	if !strings.Contains(out, `level=WARN msg="something odd"`) || !strings.Contains(out, `level=ERROR msg=broken`) ||
		strings.Contains(out, "chatter") {
		t.Fatalf("memberlist lines became:\n%s", out)
	}

	buf.Reset()
	h := newHclog(l, "raft")
	h.Info("entering leader state", "term", 3)
	h.Named("net").Warn("slow", "peer", "x")
	h.Debug("hidden")
	h.With("k", "v").Error("bad")
	if h.IsDebug() || !h.IsInfo() || h.IsTrace() {
		t.Fatal("level checks")
	}
	out = buf.String()
	for _, want := range []string{`msg="entering leader state" component=raft term=3`, `sub=raft.net peer=x`, `k=v`} {
		if !strings.Contains(out, want) {
			t.Errorf("hclog output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Error("debug line shown at info level")
	}
}

package cluster

import (
	"context"
	"log/slog"
	"slices"
	"testing"
)

func TestResolveJoin(t *testing.T) {
	n := &Node{
		cfg: Config{
			BindAddr: "127.0.0.1",
			Join:     []string{"localhost:7000", "127.0.0.1:7001", "127.0.0.2", "127.0.0.1:7002", "no-such-host.invalid:1"},
		},
		log:        slog.New(slog.DiscardHandler),
		name:       "self",
		gossipAddr: "127.0.0.1:7001",
		view:       map[string]peer{"other": {gossipAddr: "127.0.0.1:7002", status: peerAlive}},
	}
	got := n.resolveJoin(context.Background())
	for _, want := range []string{"127.0.0.1:7000", "127.0.0.2:7946"} {
		if !slices.Contains(got, want) {
			t.Errorf("resolveJoin = %v, missing %s", got, want)
		}
	}
	for _, not := range []string{"127.0.0.1:7001", "127.0.0.1:7002"} {
		if slices.Contains(got, not) {
			t.Errorf("resolveJoin = %v, includes %s (self or a member)", got, not)
		}
	}
}

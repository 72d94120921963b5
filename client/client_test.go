package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stashcluster/stash"
	"github.com/stashcluster/stash/client"
	"github.com/stashcluster/stash/internal/testport"
)

func startNode(t testing.TB) *stash.Node {
	t.Helper()
	cfg := stash.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Port, cfg.AdminPort = 0, -1
	cfg.MaxValueBytes = 1024
	n, err := stash.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// The client and an embedded node are interchangeable behind stash.Store.
var _ stash.Store = (*client.Client)(nil)

func TestClientAgainstNode(t *testing.T) {
	n := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Clustered() {
		t.Fatal("a single node reported as a cluster")
	}
	tg, err := c.Put(ctx, []byte("hello"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A tag minted through the client works on the embedded API and back.
	if v, err := n.Get(ctx, tg); err != nil || string(v) != "hello" {
		t.Fatalf("node.Get: %q %v", v, err)
	}
	if err := c.Set(ctx, tg, []byte("world"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, tg); err != nil || string(v) != "world" {
		t.Fatalf("Get: %q %v", v, err)
	}
	if err := c.Touch(ctx, tg, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, tg); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	if err := c.Delete(ctx, tg); !errors.Is(err, stash.ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	if err := c.Touch(ctx, tg, time.Minute); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Touch after Delete: %v", err)
	}
	forged := []byte(tg)
	forged[10] ^= 1
	if forged[10] == '-' || forged[10] == '_' {
		forged[10] = 'Q'
	}
	if _, err := c.Get(ctx, string(forged)); !errors.Is(err, stash.ErrBadTag) {
		t.Fatalf("forged tag: %v", err)
	}
	if _, err := c.Get(ctx, "junk"); !errors.Is(err, client.ErrMalformed) {
		t.Fatalf("junk tag: %v", err)
	}
	if _, err := c.Put(ctx, make([]byte, 2000), 0); !errors.Is(err, stash.ErrValueTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}

func TestDialFailsClearly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Dial(ctx); !errors.Is(err, client.ErrNoAddress) {
		t.Fatalf("no address: %v", err)
	}
	_, err = client.Dial(ctx, addr)
	if err == nil || !strings.Contains(err.Error(), "no node reachable") {
		t.Fatalf("unreachable: %v", err)
	}
}

func TestRetriesUntilNodeIsBack(t *testing.T) {
	// A node restarts on the same port and data dir; a Get issued while it
	// is down succeeds once it is back, within the context's deadline.
	cfg := stash.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Port = testport.Free(t) // below the ephemeral range: free again at restart
	cfg.AdminPort = -1
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := stash.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tg, err := c.Put(ctx, []byte("kept"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan *stash.Node, 1)
	go func() {
		time.Sleep(300 * time.Millisecond) // the client must retry meanwhile
		n2, err := stash.Open(context.Background(), cfg)
		if err != nil {
			t.Error(err)
			restarted <- nil
			return
		}
		restarted <- n2
	}()
	v, err := c.Get(ctx, tg)
	n2 := <-restarted
	if n2 != nil {
		defer n2.Close()
	}
	if err != nil || string(v) != "kept" {
		t.Fatalf("Get across a restart: %q %v", v, err)
	}
}

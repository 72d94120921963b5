package stash

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Port, cfg.AdminPort = 0, 0
	return cfg
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name = ""
	cfg.Bind = "not-an-ip"
	cfg.Port = 70000
	cfg.Fsync = "sometimes"
	cfg.MaxValueBytes = 0
	cfg.Secret = []byte("short")
	cfg.Join = []string{"127.0.0.1:7946"}
	cfg.WriteQuorum = 4 // more than Replicas (3)
	cfg.Replication = "eventually"
	cfg.CheckpointBytes = 4096
	err := cfg.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, field := range []string{"Name", "Bind", "Port", "Fsync", "MaxValueBytes", "Secret", "WriteQuorum", "Replication", "CheckpointBytes"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestProtectedMode(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Bind = "0.0.0.0"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "protected mode") {
		t.Fatalf("public bind without password: %v", err)
	}
	cfg.Password = "pw"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Password, cfg.ProtectedMode = "", false
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNodeLifecycleAndPersistence(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	n, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := n.Put(ctx, []byte("v1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Touch(ctx, tag, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Put(ctx, make([]byte, cfg.MaxValueBytes+1), 0); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("oversized Put: %v", err)
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, err := n.Get(ctx, tag); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Shutdown: %v", err)
	}
	// The same data dir gives the same secret and the same stashes.
	n2, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	v, err := n2.Get(ctx, tag)
	if err != nil || string(v) != "v1" {
		t.Fatalf("after reopen: %q %v", v, err)
	}
	if err := n2.Delete(ctx, tag); err != nil {
		t.Fatal(err)
	}
	if err := n2.Delete(ctx, tag); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestTagsFromAnotherSecretAreForged(t *testing.T) {
	ctx := context.Background()
	a, b := testConfig(t), testConfig(t)
	a.Port, a.AdminPort, b.Port, b.AdminPort = -1, -1, -1, -1
	na, err := Open(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer na.Close()
	nb, err := Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	tag, err := na.Put(ctx, []byte("x"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nb.Get(ctx, tag); !errors.Is(err, ErrForged) || !errors.Is(err, ErrBadTag) {
		t.Fatalf("tag from another node's secret: %v", err)
	}
}

func TestFaultHookShiftsClock(t *testing.T) {
	ctx := context.Background()
	for _, hooks := range []bool{false, true} {
		cfg := testConfig(t)
		cfg.Port = -1
		cfg.FaultHooks = hooks
		n, err := Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		tag, err := n.Put(ctx, []byte("x"), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post("http://"+n.AdminAddr()+"/v1/fault/clock?offset=2h", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		_, getErr := n.Get(ctx, tag)
		if !hooks {
			if resp.StatusCode == 200 || getErr != nil {
				t.Fatalf("hooks off: status %d, get %v", resp.StatusCode, getErr)
			}
			continue
		}
		if resp.StatusCode != 200 || !errors.Is(getErr, ErrNotFound) {
			t.Fatalf("hooks on: status %d, get after +2h: %v", resp.StatusCode, getErr)
		}
		resp, _ = http.Post("http://"+n.AdminAddr()+"/v1/fault/clock?offset=yesterday", "", nil)
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("bad offset: status %d", resp.StatusCode)
		}
	}
}

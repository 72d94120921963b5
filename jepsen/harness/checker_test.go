package harness

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// hist builds histories by hand: each call adds an invoke at time inv and,
// unless typ is "", its completion at time end.
type hist struct {
	ev []Event
	op int
}

func (h *hist) add(client int, f, key, val string, inv, end int64, typ Type, fill func(*Event)) {
	i := Event{Type: Invoke, F: f, Key: key, Value: val, Client: client, Time: inv, Op: h.op}
	if f == "put" {
		i.Key = ""
	}
	h.op++
	h.ev = append(h.ev, i)
	if typ == "" {
		return
	}
	d := i
	d.Type, d.Time = typ, end
	if f == "put" {
		d.Key = key
	}
	if fill != nil {
		fill(&d)
	}
	h.ev = append(h.ev, d)
}

func read(v string) func(*Event) {
	return func(e *Event) {
		if v == "" {
			e.Nil = true
		} else {
			e.Value = v
		}
	}
}

func count(n int64) func(*Event) { return func(e *Event) { e.Count = n } }

func TestStashCheckerCatchesPlantedAnomalies(t *testing.T) {
	cases := []struct {
		name                     string
		build                    func(h *hist)
		lost, stale, resurrected int
	}{
		{"valid", func(h *hist) {
			h.add(0, "put", "t", "a", 0, 10, OK, nil)
			h.add(1, "get", "t", "", 20, 30, OK, read("a"))
			h.add(0, "set", "t", "b", 40, 50, OK, nil)
			h.add(1, "get", "t", "", 45, 55, OK, read("a")) // concurrent with the set: either is fine
			h.add(1, "get", "t", "", 60, 70, OK, read("b"))
			h.add(0, "del", "t", "", 80, 90, OK, count(1))
			h.add(1, "get", "t", "", 100, 110, OK, read(""))
		}, 0, 0, 0},
		{"indeterminate write may appear late", func(h *hist) {
			h.add(0, "put", "t", "a", 0, 10, OK, nil)
			h.add(0, "set", "t", "b", 20, 0, Info, nil)
			h.add(1, "get", "t", "", 100, 110, OK, read("a"))
			h.add(1, "get", "t", "", 200, 210, OK, read("b"))
		}, 0, 0, 0},
		{"failed write never appears", func(h *hist) {
			h.add(0, "put", "t", "a", 0, 10, OK, nil)
			h.add(0, "set", "t", "b", 20, 30, Fail, nil)
			h.add(1, "get", "t", "", 100, 110, OK, read("b"))
		}, 0, 1, 0},
		{"lost write", func(h *hist) {
			h.add(0, "put", "t", "a", 0, 10, OK, nil)
			h.add(1, "get", "t", "", 20, 30, OK, read(""))
		}, 1, 0, 0},
		{"lost update (reads the older value)", func(h *hist) {
			h.add(0, "put", "t", "a", 0, 10, OK, nil)
			h.add(0, "set", "t", "b", 20, 30, OK, nil)
			h.add(1, "get", "t", "", 40, 50, OK, read("a"))
		}, 0, 1, 0},
		{"stale read", func(h *hist) {
			h.add(0, "put", "t", "a", 0, 10, OK, nil)
			h.add(0, "set", "t", "b", 20, 30, OK, nil)
			h.add(1, "get", "t", "", 40, 50, OK, read("b"))
			h.add(0, "set", "t", "c", 60, 70, OK, nil)
			h.add(1, "get", "t", "", 80, 90, OK, read("b"))
		}, 0, 1, 0},
		{"resurrected delete", func(h *hist) {
			h.add(0, "put", "t", "a", 0, 10, OK, nil)
			h.add(0, "del", "t", "", 20, 30, OK, count(1))
			h.add(1, "get", "t", "", 40, 50, OK, read(""))
			h.add(1, "get", "t", "", 60, 70, OK, read("a"))
		}, 0, 0, 1},
		{"delete that found nothing after an acknowledged put", func(h *hist) {
			h.add(0, "put", "t", "a", 0, 10, OK, nil)
			h.add(1, "del", "t", "", 20, 30, OK, count(0))
		}, 1, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := &hist{}
			c.build(h)
			res, n := CheckStash(h.ev)
			if n.Lost != c.lost || n.Stale != c.stale || n.Resurrected != c.resurrected {
				t.Fatalf("counts = %+v, want lost %d stale %d resurrected %d; anomalies %+v", n, c.lost, c.stale, c.resurrected, res.Anomalies)
			}
			if want := c.lost+c.stale+c.resurrected == 0; res.Valid != want {
				t.Fatalf("valid = %v, want %v", res.Valid, want)
			}
		})
	}
}

func TestRegisterCheckerCatchesPlantedAnomalies(t *testing.T) {
	cases := []struct {
		name  string
		build func(h *hist)
		valid bool
	}{
		{"valid with concurrency", func(h *hist) {
			h.add(0, "set", "k", "1", 0, 10, OK, nil)
			h.add(1, "set", "k", "2", 5, 15, OK, nil)
			h.add(2, "get", "k", "", 20, 30, OK, read("1"))
			h.add(0, "del", "k", "", 40, 50, OK, count(1))
			h.add(1, "get", "k", "", 60, 70, OK, read(""))
		}, true},
		{"indeterminate write taking effect late", func(h *hist) {
			h.add(0, "set", "k", "1", 0, 10, OK, nil)
			h.add(1, "set", "k", "2", 15, 0, Info, nil)
			h.add(2, "get", "k", "", 20, 30, OK, read("1"))
			h.add(2, "get", "k", "", 40, 50, OK, read("2"))
		}, true},
		{"indeterminate write never taking effect", func(h *hist) {
			h.add(0, "set", "k", "1", 0, 10, OK, nil)
			h.add(1, "set", "k", "2", 15, 0, Info, nil)
			h.add(2, "get", "k", "", 40, 50, OK, read("1"))
		}, true},
		{"stale read", func(h *hist) {
			h.add(0, "set", "k", "1", 0, 10, OK, nil)
			h.add(0, "set", "k", "2", 20, 30, OK, nil)
			h.add(1, "get", "k", "", 40, 50, OK, read("1"))
		}, false},
		{"flip-flop between reads", func(h *hist) {
			h.add(0, "set", "k", "1", 0, 10, OK, nil)
			h.add(1, "set", "k", "2", 0, 100, OK, nil)
			h.add(2, "get", "k", "", 20, 30, OK, read("2"))
			h.add(2, "get", "k", "", 40, 50, OK, read("1"))
		}, false},
		{"lost write", func(h *hist) {
			h.add(0, "set", "k", "1", 0, 10, OK, nil)
			h.add(1, "get", "k", "", 20, 30, OK, read(""))
		}, false},
		{"delete of a missing key reports 1", func(h *hist) {
			h.add(0, "del", "k", "", 0, 10, OK, count(1))
		}, false},
		{"failed write observed", func(h *hist) {
			h.add(0, "set", "k", "1", 0, 10, Fail, nil)
			h.add(1, "get", "k", "", 20, 30, OK, read("1"))
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := &hist{}
			c.build(h)
			dir := t.TempDir()
			res := CheckRegister(h.ev, dir, 10*time.Second)
			if res.Valid != c.valid {
				t.Fatalf("valid = %v, want %v: %+v", res.Valid, c.valid, res)
			}
			if !c.valid {
				if len(res.Anomalies) == 0 || res.Anomalies[0].File == "" {
					t.Fatalf("no visualisation: %+v", res)
				}
				if _, err := os.Stat(filepath.Join(dir, res.Anomalies[0].File)); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

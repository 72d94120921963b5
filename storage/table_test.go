package storage

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"testing"
	"unsafe"
)

func TestEntrySize(t *testing.T) {
	if got := unsafe.Sizeof(entry{}); got != 48 {
		t.Fatalf("entry is %d bytes, want 48", got)
	}
}

// TestTableModel drives a table and a Go map with the same random
// operations and checks that they agree, over key spaces that make the
// table grow, shrink and wrap its probe runs.
func TestTableModel(t *testing.T) {
	cases := []struct {
		name   string
		keys   int
		ops    int
		delPct int
	}{
		{"tiny", 4, 2000, 50},
		{"grow", 3000, 20000, 10},
		{"churn", 300, 50000, 50},
		{"drain", 2000, 30000, 80},
	}
	seed := maphash.MakeSeed()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(i), 99))
			var tb table
			model := map[string]uint64{}
			for op := range tc.ops {
				k := fmt.Sprintf("key-%d", r.IntN(tc.keys))
				h := maphash.String(seed, k)
				j := tb.find(h, k)
				if _, ok := model[k]; ok != (j >= 0) {
					t.Fatalf("op %d: find(%q) = %d, model has it: %v", op, k, j, ok)
				}
				if r.IntN(100) < tc.delPct {
					if j >= 0 {
						tb.removeAt(seed, j)
						delete(model, k)
					}
				} else {
					v := uint64(op)
					if j >= 0 {
						tb.entries[j].seq = v
					} else {
						tb.insert(seed, h, entry{key: k, seq: v})
					}
					model[k] = v
				}
				if tb.n != len(model) {
					t.Fatalf("op %d: n = %d, model %d", op, tb.n, len(model))
				}
				if c := len(tb.tags); c > 0 && tb.n*maxLoadDen > c*maxLoadNum {
					t.Fatalf("op %d: load %d/%d above maximum", op, tb.n, c)
				}
			}
			for k, v := range model {
				j := tb.find(maphash.String(seed, k), k)
				if j < 0 || tb.entries[j].seq != v {
					t.Fatalf("final: %q missing or wrong", k)
				}
			}
			if len(model) == 0 && tb.tags != nil {
				t.Fatalf("empty table still holds %d buckets", len(tb.tags))
			}
		})
	}
}

func TestBuildTable(t *testing.T) {
	seed := maphash.MakeSeed()
	for _, n := range []int{0, 1, 7, 8, 100, 1000} {
		es := make([]entry, n)
		for i := range es {
			es[i] = makeEntry(fmt.Sprint(i), KindHash, fmt.Sprint("v", i), int64(i), Version{1, uint64(i)})
		}
		tb := buildTable(seed, es)
		if tb.n != n {
			t.Fatalf("n = %d, want %d", tb.n, n)
		}
		for i := range n {
			k := fmt.Sprint(i)
			j := tb.find(maphash.String(seed, k), k)
			if j < 0 {
				t.Fatalf("%q missing", k)
			}
			if st := tb.entries[j].stash(); st.Value != fmt.Sprint("v", i) || st.Kind != KindHash || st.ExpireAt != int64(i) || st.Version.Seq != uint64(i) {
				t.Fatalf("%q = %+v", k, st)
			}
		}
	}
}

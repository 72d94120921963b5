package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestUpdateGetDeleteExpiry(t *testing.T) {
	type step struct {
		do      string        // put, del, keep, get, advance, peek
		key     string        // for all but advance
		val     string        // put: value; get: want value
		ttl     time.Duration // put: expiry from now (0 = never); advance: by how much
		wantOK  bool          // get: present; peek: fn saw ok
		wantOp  Op            // put, del, keep
		expired int64         // get: want Stats.Expired
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"absent", []step{
			{do: "get", key: "a"},
			{do: "peek", key: "a", wantOK: false},
		}},
		{"put get", []step{
			{do: "put", key: "a", val: "1", wantOp: OpPut},
			{do: "get", key: "a", val: "1", wantOK: true},
		}},
		{"overwrite", []step{
			{do: "put", key: "a", val: "1", wantOp: OpPut},
			{do: "put", key: "a", val: "2", wantOp: OpPut},
			{do: "get", key: "a", val: "2", wantOK: true},
		}},
		{"empty value", []step{
			{do: "put", key: "a", val: "", wantOp: OpPut},
			{do: "get", key: "a", val: "", wantOK: true},
		}},
		{"keep changes nothing", []step{
			{do: "put", key: "a", val: "1", wantOp: OpPut},
			{do: "keep", key: "a", wantOp: OpKeep},
			{do: "get", key: "a", val: "1", wantOK: true},
		}},
		{"delete", []step{
			{do: "put", key: "a", val: "1", wantOp: OpPut},
			{do: "del", key: "a", wantOp: OpDelete},
			{do: "get", key: "a"},
		}},
		{"delete absent is keep", []step{
			{do: "del", key: "a", wantOp: OpKeep},
		}},
		{"live until expiry", []step{
			{do: "put", key: "a", val: "1", ttl: time.Second, wantOp: OpPut},
			{do: "advance", ttl: 999 * time.Millisecond},
			{do: "get", key: "a", val: "1", wantOK: true},
			{do: "peek", key: "a", wantOK: true},
		}},
		{"expired at expiry", []step{
			{do: "put", key: "a", val: "1", ttl: time.Second, wantOp: OpPut},
			{do: "advance", ttl: time.Second},
			{do: "get", key: "a"},
			{do: "peek", key: "a", wantOK: false},
		}},
		{"delete expired is keep but counted", []step{
			{do: "put", key: "a", val: "1", ttl: time.Second, wantOp: OpPut},
			{do: "advance", ttl: 2 * time.Second},
			{do: "del", key: "a", wantOp: OpKeep},
			{do: "get", key: "a", expired: 1},
		}},
		{"put over expired", []step{
			{do: "put", key: "a", val: "1", ttl: time.Second, wantOp: OpPut},
			{do: "advance", ttl: 2 * time.Second},
			{do: "put", key: "a", val: "2", wantOp: OpPut},
			{do: "get", key: "a", val: "2", wantOK: true},
		}},
		{"keys are distinct", []step{
			{do: "put", key: "a", val: "1", wantOp: OpPut},
			{do: "put", key: "b", val: "2", wantOp: OpPut},
			{do: "del", key: "a", wantOp: OpDelete},
			{do: "get", key: "a"},
			{do: "get", key: "b", val: "2", wantOK: true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			s := openStore(t, Config{Now: clock.Now, ReapInterval: time.Hour})
			ctx := context.Background()
			for i, st := range tc.steps {
				var op Op
				var err error
				switch st.do {
				case "put":
					exp := int64(0)
					if st.ttl != 0 {
						exp = clock.NowMs() + st.ttl.Milliseconds()
					}
					op, err = s.Update(ctx, 7, st.key, func(Stash, bool) (Stash, Op) {
						return Stash{Value: st.val, ExpireAt: exp}, OpPut
					})
				case "del":
					op, err = s.Update(ctx, 7, st.key, func(Stash, bool) (Stash, Op) { return Stash{}, OpDelete })
				case "keep":
					op, err = s.Update(ctx, 7, st.key, func(Stash, bool) (Stash, Op) { return Stash{Value: "ignored"}, OpKeep })
				case "advance":
					clock.Advance(st.ttl)
					continue
				case "peek":
					var sawOK bool
					op, err = s.Update(ctx, 7, st.key, func(_ Stash, ok bool) (Stash, Op) { sawOK = ok; return Stash{}, OpKeep })
					if sawOK != st.wantOK {
						t.Fatalf("step %d: fn saw ok=%v, want %v", i, sawOK, st.wantOK)
					}
				case "get":
					got, ok := s.Get(7, st.key)
					if ok != st.wantOK || (ok && got.Value != st.val) {
						t.Fatalf("step %d: Get(%q) = %q, %v; want %q, %v", i, st.key, got.Value, ok, st.val, st.wantOK)
					}
					if ok && (got.Key != st.key || got.Kind != KindString) {
						t.Fatalf("step %d: Get(%q) = %+v", i, st.key, got)
					}
					if e := s.Stats().Expired; e != st.expired {
						t.Fatalf("step %d: Stats.Expired = %d, want %d", i, e, st.expired)
					}
					continue
				}
				if err != nil || op != st.wantOp {
					t.Fatalf("step %d (%s %q): op %v err %v; want op %v", i, st.do, st.key, op, err, st.wantOp)
				}
			}
		})
	}
}

func TestUpdateVersionsAndValidation(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	putV := func(slot uint16, key string, v Version) Stash {
		t.Helper()
		if _, err := s.Update(ctx, slot, key, func(Stash, bool) (Stash, Op) {
			return Stash{Key: "ignored", Value: "v", Version: v}, OpPut
		}); err != nil {
			t.Fatal(err)
		}
		return mustGet(t, s, slot, key)
	}
	steps := []struct {
		slot  uint16
		key   string
		give  Version
		epoch uint32 // SetEpoch before, when non-zero
		want  Version
	}{
		{slot: 1, key: "a", want: Version{1, 1}},
		{slot: 1, key: "a", want: Version{1, 2}},
		{slot: 1, key: "b", want: Version{1, 3}},
		{slot: 2, key: "a", want: Version{1, 1}},
		{slot: 1, key: "c", epoch: 5, want: Version{5, 4}},
		{slot: 1, key: "d", give: Version{9, 100}, want: Version{9, 100}},
		{slot: 1, key: "e", want: Version{5, 101}},
		{slot: 1, key: "f", give: Version{9, 50}, want: Version{9, 50}},
		{slot: 1, key: "g", want: Version{5, 102}},
	}
	for i, st := range steps {
		if st.epoch != 0 {
			s.SetEpoch(st.epoch)
		}
		got := putV(st.slot, st.key, st.give)
		if got.Version != st.want || got.Key != st.key || got.Kind != KindString {
			t.Fatalf("step %d: got %+v, want version %v key %q", i, got, st.want, st.key)
		}
	}

	errCases := []struct {
		name string
		slot uint16
		key  string
		next Stash
		op   Op
		want error
	}{
		{"bad slot", Slots, "k", Stash{}, OpPut, ErrBadSlot},
		{"bad kind", 1, "k", Stash{Kind: 9}, OpPut, ErrInvalid},
		{"bad op", 1, "k", Stash{}, Op(7), ErrInvalid},
		{"key too large", 1, strings.Repeat("k", MaxKeyLen+1), Stash{}, OpPut, ErrTooLarge},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			op, err := s.Update(ctx, tc.slot, tc.key, func(Stash, bool) (Stash, Op) { return tc.next, tc.op })
			if !errors.Is(err, tc.want) || op != OpKeep {
				t.Fatalf("got op %v err %v, want %v", op, err, tc.want)
			}
			if _, ok := s.Get(1, tc.key); ok {
				t.Fatalf("key stored despite error")
			}
		})
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Update(cctx, 1, "z", func(Stash, bool) (Stash, Op) { return Stash{}, OpPut }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: err %v", err)
	}
	if _, ok := s.Get(1, "z"); ok {
		t.Fatalf("write applied under a cancelled ctx")
	}
}

func TestApplyNewerWins(t *testing.T) {
	v := func(e uint32, s uint64) Version { return Version{e, s} }
	cases := []struct {
		name    string
		held    *Version // nil: key absent
		give    Version
		del     bool
		applied bool
		want    *Version // nil: absent afterwards
	}{
		{"absent put", nil, v(1, 1), false, true, &Version{1, 1}},
		{"absent delete", nil, v(1, 1), true, true, nil},
		{"newer seq put", &Version{1, 5}, v(1, 6), false, true, &Version{1, 6}},
		{"newer epoch put", &Version{1, 5}, v(2, 1), false, true, &Version{2, 1}},
		{"equal put", &Version{1, 5}, v(1, 5), false, false, &Version{1, 5}},
		{"older seq put", &Version{1, 5}, v(1, 4), false, false, &Version{1, 5}},
		{"older epoch put", &Version{2, 1}, v(1, 9), false, false, &Version{2, 1}},
		{"newer delete", &Version{1, 5}, v(1, 6), true, true, nil},
		{"older delete", &Version{1, 5}, v(1, 4), true, false, &Version{1, 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, Config{})
			ctx := context.Background()
			if tc.held != nil {
				if ok, err := s.Apply(ctx, 3, Stash{Key: "k", Value: "held", Version: *tc.held}, false); !ok || err != nil {
					t.Fatalf("seed: %v %v", ok, err)
				}
			}
			ok, err := s.Apply(ctx, 3, Stash{Key: "k", Value: "new", Version: tc.give}, tc.del)
			if err != nil || ok != tc.applied {
				t.Fatalf("Apply = %v, %v; want %v", ok, err, tc.applied)
			}
			got, present := s.Get(3, "k")
			switch {
			case tc.want == nil && present:
				t.Fatalf("key present: %+v", got)
			case tc.want != nil && (!present || got.Version != *tc.want):
				t.Fatalf("got %+v present=%v, want version %v", got, present, *tc.want)
			}
			// Update continues after the highest sequence seen.
			put(t, s, 3, "other", "x", 0)
			floor := seqOf(tc.held)
			if tc.applied {
				floor = max(floor, tc.give.Seq)
			}
			if got := mustGet(t, s, 3, "other").Version.Seq; got <= floor {
				t.Fatalf("next assigned seq %d, not above %d", got, floor)
			}
		})
	}
}

func seqOf(v *Version) uint64 {
	if v == nil {
		return 0
	}
	return v.Seq
}

func TestScanCompleteness(t *testing.T) {
	s := openStore(t, Config{})
	stable := map[string]bool{}
	for i := range 3000 {
		k := fmt.Sprintf("stable-%d", i)
		stable[k] = true
		put(t, s, uint16(i*7919%Slots), k, "v", 0)
	}
	// Churn other keys in every slot while scanning.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for ctx.Err() == nil {
			slot := uint16(r.IntN(Slots))
			k := fmt.Sprintf("churn-%d", r.IntN(500))
			if r.IntN(2) == 0 {
				put(t, s, slot, k, "c", 0)
			} else {
				s.Update(ctx, slot, k, func(Stash, bool) (Stash, Op) { return Stash{}, OpDelete })
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	for _, count := range []int{0, 1, 10, 1000, 100000} {
		seen := map[string]int{}
		calls := 0
		cursor := uint64(0)
		for {
			before := len(seen)
			cursor = s.Scan(cursor, count, func(k string) { seen[k]++ })
			calls++
			if cursor == 0 {
				break
			}
			if count > 0 && len(seen)-before == 0 && calls > Slots {
				t.Fatalf("count %d: scan makes no progress", count)
			}
		}
		for k := range stable {
			if seen[k] == 0 {
				t.Fatalf("count %d: stable key %q not returned", count, k)
			}
		}
		if count == 100000 && calls != 1 {
			t.Fatalf("count %d: %d calls, want 1", count, calls)
		}
	}
	if got := s.Scan(Slots, 10, func(string) { t.Fatal("called") }); got != 0 {
		t.Fatalf("Scan(Slots) = %d", got)
	}
}

func TestScanSkipsExpiredAndStopsAtCount(t *testing.T) {
	clock := newFakeClock()
	s := openStore(t, Config{Now: clock.Now, ReapInterval: time.Hour})
	put(t, s, 0, "a", "v", 0)
	put(t, s, 0, "b", "v", clock.NowMs()+10)
	put(t, s, 5, "c", "v", 0)
	clock.Advance(time.Second)
	var got []string
	next := s.Scan(0, 1, func(k string) { got = append(got, k) })
	if next != 1 || len(got) != 1 || got[0] != "a" {
		t.Fatalf("Scan = %d, %v", next, got)
	}
	next = s.Scan(next, 1, func(k string) { got = append(got, k) })
	if next != 6 || len(got) != 2 || got[1] != "c" {
		t.Fatalf("Scan = %d, %v", next, got)
	}
	if next = s.Scan(next, 1, func(k string) { got = append(got, k) }); next != 0 || len(got) != 2 {
		t.Fatalf("Scan = %d, %v", next, got)
	}
	var ss []string
	s.ScanSlot(0, func(st Stash) bool { ss = append(ss, st.Key); return true })
	if len(ss) != 1 || ss[0] != "a" {
		t.Fatalf("ScanSlot skipped nothing: %v", ss)
	}
}

func TestScanSlot(t *testing.T) {
	s := openStore(t, Config{})
	want := map[string]string{}
	for i := range 200 {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		want[k] = v
		put(t, s, 42, k, v, 0)
	}
	put(t, s, 43, "elsewhere", "x", 0)
	got := map[string]string{}
	s.ScanSlot(42, func(st Stash) bool {
		got[st.Key] = st.Value
		// The callback may call the store: no lock is held.
		put(t, s, 42, "added-"+st.Key, "x", 0)
		return true
	})
	if len(got) != len(want) {
		t.Fatalf("ScanSlot visited %d, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%q = %q, want %q", k, got[k], v)
		}
	}
	n := 0
	s.ScanSlot(42, func(Stash) bool { n++; return n < 5 })
	if n != 5 {
		t.Fatalf("ScanSlot did not stop: %d", n)
	}
	if c := s.SlotCount(42); c != 400 {
		t.Fatalf("SlotCount = %d", c)
	}
}

func TestDigest(t *testing.T) {
	type kv struct {
		key string
		ver Version
		exp int64
	}
	base := []kv{{"a", Version{1, 1}, 0}, {"b", Version{1, 2}, 5e12}, {"c", Version{2, 3}, 0}}
	with := func(f func([]kv) []kv) []kv { return f(append([]kv(nil), base...)) }
	cases := []struct {
		name  string
		other []kv
		equal bool
	}{
		{"same", base, true},
		{"reordered", []kv{base[2], base[0], base[1]}, true},
		{"missing entry", base[:2], false},
		{"extra entry", append(append([]kv(nil), base...), kv{"d", Version{1, 4}, 0}), false},
		{"other version", with(func(k []kv) []kv { k[0].ver.Seq = 9; return k }), false},
		{"other epoch", with(func(k []kv) []kv { k[2].ver.Epoch = 1; return k }), false},
		{"other expiry", with(func(k []kv) []kv { k[1].exp++; return k }), false},
		{"other key", with(func(k []kv) []kv { k[0].key = "z"; return k }), false},
	}
	fill := func(t *testing.T, kvs []kv) *Store {
		s := openStore(t, Config{})
		for _, e := range kvs {
			if _, err := s.Apply(context.Background(), 9, Stash{Key: e.key, Value: "value " + e.key, Version: e.ver, ExpireAt: e.exp}, false); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	a := fill(t, base)
	if d := a.Digest(10); d != 0 {
		t.Fatalf("empty slot digest %x", d)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := fill(t, tc.other)
			if eq := a.Digest(9) == b.Digest(9); eq != tc.equal {
				t.Fatalf("digests %x %x: equal=%v, want %v", a.Digest(9), b.Digest(9), eq, tc.equal)
			}
		})
	}
}

// TestDigestExpiredAsTombstone checks that an expired stash digests as the
// tombstone the reaper turns it into, so replicas agree whether or not
// their reapers have run, and as nothing once that tombstone is due.
func TestDigestExpiredAsTombstone(t *testing.T) {
	clock := newFakeClock()
	cfg := Config{Now: clock.Now, ReapInterval: time.Hour, TombstoneTTL: time.Minute}
	a, b, c := openStore(t, cfg), openStore(t, cfg), openStore(t, cfg)
	ctx := context.Background()
	put(t, a, 1, "k", "v", 0)
	gone := Stash{Key: "gone", Value: "v", ExpireAt: clock.NowMs() + 10, Version: Version{1, 7}}
	for _, s := range []*Store{a, b, c} {
		if s != a {
			s.Apply(ctx, 1, mustGet(t, a, 1, "k"), false)
		}
		s.Apply(ctx, 1, gone, false)
	}
	clock.Advance(time.Second)
	b.reapPass(0, reapBudget, nil) // b turned "gone" into a tombstone; a did not
	if st := b.Stats(); st.Tombstones != 1 {
		t.Fatalf("b: %+v", st)
	}
	if a.Digest(1) != b.Digest(1) {
		t.Fatal("an expired stash and the tombstone it leaves digest differently")
	}
	c.Apply(ctx, 1, Stash{Key: "gone", Version: Version{1, 7}}, true) // c: a tombstone from a delete
	if a.Digest(1) != c.Digest(1) {
		t.Fatal("an expired stash and a delete's tombstone at its version digest differently")
	}
	without := openStore(t, cfg)
	without.Apply(ctx, 1, mustGet(t, a, 1, "k"), false)
	if a.Digest(1) == without.Digest(1) {
		t.Fatal("a tombstone left no trace in the digest")
	}
	clock.Advance(time.Minute) // every tombstone of "gone" is due
	if a.Digest(1) != without.Digest(1) || b.Digest(1) != without.Digest(1) {
		t.Fatal("a due tombstone still counted in the digest")
	}
}

func TestDropSlotAndFlushAllMemory(t *testing.T) {
	s := openStore(t, Config{})
	for i := range 100 {
		put(t, s, uint16(i%4), fmt.Sprint(i), "v", 0)
	}
	ctx := context.Background()
	if err := s.DropSlot(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n := s.SlotCount(2); n != 0 {
		t.Fatalf("SlotCount after drop = %d", n)
	}
	if n := s.SlotCount(1); n != 25 {
		t.Fatalf("other slot = %d", n)
	}
	if st := s.Stats(); st.Stashes != 75 {
		t.Fatalf("Stats.Stashes = %d", st.Stashes)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Stashes != 0 || st.Bytes != 0 {
		t.Fatalf("after FlushAll: %+v", st)
	}
	if err := s.DropSlot(ctx, Slots); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("DropSlot(Slots) = %v", err)
	}
}

func TestStatsBytes(t *testing.T) {
	s := openStore(t, Config{})
	put(t, s, 1, "ab", "xyz", 0)
	put(t, s, 1, "c", "12345", 0)
	put(t, s, 1, "ab", "x", 0)
	if st := s.Stats(); st.Stashes != 2 || st.Bytes != 3+6 {
		t.Fatalf("Stats = %+v", st)
	}
	del(t, s, 1, "c")
	if st := s.Stats(); st.Stashes != 1 || st.Bytes != 3 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestReaperMemory(t *testing.T) {
	clock := newFakeClock()
	s := openStore(t, Config{Now: clock.Now, ReapInterval: time.Millisecond})
	now := clock.NowMs()
	for i := range 1000 {
		exp := int64(0)
		if i%2 == 0 {
			exp = now + int64(1+i%10)*1000
		}
		put(t, s, uint16(i%50), fmt.Sprint(i), "v", exp)
	}
	clock.Advance(5 * time.Second) // expires i%10 in {0,2,4}: 300 keys
	waitFor(t, "reaper", func() bool { return s.Stats().Expired == 300 })
	if st := s.Stats(); st.Stashes != 700 {
		t.Fatalf("Stats = %+v", st)
	}
	clock.Advance(time.Hour)
	waitFor(t, "reaper", func() bool { return s.Stats().Stashes == 500 })
	for i := 1; i < 1000; i += 2 {
		mustGet(t, s, uint16(i%50), fmt.Sprint(i))
	}
}

func TestReapPassBudget(t *testing.T) {
	clock := newFakeClock()
	s := openStore(t, Config{Now: clock.Now, ReapInterval: time.Hour})
	for i := range 400 {
		put(t, s, uint16(i%4), fmt.Sprint(i), "v", clock.NowMs()+1)
	}
	clock.Advance(time.Second)
	cursor, more, _ := s.reapPass(0, 150, nil)
	if !more || cursor != 2 || s.Stats().Expired != 200 {
		t.Fatalf("pass 1: cursor %d more %v expired %d", cursor, more, s.Stats().Expired)
	}
	cursor, more, _ = s.reapPass(cursor, 1000, nil)
	if more || s.Stats().Expired != 400 {
		t.Fatalf("pass 2: cursor %d more %v expired %d", cursor, more, s.Stats().Expired)
	}
	// Nothing is due: no slot is examined.
	put(t, s, 9, "later", "v", clock.NowMs()+1000)
	if n, _ := s.reapSlot(9, clock.NowMs(), nil); n != 0 {
		t.Fatalf("reapSlot examined %d entries of a slot not due", n)
	}
}

func TestClosed(t *testing.T) {
	for _, dir := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", dir), func(t *testing.T) {
			cfg := Config{}
			if dir {
				cfg.Dir = t.TempDir()
			}
			s, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			put(t, s, 1, "k", "v", 0)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			ctx := context.Background()
			if _, ok := s.Get(1, "k"); ok {
				t.Fatal("Get after Close")
			}
			if _, err := s.Update(ctx, 1, "k", func(Stash, bool) (Stash, Op) { return Stash{}, OpPut }); !errors.Is(err, ErrClosed) {
				t.Fatalf("Update: %v", err)
			}
			if _, err := s.Apply(ctx, 1, Stash{Key: "k"}, false); !errors.Is(err, ErrClosed) {
				t.Fatalf("Apply: %v", err)
			}
			for name, err := range map[string]error{
				"Sync": s.Sync(ctx), "DropSlot": s.DropSlot(ctx, 1), "FlushAll": s.FlushAll(ctx),
			} {
				if !errors.Is(err, ErrClosed) {
					t.Fatalf("%s: %v", name, err)
				}
			}
			if s.Scan(0, 10, func(string) { t.Fatal("Scan after Close") }) != 0 {
				t.Fatal("Scan cursor after Close")
			}
			s.ScanSlot(1, func(Stash) bool { t.Fatal("ScanSlot after Close"); return false })
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		fields []string
	}{
		{"zero", Config{}, nil},
		{"defaults", DefaultConfig(), nil},
		{"all bad", Config{Fsync: 7, BatchInterval: -1, ReapInterval: -1, CheckpointBytes: -1, CheckpointInterval: -1, MmapSize: -1, LockTimeout: -1, TombstoneTTL: -1},
			[]string{"Fsync", "BatchInterval", "ReapInterval", "CheckpointBytes", "CheckpointInterval", "MmapSize", "LockTimeout", "TombstoneTTL"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err != nil) != (len(tc.fields) > 0) {
				t.Fatalf("Validate = %v", err)
			}
			for _, f := range tc.fields {
				if !strings.Contains(err.Error(), f+":") {
					t.Fatalf("error %q does not name %s", err, f)
				}
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("not ErrInvalid: %v", err)
			}
		})
	}
	if _, err := Open(Config{Fsync: 9}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Open with bad config: %v", err)
	}
}

func TestConcurrentUpdatesSameKey(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir(), Fsync: FsyncBatch})
	const workers, n = 8, 200
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				_, err := s.Update(context.Background(), 5, "counter", func(cur Stash, ok bool) (Stash, Op) {
					c := 0
					if ok {
						fmt.Sscan(cur.Value, &c)
					}
					return Stash{Value: fmt.Sprint(c + 1)}, OpPut
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := mustGet(t, s, 5, "counter")
	if st.Value != fmt.Sprint(workers*n) || st.Version.Seq != workers*n {
		t.Fatalf("counter = %+v", st)
	}
}

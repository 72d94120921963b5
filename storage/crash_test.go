package storage

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a child that writes under
// FsyncAlways and prints a line for every acknowledged write, with the
// version Change returned; the parent kills it with SIGKILL at a random
// moment, reopens the store and checks that every acknowledged write is
// there, whole, and no acknowledged delete is undone: the key holds a
// later write, or a tombstone at least as new as the delete's, which
// refuses a put of the delete's version (a stale replica's copy). The child checkpoints all the time (tiny
// CheckpointBytes and CheckpointInterval), so kills land before, during
// and after checkpoints, and each reopen replays a log over a file that a
// checkpoint may have left half-written.

const (
	crashDirEnv   = "STASH_STORAGE_CRASH_DIR"
	crashRoundEnv = "STASH_STORAGE_CRASH_ROUND"
	crashWriters  = 8
	crashKeys     = 40 // per writer
)

// crashValue is the value written for (key, n): a header naming both and a
// deterministic filler of 0–12 KiB, so a torn or misplaced value is seen.
func crashValue(key string, n int) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", key, n)
	sum := h.Sum64()
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%d|", key, n)
	size := int(sum % (12 << 10))
	for i := 0; b.Len() < size; i++ {
		b.WriteByte(byte('a' + (sum>>(i%57))%26))
	}
	return b.String()
}

// parseCrashValue returns the n a value was written for, checking that the
// value is exactly crashValue(key, n).
func parseCrashValue(key, v string) (int, error) {
	rest, ok := strings.CutPrefix(v, key+"|")
	if !ok {
		return 0, fmt.Errorf("value of %q has a wrong header: %.40q", key, v)
	}
	ns, _, ok := strings.Cut(rest, "|")
	n, err := strconv.Atoi(ns)
	if !ok || err != nil {
		return 0, fmt.Errorf("value of %q has a bad counter: %.40q", key, v)
	}
	if v != crashValue(key, n) {
		return 0, fmt.Errorf("value of %q for write %d is torn (%d bytes)", key, n, len(v))
	}
	return n, nil
}

func crashKey(w, i int) string { return fmt.Sprintf("w%d-k%d", w, i) }
func crashSlot(key string) uint16 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return uint16(h.Sum32() % Slots)
}

// crashConfig is the child's Config in round: checkpoints every few writes
// or every few milliseconds.
func crashConfig(dir string, round int) Config {
	return Config{Dir: dir, Fsync: FsyncAlways,
		CheckpointBytes:    []int64{8 << 10, 64 << 10, 512 << 10}[round%3],
		CheckpointInterval: 2 * time.Millisecond}
}

// runCrashChild writes forever; it never returns normally.
func runCrashChild(dir string, round int) {
	s, err := Open(crashConfig(dir, round))
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	var mu sync.Mutex // serialises lines on stdout
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format, args...)
	}
	say("ready\n")
	go func() { // report checkpoints, so the parent can tell kills landed among them
		for last := int64(-1); ; time.Sleep(time.Millisecond) {
			if n := s.Stats().Checkpoints; n != last {
				say("ckpt - %d\n", n)
				last = n
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			r := rand.New(rand.NewPCG(uint64(w), uint64(round)))
			for n := round * 1_000_000; ; n++ {
				key := crashKey(w, r.IntN(crashKeys))
				if r.IntN(8) == 0 {
					say("try %s %d\n", key, n) // the delete may be durable before it is acknowledged
					op, st, err := s.Change(ctx, crashSlot(key), key, func(Stash, bool) (Stash, Op) { return Stash{}, OpDelete })
					if err != nil {
						say("error %v\n", err)
						return
					}
					if op == OpDelete {
						say("del %s %d %d\n", key, n, st.Version.Seq)
					}
					continue
				}
				v := crashValue(key, n)
				_, st, err := s.Change(ctx, crashSlot(key), key, func(Stash, bool) (Stash, Op) {
					return Stash{Value: v}, OpPut
				})
				if err != nil {
					say("error %v\n", err)
					return
				}
				say("put %s %d %d\n", key, n, st.Version.Seq)
			}
		}()
	}
	wg.Wait()
	os.Exit(3)
}

// ack is the last acknowledged operation on a key.
type ack struct {
	del bool
	n   int
	seq uint64 // of the version Change returned (epoch 1)
}

func TestCrashKill9(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
		runCrashChild(dir, round)
		return
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	acked := map[string]ack{}
	tried := map[string]int{}
	rounds := 10
	if raceEnabled {
		rounds = 5
	}
	var ckpts, tombs int
	for round := 1; round <= rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKill9$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewReader(out)
		if l, err := lines.ReadString('\n'); err != nil || l != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: child did not start: %q %v", round, l, err)
		}
		killAt := 1 + r.IntN(600) // acknowledgements to read before the kill
		reached := make(chan struct{})
		type result struct {
			acks  map[string]ack
			tries map[string]int // highest attempted delete per key
			n     int
			ckpts int // checkpoints the child reported
			err   error
		}
		done := make(chan result, 1)
		go func() { // read acknowledgements until the pipe closes
			res := result{acks: map[string]ack{}, tries: map[string]int{}}
			for {
				l, err := lines.ReadString('\n')
				if err == io.EOF {
					break // a partial last line was never acknowledged
				}
				if err != nil {
					res.err = err
					break
				}
				f := strings.Fields(l)
				var n int
				var seq uint64
				err = fmt.Errorf("child said %q", l)
				if len(f) >= 3 {
					n, err = strconv.Atoi(f[2])
				}
				if err == nil && len(f) == 4 {
					seq, err = strconv.ParseUint(f[3], 10, 64)
				}
				op, key := "", ""
				if err == nil {
					op, key = f[0], f[1]
					switch {
					case (op == "put" || op == "del") && len(f) == 4, (op == "try" || op == "ckpt") && len(f) == 3:
					default:
						err = fmt.Errorf("child said %q", l)
					}
				}
				if err != nil {
					res.err = err
					break
				}
				if op == "ckpt" {
					res.ckpts = n
					continue
				}
				if op == "try" {
					res.tries[key] = n
					continue
				}
				res.acks[key] = ack{del: op == "del", n: n, seq: seq}
				if res.n++; res.n == killAt {
					close(reached)
				}
			}
			done <- res
		}()
		var res result
		select {
		case <-reached:
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			res = <-done
		case res = <-done: // the child died by itself
			if res.err == nil {
				res.err = fmt.Errorf("child exited after %d acknowledgements", res.n)
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			res = <-done
			res.err = fmt.Errorf("only %d acknowledgements in a minute", res.n)
		}
		cmd.Wait()
		if res.err != nil {
			t.Fatalf("round %d: %v", round, res.err)
		}
		for k, a := range res.acks {
			acked[k] = a
		}
		for k, n := range res.tries {
			tried[k] = n
		}
		ckpts += res.ckpts
		t.Logf("round %d: killed after %d acknowledged writes (%d read in all) and %d checkpoints", round, killAt, res.n, res.ckpts)

		s, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		st := s.Stats()
		if st.Corrupt != 0 {
			t.Errorf("round %d: %d corrupt records", round, st.Corrupt)
		}
		t.Logf("round %d: reopened: %d stashes, %d tombstones, %d log records replayed, %d torn bytes cut, in %v",
			round, st.Stashes, st.Tombstones, st.Replayed, st.WALDiscarded, st.LoadedIn)
		tombs += int(st.Tombstones)
		for w := range crashWriters {
			for i := range crashKeys {
				key := crashKey(w, i)
				st, ok := s.Get(crashSlot(key), key)
				n := -1
				if ok {
					if n, err = parseCrashValue(key, st.Value); err != nil {
						t.Errorf("round %d: %v", round, err)
						continue
					}
				}
				a, wasAcked := acked[key]
				switch {
				case !wasAcked:
				case a.del && ok && n <= a.n:
					t.Errorf("round %d: %q deleted at %d (acknowledged) but holds write %d", round, key, a.n, n)
				case a.del && !ok:
					held, _ := s.Lookup(crashSlot(key), key)
					if !held.Deleted || held.Version.Seq < a.seq {
						t.Errorf("round %d: %q deleted at %d with seq %d (acknowledged) holds %+v, not its tombstone", round, key, a.n, a.seq, held)
						continue
					}
					stale := Stash{Key: key, Value: "stale", Version: Version{Epoch: 1, Seq: a.seq}}
					if applied, err := s.Apply(context.Background(), crashSlot(key), stale, false); applied || err != nil {
						t.Errorf("round %d: %q: a put of its delete's version was applied over the tombstone (%v)", round, key, err)
					}
				case !a.del && !ok && tried[key] > a.n:
					// deleted by a later write that was not acknowledged yet
				case !a.del && (!ok || n < a.n):
					t.Errorf("round %d: %q acknowledged write %d, holds %d (present %v)", round, key, a.n, n, ok)
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			return
		}
	}
	if ckpts == 0 {
		t.Fatal("the child never checkpointed")
	}
	if tombs == 0 {
		t.Fatal("no tombstone survived a kill")
	}
}

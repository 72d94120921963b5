package storage

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// envInt reads a positive integer from the environment, or returns def.
func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func benchKey(i int) string  { return "session:" + strconv.Itoa(i) }
func benchSlot(i int) uint16 { return uint16(uint(i) * 7919 % Slots) }
func benchValue(r *rand.Rand, size int) string {
	b := make([]byte, size)
	for i := 0; i < size; i += 8 {
		x := r.Uint64()
		for j := i; j < i+8 && j < size; j++ {
			b[j] = byte(x)
			x >>= 8
		}
	}
	return string(b)
}

// populate writes n stashes of size-byte values into dir through a Store
// (so the file has the layout real writes give it) and closes it.
func populate(b *testing.B, dir string, n, size int) {
	b.Helper()
	start := time.Now()
	s, err := Open(Config{Dir: dir, Fsync: FsyncNever})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	val := benchValue(r, size)
	ctx := context.Background()
	for i := range n {
		// Values share one string here: only the file matters.
		if _, err := s.Apply(ctx, benchSlot(i), Stash{Key: benchKey(i), Value: val, Version: Version{1, uint64(i + 1)}}, false); err != nil {
			b.Fatal(err)
		}
		if i%100_000 == 99_999 {
			if err := s.Sync(ctx); err != nil { // bound the batch size
				b.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	// Flush the file now, so that no timed Open pays for it.
	f, err := os.Open(filepath.Join(dir, FileName))
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	fi, _ := os.Stat(filepath.Join(dir, FileName))
	b.Logf("populated %d × %d B in %v; file %d MiB", n, size, time.Since(start).Round(time.Millisecond), fi.Size()>>20)
}

// BenchmarkReload measures Open of a directory holding N stashes of 1 KiB
// (N = $STASH_BENCH_RELOAD_N, default 1,000,000): from disk to serving.
//
//   - shutdown=clean reopens after Close, which checkpointed everything
//     into stash.db and left no log.
//   - shutdown=kill9/log=default reopens what a process killed with
//     SIGKILL right after writing the N stashes (FsyncBatch, default
//     checkpoint thresholds) left: stash.db as its last checkpoint (or one
//     half-written) left it, and the log written since, which Open replays.
//   - shutdown=kill9/log=limit is the worst case the default log limit
//     allows: the N stashes in stash.db (closed cleanly), then 2 ×
//     CheckpointBytes (256 MiB) of overwrites in the log, then SIGKILL.
//   - shutdown=kill9/log=all is the same with checkpoints held off, so that
//     all N stashes are in the log and none in stash.db: replay alone, as
//     after checkpoints failed for a long time.
//
// The files are in the page cache, having just been written. Before each
// Open the crash image is restored and the heap returned to the OS, so
// that Open faults in fresh memory as a restarted process would.
func BenchmarkReload(b *testing.B) {
	n := envInt(b, "STASH_BENCH_RELOAD_N", 1_000_000)
	type tc struct {
		name  string
		image string // directory to copy before each Open; "" opens dir itself
		dir   string
	}
	var cases []tc
	dir := b.TempDir()
	populate(b, dir, n, 1024)
	cases = append(cases, tc{name: "shutdown=clean", dir: dir})
	for _, mode := range []string{"default", "limit", "all"} {
		img := b.TempDir()
		killedWriter(b, img, n, 1024, mode)
		cases = append(cases, tc{name: "shutdown=kill9/log=" + mode, image: img, dir: b.TempDir()})
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var total time.Duration
			var st Stats
			for range b.N {
				b.StopTimer()
				if c.image != "" {
					copyTree(b, c.image, c.dir)
				}
				runtime.GC()
				debug.FreeOSMemory()
				b.StartTimer()
				start := time.Now()
				s, err := Open(Config{Dir: c.dir})
				d := time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if st = s.Stats(); st.Loaded != int64(n) {
					b.Fatalf("loaded %d of %d", st.Loaded, n)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				total += d
				b.StartTimer()
			}
			avg := total / time.Duration(b.N)
			b.ReportMetric(float64(n)/avg.Seconds(), "stashes/s")
			b.ReportMetric(avg.Seconds(), "s/reload")
			b.ReportMetric(float64(st.Replayed), "log-records")
		})
	}
}

const (
	killedDirEnv  = "STASH_STORAGE_KILLED_DIR"
	killedNEnv    = "STASH_STORAGE_KILLED_N"
	killedModeEnv = "STASH_STORAGE_KILLED_MODE"
)

// killedWriter runs a child process that writes n stashes of size bytes
// into dir, syncs and waits to be killed with SIGKILL. mode is "default"
// (default Config), "limit" (n stashes closed cleanly, then a full log
// limit of overwrites) or "all" (no checkpoint at all).
func killedWriter(b *testing.B, dir string, n, size int, mode string) {
	b.Helper()
	start := time.Now()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killedDirEnv+"="+dir, killedNEnv+"="+strconv.Itoa(n), killedModeEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	l, err := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	if !strings.HasPrefix(l, "done") {
		b.Fatalf("child: %q %v", l, err)
	}
	b.Logf("killed writer of %d × %d B after %v (mode %s): %s", n, size, time.Since(start).Round(time.Millisecond), mode, strings.TrimSpace(l))
}

// TestKilledWriterChild is killedWriter's child; it does nothing in a test run.
func TestKilledWriterChild(t *testing.T) {
	dir := os.Getenv(killedDirEnv)
	if dir == "" {
		t.Skip("child of BenchmarkReload")
	}
	n, _ := strconv.Atoi(os.Getenv(killedNEnv))
	mode := os.Getenv(killedModeEnv)
	cfg := Config{Dir: dir, Fsync: FsyncBatch}
	noCkpt := cfg
	noCkpt.CheckpointBytes, noCkpt.CheckpointInterval = 1<<50, time.Hour
	if mode == "all" {
		cfg = noCkpt
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	val := benchValue(rand.New(rand.NewPCG(1, 1)), 1024)
	ctx := context.Background()
	for i := range n {
		if _, err := s.Apply(ctx, benchSlot(i), Stash{Key: benchKey(i), Value: val, Version: Version{1, uint64(i + 1)}}, false); err != nil {
			t.Fatal(err)
		}
	}
	if mode == "limit" {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = Open(noCkpt); err != nil {
			t.Fatal(err)
		}
		limit := walCapFactor * DefaultConfig().CheckpointBytes
		for i := 0; s.Stats().WALBytes < limit; i++ {
			if _, err := s.Apply(ctx, benchSlot(i), Stash{Key: benchKey(i), Value: val, Version: Version{2, uint64(i + 1)}}, false); err != nil {
				t.Fatal(err)
			}
			if i%10_000 == 0 {
				s.Sync(ctx) // let WALBytes catch up
			}
		}
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	fmt.Printf("done: log %d MiB, %d checkpoints\n", st.WALBytes>>20, st.Checkpoints)
	time.Sleep(time.Hour) // until killed
}

// copyTree replaces dst with a copy of the regular files of src and of
// its subdirectories, one level deep.
func copyTree(b *testing.B, src, dst string) {
	b.Helper()
	if err := os.RemoveAll(dst); err != nil {
		b.Fatal(err)
	}
	var walk func(src, dst string)
	walk = func(src, dst string) {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		des, err := os.ReadDir(src)
		if err != nil {
			b.Fatal(err)
		}
		for _, de := range des {
			from, to := filepath.Join(src, de.Name()), filepath.Join(dst, de.Name())
			if de.IsDir() {
				walk(from, to)
				continue
			}
			r, err := os.Open(from)
			if err != nil {
				b.Fatal(err)
			}
			w, err := os.Create(to)
			if err == nil {
				_, err = io.Copy(w, r)
			}
			r.Close()
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	walk(src, dst)
}

// BenchmarkMemoryOverhead inserts N stashes (N = $STASH_BENCH_MEM_N,
// default 1,000,000) into a memory-only store and reports the heap they
// cost beyond their key and value bytes, fixed per-store costs included.
func BenchmarkMemoryOverhead(b *testing.B) {
	n := envInt(b, "STASH_BENCH_MEM_N", 1_000_000)
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("value=%dB", size), func(b *testing.B) {
			var overhead, table float64
			for range b.N {
				overhead, table = memoryOverhead(b, n, size)
			}
			b.ReportMetric(overhead, "B/stash-overhead")
			b.ReportMetric(table, "B/stash-table")
		})
	}
}

func memoryOverhead(b *testing.B, n, size int) (overhead, table float64) {
	r := rand.New(rand.NewPCG(2, 2))
	src := []byte(benchValue(r, size))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := Open(Config{ReapInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var kv int64
	for i := range n {
		key := benchKey(i)
		src[i%size] ^= byte(i) // a distinct allocation per value
		val := string(src)
		kv += int64(len(key) + len(val))
		if _, err := s.Update(ctx, benchSlot(i), key, func(Stash, bool) (Stash, Op) {
			return Stash{Value: val, ExpireAt: int64(i)}, OpPut
		}); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	var buckets int
	for i := range s.slots {
		buckets += len(s.slots[i].t.tags)
	}
	if got := s.Stats().Stashes; got != int64(n) {
		b.Fatalf("%d stashes", got)
	}
	overhead = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)-kv) / float64(n)
	table = float64(buckets) * 49 / float64(n)
	runtime.KeepAlive(s)
	s.Close()
	return overhead, table
}

// BenchmarkBatchedWrites measures durable writes per second: under
// FsyncBatch with 256 concurrent writers (time includes the final Sync that
// makes the last of them durable), and under FsyncAlways with 64 writers
// (each write waits for its fsync). Keys are drawn from 100,000.
func BenchmarkBatchedWrites(b *testing.B) {
	cases := []struct {
		fsync   Fsync
		writers int
		size    int
	}{
		{FsyncBatch, 256, 100},
		{FsyncBatch, 256, 1024},
		{FsyncAlways, 64, 100},
		{FsyncAlways, 64, 1024},
	}
	for _, tc := range cases {
		b.Run(fmt.Sprintf("%s/writers=%d/value=%dB", tc.fsync, tc.writers, tc.size), func(b *testing.B) {
			s, err := Open(Config{Dir: b.TempDir(), Fsync: tc.fsync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			val := benchValue(rand.New(rand.NewPCG(3, 3)), tc.size)
			var seed atomic.Uint64
			b.SetParallelism((tc.writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(seed.Add(1), 0))
				for pb.Next() {
					i := r.IntN(100_000)
					if _, err := s.Update(ctx, benchSlot(i), benchKey(i), func(Stash, bool) (Stash, Op) {
						return Stash{Value: val}, OpPut
					}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := s.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
			if st.Commits > 0 {
				b.ReportMetric(float64(b.N)/float64(st.Commits), "writes/commit")
			}
		})
	}
}

// BenchmarkServing measures the in-memory paths: Get of present keys and
// Update (insert or overwrite) in a memory-only store of 1M stashes, from
// all Ps at once.
func BenchmarkServing(b *testing.B) {
	const n = 1 << 20
	s, err := Open(Config{ReapInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	val := benchValue(rand.New(rand.NewPCG(4, 4)), 100)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = benchKey(i)
		s.Apply(ctx, benchSlot(i), Stash{Key: keys[i], Value: val, Version: Version{1, 1}}, false)
	}
	var seed atomic.Uint64
	b.Run("get", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(seed.Add(1), 0))
			for pb.Next() {
				i := r.IntN(n)
				if _, ok := s.Get(benchSlot(i), keys[i]); !ok {
					b.Error("miss")
					return
				}
			}
		})
	})
	b.Run("update", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(seed.Add(1), 0))
			for pb.Next() {
				i := r.IntN(2 * n) // half inserts, half overwrites
				s.Update(ctx, benchSlot(i), benchKey(i), func(Stash, bool) (Stash, Op) { return Stash{Value: val}, OpPut })
			}
		})
	})
}

// BenchmarkReplay measures replay alone: N log records of puts of 100 B
// or 1 KiB (N = $STASH_BENCH_REPLAY_N, default 200,000) over distinct
// keys, applied to an empty memory-only store, in segments of 64 MiB.
func BenchmarkReplay(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("value=%dB", size), func(b *testing.B) { benchReplay(b, size) })
	}
}

func benchReplay(b *testing.B, size int) {
	n := envInt(b, "STASH_BENCH_REPLAY_N", 200_000)
	wal := filepath.Join(b.TempDir(), walDirName)
	if err := os.MkdirAll(wal, 0o755); err != nil {
		b.Fatal(err)
	}
	val := benchValue(rand.New(rand.NewPCG(5, 5)), size)
	seg, buf := uint64(1), walHeader()
	for i := range n {
		buf = appendWALFrame(buf, walPut, benchSlot(i), KindString, 0, 1, uint64(i+1), uint64(i+1), benchKey(i), val)
		if len(buf) >= 64<<20 || i == n-1 {
			if err := os.WriteFile(filepath.Join(wal, segmentName(seg)), buf, 0o600); err != nil {
				b.Fatal(err)
			}
			seg, buf = seg+1, walHeader()
		}
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s, err := Open(Config{ReapInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		b.StartTimer()
		ws, rep, err := s.replay(wal, 0)
		b.StopTimer()
		if err != nil || rep.records != int64(n) || s.Stats().Stashes != int64(n) {
			b.Fatalf("replayed %d: %v", rep.records, err)
		}
		ws.w.close()
		os.Remove(filepath.Join(wal, segmentName(ws.w.seq)))
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(n*(size+60))*float64(b.N)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
}

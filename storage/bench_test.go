package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
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

// BenchmarkReload measures Open of a file holding N stashes of 1 KiB
// (N = $STASH_BENCH_RELOAD_N, default 1,000,000): from bbolt to serving.
// "clean" reopens after Close, which leaves bbolt's freelist in the file;
// "crash" after a kill -9, which leaves none, so bbolt rebuilds it by
// walking every page first.
//
// The file is in the page cache, having just been written and fsynced.
// Before each Open the heap is returned to the OS, so that Open faults in
// fresh memory as a restarted process would.
func BenchmarkReload(b *testing.B) {
	n := envInt(b, "STASH_BENCH_RELOAD_N", 1_000_000)
	dir := b.TempDir()
	populate(b, dir, n, 1024)
	for _, crash := range []bool{false, true} {
		name := "shutdown=clean"
		if crash {
			name = "shutdown=crash"
		}
		b.Run(name, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				if crash {
					dropFreelist(b, dir)
				}
				runtime.GC()
				debug.FreeOSMemory()
				b.StartTimer()
				start := time.Now()
				s, err := Open(Config{Dir: dir})
				d := time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if got := s.Stats().Loaded; got != int64(n) {
					b.Fatalf("loaded %d of %d", got, n)
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
		})
	}
}

// dropFreelist leaves the file as a crash would: without a freelist.
func dropFreelist(b *testing.B, dir string) {
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Update(func(*bolt.Tx) error { return nil }); err != nil {
		b.Fatal(err)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
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

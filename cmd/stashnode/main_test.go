package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stashcluster/stash"
	"github.com/stashcluster/stash/internal/testport"
)

// These tests run the real stashnode binary on 127.0.0.1 and drive it with
// go-redis (and redis-cli when it is installed).

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stashnode-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "stashnode")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func freePort(t testing.TB) int { return testport.Free(t) }

type proc struct {
	t         testing.TB
	cmd       *exec.Cmd
	port      int
	adminPort int
	args      []string
	log       *bytes.Buffer
	done      chan struct{}
	exitErr   error
}

// lockedBuffer lets the child's stderr be read while it is written.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs stashnode with args plus fresh --port/--admin-port, and waits
// until /healthz answers.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, port: freePort(t), adminPort: freePort(t)}
	p.args = append([]string{"--port", strconv.Itoa(p.port), "--admin-port", strconv.Itoa(p.adminPort), "--name", "test-node"}, args...)
	p.launch()
	return p
}

func (p *proc) launch() {
	t := p.t
	t.Helper()
	lb := &lockedBuffer{}
	p.cmd = exec.Command(binary(t), p.args...)
	p.cmd.Stderr = lb
	p.cmd.Stdout = lb
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.exitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("stashnode log:\n%s", lb.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", p.adminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("stashnode exited early: %v\n%s", p.exitErr, lb.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("stashnode did not become healthy:\n%s", lb.String())
		}
	}
}

func (p *proc) signal(s syscall.Signal) error {
	p.t.Helper()
	p.cmd.Process.Signal(s)
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(30 * time.Second):
		p.t.Fatalf("stashnode did not exit after %v", s)
		return nil
	}
}

func (p *proc) client(t testing.TB, opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", p.port), MaxRetries: -1, DialTimeout: 2 * time.Second}
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRestartKeepsEveryStash(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "--data-dir", dir, "--fsync", "batch")
	c := p.client(t)
	cx := ctx(t)
	const keys = 2000
	pipe := c.Pipeline()
	for i := 0; i < keys; i++ {
		pipe.Set(cx, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i), 0)
	}
	pipe.Set(cx, "ttl-key", "x", time.Hour)
	pipe.HSet(cx, "h", "a", "1", "b", "2")
	if _, err := pipe.Exec(cx); err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for i := 0; i < 300; i++ {
		v := fmt.Sprintf("state-%d", i)
		tg, err := c.Do(cx, "STASH.PUT", v, "TTL", 3600).Text()
		if err != nil {
			t.Fatal(err)
		}
		tags[tg] = v
	}
	// Graceful stop flushes the batch.
	if err := p.signal(syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	p.launch()
	c = p.client(t)
	for i := 0; i < keys; i++ {
		got, err := c.Get(cx, fmt.Sprintf("k%d", i)).Result()
		if err != nil || got != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d after restart: %q, %v", i, got, err)
		}
	}
	if ttl := c.TTL(cx, "ttl-key").Val(); ttl < 3500*time.Second || ttl > time.Hour {
		t.Fatalf("TTL after restart = %v", ttl)
	}
	if h := c.HGetAll(cx, "h").Val(); h["a"] != "1" || h["b"] != "2" || len(h) != 2 {
		t.Fatalf("hash after restart = %v", h)
	}
	for tg, v := range tags {
		got, err := c.Do(cx, "STASH.GET", tg).Text()
		if err != nil || got != v {
			t.Fatalf("STASH.GET after restart: %q, %v; want %q", got, err, v)
		}
	}
	if n := c.DBSize(cx).Val(); n != keys+2+300 {
		t.Fatalf("DBSIZE = %d", n)
	}
}

// TestKill9KeepsAcknowledgedWrites: with --fsync always, every write the
// node acknowledged before kill -9 is there after a restart.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	p := start(t, "--data-dir", dir, "--fsync", "always")
	cx := ctx(t)
	var mu sync.Mutex
	acked := map[string]string{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		c := p.client(t)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("value-%d-%d-%s", w, i, strings.Repeat("x", i%300))
				if err := c.Set(cx, k, v, 0).Err(); err != nil {
					return // the node died
				}
				mu.Lock()
				acked[k] = v
				mu.Unlock()
			}
		}(w)
	}
	// Let writes flow, then kill in the middle of them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 3000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged before the kill", len(acked))
	}
	p.launch()
	c := p.client(t)
	lost := 0
	for k, v := range acked {
		got, err := c.Get(cx, k).Result()
		if err != nil || got != v {
			lost++
			if lost < 5 {
				t.Errorf("%s: got %q, %v", k, got, err)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost after kill -9", lost, len(acked))
	}
	t.Logf("%d acknowledged writes survived kill -9", len(acked))
}

func TestBadInputLeavesNodeHealthy(t *testing.T) {
	p := start(t, "--memory", "--max-value-bytes", "4096", "--max-request-bytes", "65536", "--max-clients", "8")
	cx := ctx(t)
	c := p.client(t)
	if err := c.Set(cx, "keep", "safe", 0).Err(); err != nil {
		t.Fatal(err)
	}

	// Oversized value: clear error, connection still usable, nothing written.
	err := c.Set(cx, "big", strings.Repeat("x", 5000), 0).Err()
	if err == nil || !strings.Contains(err.Error(), "max-value-bytes") {
		t.Fatalf("oversized SET: %v", err)
	}
	if err := c.Do(cx, "STASH.PUT", strings.Repeat("x", 5000)).Err(); err == nil || !strings.Contains(err.Error(), "max-value-bytes") {
		t.Fatalf("oversized STASH.PUT: %v", err)
	}
	if n := c.Exists(cx, "big").Val(); n != 0 {
		t.Fatal("oversized value was stored")
	}

	// Oversized request on a raw connection: an error, then the same
	// connection still answers.
	raw, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	big := strings.Repeat("y", 70000)
	fmt.Fprintf(raw, "*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n", len(big), big)
	br := bufio.NewReader(raw)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	l1, _ := br.ReadString('\n')
	l2, _ := br.ReadString('\n')
	if !strings.HasPrefix(l1, "-ERR request of") || l2 != "+PONG\r\n" {
		t.Fatalf("oversized request replies: %q %q", l1, l2)
	}

	// Forged, altered and truncated tags.
	tg, err := c.Do(cx, "STASH.PUT", "secret-state").Text()
	if err != nil {
		t.Fatal(err)
	}
	flip := []byte(tg)
	flip[len(flip)/2] ^= 1
	if flip[len(flip)/2] == '-' || flip[len(flip)/2] == '_' {
		flip[len(flip)/2] = 'A'
	}
	for name, bad := range map[string]string{"altered": string(flip), "truncated": tg[:len(tg)-3], "garbage": "not-a-tag!", "empty": ""} {
		err := c.Do(cx, "STASH.GET", bad).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "BADTAG") {
			t.Errorf("%s tag: %v, want BADTAG", name, err)
		}
		if err := c.Do(cx, "STASH.SET", bad, "overwrite").Err(); err == nil || !strings.HasPrefix(err.Error(), "BADTAG") {
			t.Errorf("%s tag on STASH.SET: %v, want BADTAG", name, err)
		}
	}
	if v, err := c.Do(cx, "STASH.GET", tg).Text(); err != nil || v != "secret-state" {
		t.Fatalf("genuine tag after forgery attempts: %q %v", v, err)
	}
	if strings.Contains(tg, "secret-state") {
		t.Fatal("tag leaks its value")
	}

	// Garbage bytes close that connection only.
	g, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("*zz\r\n\x00\x01\x02garbage"))
	g.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := io.ReadAll(g)
	g.Close()
	if !strings.HasPrefix(string(reply), "-ERR Protocol error") {
		t.Fatalf("garbage reply: %q", reply)
	}

	// Too many clients: the extra one gets a clear error.
	var conns []net.Conn
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	var refused string
	for i := 0; i < 12 && refused == ""; i++ {
		cn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, cn)
		cn.Write([]byte("PING\r\n"))
		cn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(cn).ReadString('\n')
		if strings.HasPrefix(line, "-ERR max number of clients") {
			refused = line
		}
	}
	if refused == "" {
		t.Fatal("no connection was refused past --max-clients")
	}
	for _, cn := range conns {
		cn.Close()
	}
	conns = nil

	// The node is still fine and nothing was lost.
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := c.Get(cx, "keep").Result()
		if err == nil && v == "safe" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after bad input: %q %v", v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPassword(t *testing.T) {
	p := start(t, "--memory", "--password", "s3cret")
	cx := ctx(t)
	// go-redis authenticates through HELLO 3 AUTH.
	bad := p.client(t, func(o *redis.Options) { o.Password = "wrong" })
	if err := bad.Ping(cx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v", err)
	}
	none := p.client(t, func(o *redis.Options) { o.Protocol = 2 })
	if err := none.Get(cx, "x").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("no password: %v", err)
	}
	good := p.client(t, func(o *redis.Options) { o.Password = "s3cret" })
	if err := good.Set(cx, "x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	good2 := p.client(t, func(o *redis.Options) { o.Password = "s3cret"; o.Protocol = 2 })
	if v := good2.Get(cx, "x").Val(); v != "1" {
		t.Fatalf("RESP2 AUTH client read %q", v)
	}
}

func TestProtectedModeRefusesPublicBindWithoutPassword(t *testing.T) {
	out, err := exec.Command(binary(t), "--memory", "--bind", "0.0.0.0", "--port", "0", "--admin-port", "-1").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "protected mode") {
		t.Fatalf("output does not explain: %s", out)
	}
	// Cluster mode without a shared secret cannot work: refused, saying why.
	out, err = exec.Command(binary(t), "--join", "127.0.0.1:7946", "--memory").CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--secret") {
		t.Fatalf("--join without a secret should be refused clearly: %v\n%s", err, out)
	}
}

func TestVersionAndEnv(t *testing.T) {
	out, err := exec.Command(binary(t), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "stashnode ") {
		t.Fatalf("version: %v %s", err, out)
	}
	port, admin := freePort(t), freePort(t)
	cmd := exec.Command(binary(t), "--memory")
	cmd.Env = append(os.Environ(), "STASH_PORT="+strconv.Itoa(port), "STASH_ADMIN_PORT="+strconv.Itoa(admin), "STASH_MAX_VALUE_BYTES=10", "STASH_PROCS=1")
	var lb lockedBuffer
	cmd.Stderr = &lb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	cx := ctx(t)
	deadline := time.Now().Add(20 * time.Second)
	for c.Ping(cx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("node configured from the environment did not answer:\n%s", lb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Set(cx, "k", "01234567890", 0).Err(); err == nil || !strings.Contains(err.Error(), "max-value-bytes (10)") {
		t.Fatalf("STASH_MAX_VALUE_BYTES not applied: %v", err)
	}
	if !strings.Contains(lb.String(), "procs=1 ") {
		t.Fatalf("STASH_PROCS not applied:\n%s", lb.String())
	}
	out, err = exec.Command(binary(t), "--memory", "--procs", "-1").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--procs -1") {
		t.Fatalf("--procs -1 should be refused clearly: %v\n%s", err, out)
	}
}

func TestAdminEndpoints(t *testing.T) {
	p := start(t, "--memory")
	c := p.client(t)
	cx := ctx(t)
	c.Set(cx, "a", "b", 0)
	c.Get(cx, "a")
	get := func(path string) (int, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.adminPort, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz = %d", code)
	}
	code, body := get("/metrics")
	for _, want := range []string{`stash_commands_total{cmd="set",result="ok"} 1`, "stash_command_duration_seconds_bucket", "stash_stashes 1", "stash_expired_total", "stash_fsync_duration_seconds"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q (code %d)", want, code)
		}
	}
	// The heap floor: the collector aims above it even though the node
	// holds one stash (without it the goal is a few MiB).
	var goal float64
	for _, ln := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(ln, "go_memstats_next_gc_bytes "); ok {
			goal, _ = strconv.ParseFloat(v, 64)
		}
	}
	if goal < gcFloorBytes {
		t.Fatalf("garbage collector's heap goal %.0f bytes, want >= %d (the floor)", goal, gcFloorBytes)
	}
	if code, body := get("/v1/node"); code != 200 || !strings.Contains(body, `"name": "test-node"`) {
		t.Fatalf("/v1/node = %d %s", code, body)
	}
}

func TestRedisCLI(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not installed (apt-get install redis-tools); go-redis tests cover the protocol")
	}
	p := start(t, "--memory")
	run := func(args ...string) string {
		out, err := exec.Command(cli, append([]string{"-p", strconv.Itoa(p.port)}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run("SET", "greeting", "hello"); got != "OK" {
		t.Fatalf("SET: %q", got)
	}
	if got := run("GET", "greeting"); got != "hello" {
		t.Fatalf("GET: %q", got)
	}
	tg := run("STASH.PUT", "form-state", "TTL", "60")
	if got := run("STASH.GET", tg); got != "form-state" {
		t.Fatalf("STASH.GET: %q", got)
	}
	if got := run("-3", "HELLO", "3"); !strings.Contains(got, "stash") {
		t.Fatalf("HELLO 3: %q", got)
	}
}

func TestChooseProcs(t *testing.T) {
	for _, c := range []struct {
		flag, avail int
		env         bool
		want        int
	}{
		{0, 1, false, 1},
		{0, 2, false, 1},
		{0, 4, false, 3},
		{0, 16, false, 15},
		{3, 2, false, 3}, // the flag wins, even above the CPUs
		{0, 4, true, 4},  // GOMAXPROCS in the environment is obeyed
		{2, 4, true, 2},  // and the flag still wins over it
	} {
		if got, why := chooseProcs(c.flag, c.avail, c.env); got != c.want || why == "" {
			t.Errorf("chooseProcs(%d, %d, %v) = %d (%q), want %d", c.flag, c.avail, c.env, got, why, c.want)
		}
	}
}

// TestDropAfterFlag: --drop-after and STASH_DROP_AFTER reach the node's
// configuration, and the default is the library's.
func TestDropAfterFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, stash.DefaultConfig().DropAfter},
		{[]string{"--drop-after", "90s"}, nil, 90 * time.Second},
		{[]string{"--drop-after", "-1s"}, nil, -time.Second},
		{nil, map[string]string{"STASH_DROP_AFTER": "10m"}, 10 * time.Minute},
	} {
		fs, o := flags(io.Discard)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if err := fromEnv(fs, func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }); err != nil {
			t.Fatal(err)
		}
		cfg, err := o.config()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.DropAfter != c.want {
			t.Errorf("%v %v: DropAfter %v, want %v", c.args, c.env, cfg.DropAfter, c.want)
		}
	}
}

// TestCheckpointBytes: --checkpoint-bytes reaches the store (a node given
// 1 MiB checkpoints after a few MiB of writes, while a default one has
// not), /metrics reports checkpoints and the log size, and a value under
// 1 MiB is refused with a clear error.
func TestCheckpointBytes(t *testing.T) {
	metric := func(p *proc, name string) float64 {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.adminPort))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, ln := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(ln, name+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", ln, err)
				}
				return f
			}
		}
		t.Fatalf("/metrics lacks %s:\n%s", name, b)
		return 0
	}
	small := start(t, "--data-dir", t.TempDir(), "--checkpoint-bytes", "1048576")
	dflt := start(t, "--data-dir", t.TempDir())
	val := strings.Repeat("v", 32<<10)
	cx := ctx(t)
	for _, p := range []*proc{small, dflt} {
		c := p.client(t)
		for i := range 160 { // 5 MiB of log
			if err := c.Set(cx, fmt.Sprintf("k%d", i), val, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for metric(small, "stash_checkpoints_total") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("--checkpoint-bytes 1048576: %v checkpoints after 5 MiB of writes, want >= 2", metric(small, "stash_checkpoints_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if wal := metric(small, "stash_wal_bytes"); wal > 2<<20 {
		t.Errorf("--checkpoint-bytes 1048576: stash_wal_bytes %v, want <= 2 MiB", wal)
	}
	if n := metric(dflt, "stash_checkpoints_total"); n != 0 {
		t.Errorf("default node: %v checkpoints after 5 MiB of writes, want 0 (default 128 MiB)", n)
	}
	if wal := metric(dflt, "stash_wal_bytes"); wal < 5<<20 {
		t.Errorf("default node: stash_wal_bytes %v, want >= 5 MiB (160 distinct 32 KiB values)", wal)
	}
	// Writers may outrun 1 MiB checkpoints (stalls), but nothing fails.
	metric(small, "stash_write_stalls_total")
	for _, name := range []string{"stash_checkpoint_failures_total", "stash_commit_failures_total"} {
		if v := metric(small, name); v != 0 {
			t.Errorf("%s = %v, want 0", name, v)
		}
	}

	out, err := exec.Command(binary(t), "--memory", "--port", "0", "--admin-port", "-1", "--checkpoint-bytes", "1000").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "CheckpointBytes: must be at least 1 MiB") {
		t.Fatalf("--checkpoint-bytes 1000 should be refused clearly: %v\n%s", err, out)
	}
}

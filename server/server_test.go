package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stashcluster/stash/internal/stashops"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
	"github.com/stashcluster/stash/tag"
)

// fakeClock is a settable clock shared by the server and the store.
type fakeClock struct{ ms atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

type testServer struct {
	addr  string
	clock *fakeClock
	store *storage.Store
	srv   *RESP
}

func newTestServer(t testing.TB, mut func(*Config)) *testServer {
	t.Helper()
	clock := &fakeClock{}
	clock.ms.Store(1_700_000_000_000)
	store, err := storage.Open(storage.Config{Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := tag.NewCodec([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{MaxValueBytes: 1024, MaxRequestBytes: 4096, Now: clock.now, NodeName: "n1", Version: "test"}
	if mut != nil {
		mut(&cfg)
	}
	ops := &stashops.Ops{Store: store, Codec: codec, Slot: ring.Slot, Now: clock.now, MaxValue: cfg.MaxValueBytes}
	s := NewRESP(cfg, store, ops, NewMetrics(nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(ln); close(done) }()
	t.Cleanup(func() {
		s.Close()
		<-done
		store.Close()
	})
	return &testServer{addr: ln.Addr().String(), clock: clock, store: store, srv: s}
}

// rawConn speaks RESP by hand so replies can be compared byte for byte.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (ts *testServer) dial(t testing.TB) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(args ...string) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := r.c.Write([]byte(b.String())); err != nil {
		r.t.Fatal(err)
	}
}

// reply reads one whole reply and returns it raw.
func (r *rawConn) reply() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	var read func()
	read = func() {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reading reply: %v (so far %q)", err, b.String())
		}
		b.WriteString(line)
		body := strings.TrimSuffix(line[1:], "\r\n")
		switch line[0] {
		case '$', '=':
			var n int
			fmt.Sscan(body, &n)
			if n >= 0 {
				buf := make([]byte, n+2)
				if _, err := ioReadFull(r.br, buf); err != nil {
					r.t.Fatal(err)
				}
				b.Write(buf)
			}
		case '*', '~', '%':
			var n int
			fmt.Sscan(body, &n)
			if line[0] == '%' {
				n *= 2
			}
			for i := 0; i < n; i++ {
				read()
			}
		}
	}
	read()
	return b.String()
}

func (r *rawConn) do(args ...string) string {
	r.t.Helper()
	r.send(args...)
	return r.reply()
}

func TestCommands(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"ping", "hi"}, "$2\r\nhi\r\n"},
		{[]string{"ECHO", "x"}, "$1\r\nx\r\n"},
		{[]string{"GET"}, "-ERR wrong number of arguments for 'get' command\r\n"},
		{[]string{"NOPE", "a"}, "-ERR unknown command 'NOPE', with args beginning with: 'a' \r\n"},
		{[]string{"SELECT", "0"}, "+OK\r\n"},
		{[]string{"SELECT", "1"}, "-ERR DB index is out of range\r\n"},
		{[]string{"GET", "k"}, "$-1\r\n"},
		{[]string{"SET", "k", "v"}, "+OK\r\n"},
		{[]string{"GET", "k"}, "$1\r\nv\r\n"},
		{[]string{"SET", "k", "v2", "NX"}, "$-1\r\n"},
		{[]string{"SET", "k", "v2", "XX", "GET"}, "$1\r\nv\r\n"},
		{[]string{"SET", "nokey", "v", "XX"}, "$-1\r\n"},
		{[]string{"SET", "k", "v", "NX", "XX"}, "-ERR syntax error\r\n"},
		{[]string{"SET", "k", "v", "EX", "0"}, "-ERR invalid expire time in 'set' command\r\n"},
		{[]string{"SET", "k", "v", "EX", "x"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"SET", "k", "v", "EX", "10", "PX", "10"}, "-ERR syntax error\r\n"},
		{[]string{"SET", "k", "v3", "EX", "100"}, "+OK\r\n"},
		{[]string{"TTL", "k"}, ":100\r\n"},
		{[]string{"PTTL", "k"}, ":100000\r\n"},
		{[]string{"SET", "k", "v4", "KEEPTTL"}, "+OK\r\n"},
		{[]string{"TTL", "k"}, ":100\r\n"},
		{[]string{"PERSIST", "k"}, ":1\r\n"},
		{[]string{"PERSIST", "k"}, ":0\r\n"},
		{[]string{"TTL", "k"}, ":-1\r\n"},
		{[]string{"TTL", "missing"}, ":-2\r\n"},
		{[]string{"EXPIRE", "k", "50"}, ":1\r\n"},
		{[]string{"EXPIRE", "k", "40", "GT"}, ":0\r\n"},
		{[]string{"EXPIRE", "k", "40", "LT"}, ":1\r\n"},
		{[]string{"EXPIRE", "k", "40", "NX"}, ":0\r\n"},
		{[]string{"EXPIRE", "k", "40", "NX", "XX"}, "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"},
		{[]string{"PEXPIRE", "k", "1500"}, ":1\r\n"},
		{[]string{"PTTL", "k"}, ":1500\r\n"},
		{[]string{"EXPIRETIME", "k"}, ":1700000001\r\n"},
		{[]string{"EXPIREAT", "k", "1800000000"}, ":1\r\n"},
		{[]string{"PEXPIRETIME", "k"}, ":1800000000000\r\n"},
		{[]string{"EXPIRE", "k", "-1"}, ":1\r\n"},
		{[]string{"EXISTS", "k"}, ":0\r\n"},
		{[]string{"EXPIRE", "missing", "10"}, ":0\r\n"},
		{[]string{"MSET", "a", "1", "b", "2"}, "+OK\r\n"},
		{[]string{"MSET", "a", "1", "b"}, "-ERR wrong number of arguments for 'mset' command\r\n"},
		{[]string{"MGET", "a", "b", "zz"}, "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n"},
		{[]string{"EXISTS", "a", "a", "zz"}, ":2\r\n"},
		{[]string{"GETDEL", "a"}, "$1\r\n1\r\n"},
		{[]string{"GETDEL", "a"}, "$-1\r\n"},
		{[]string{"GETEX", "b", "EX", "30"}, "$1\r\n2\r\n"},
		{[]string{"TTL", "b"}, ":30\r\n"},
		{[]string{"GETEX", "b", "PERSIST"}, "$1\r\n2\r\n"},
		{[]string{"TTL", "b"}, ":-1\r\n"},
		{[]string{"GETEX", "b", "EX", "-3"}, "-ERR invalid expire time in 'getex' command\r\n"},
		{[]string{"SETNX", "b", "x"}, ":0\r\n"},
		{[]string{"SETNX", "c", "x"}, ":1\r\n"},
		{[]string{"SETEX", "d", "10", "x"}, "+OK\r\n"},
		{[]string{"TTL", "d"}, ":10\r\n"},
		{[]string{"DEL", "b", "c", "d", "zz"}, ":3\r\n"},
		{[]string{"HSET", "h", "f1", "v1", "f2", "v2"}, ":2\r\n"},
		{[]string{"HSET", "h", "f1", "x", "f3", "v3"}, ":1\r\n"},
		{[]string{"HSET", "h", "f1"}, "-ERR wrong number of arguments for 'hset' command\r\n"},
		{[]string{"HGET", "h", "f1"}, "$1\r\nx\r\n"},
		{[]string{"HGET", "h", "nope"}, "$-1\r\n"},
		{[]string{"HMGET", "h", "f2", "nope"}, "*2\r\n$2\r\nv2\r\n$-1\r\n"},
		{[]string{"HGETALL", "h"}, "*6\r\n$2\r\nf1\r\n$1\r\nx\r\n$2\r\nf2\r\n$2\r\nv2\r\n$2\r\nf3\r\n$2\r\nv3\r\n"},
		{[]string{"HLEN", "h"}, ":3\r\n"},
		{[]string{"HEXISTS", "h", "f2"}, ":1\r\n"},
		{[]string{"HDEL", "h", "f2", "nope"}, ":1\r\n"},
		{[]string{"TYPE", "h"}, "+hash\r\n"},
		{[]string{"GET", "h"}, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{[]string{"SET", "h", "x", "GET"}, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{[]string{"HGET", "e", "x"}, "$-1\r\n"},
		{[]string{"SET", "s", "x"}, "+OK\r\n"},
		{[]string{"HSET", "s", "a", "b"}, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{[]string{"TYPE", "s"}, "+string\r\n"},
		{[]string{"TYPE", "zz"}, "+none\r\n"},
		{[]string{"HDEL", "h", "f1", "f3"}, ":2\r\n"},
		{[]string{"EXISTS", "h"}, ":0\r\n"},
		{[]string{"DBSIZE"}, ":1\r\n"},
		{[]string{"SET", "big", strings.Repeat("x", 1025)}, "-ERR value of 1025 bytes exceeds max-value-bytes (1024)\r\n"},
		{[]string{"EXISTS", "big"}, ":0\r\n"},
		{[]string{"FLUSHALL"}, "+OK\r\n"},
		{[]string{"DBSIZE"}, ":0\r\n"},
		{[]string{"AUTH", "x"}, "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"},
		{[]string{"CLIENT", "SETNAME", "my conn"}, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"},
		{[]string{"CLIENT", "SETNAME", "worker-1"}, "+OK\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$8\r\nworker-1\r\n"},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis"}, "+OK\r\n"},
		{[]string{"CLUSTER", "KEYSLOT", "foo"}, ":12182\r\n"},
		{[]string{"CLUSTER", "KEYSLOT", "{user1000}.following"}, ":3443\r\n"},
		{[]string{"CLUSTER", "INFO"}, "-ERR This instance has cluster support disabled\r\n"},
		{[]string{"QUIT"}, "+OK\r\n"},
	}
	for i, s := range steps {
		if got := c.do(s.args...); got != s.want {
			t.Fatalf("step %d %q:\n got %q\nwant %q", i, s.args, got, s.want)
		}
	}
}

func TestExpiryFollowsClock(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	c.do("SET", "k", "v", "PX", "1000")
	ts.clock.advance(999 * time.Millisecond)
	if got := c.do("GET", "k"); got != "$1\r\nv\r\n" {
		t.Fatalf("before expiry: %q", got)
	}
	ts.clock.advance(time.Millisecond)
	if got := c.do("GET", "k"); got != "$-1\r\n" {
		t.Fatalf("at expiry: %q", got)
	}
	if got := c.do("TTL", "k"); got != ":-2\r\n" {
		t.Fatalf("TTL after expiry: %q", got)
	}
}

func TestHello3AndRESP3Replies(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	if got := c.do("HELLO", "4"); got != "-NOPROTO unsupported protocol version\r\n" {
		t.Fatalf("HELLO 4: %q", got)
	}
	got := c.do("HELLO", "3")
	if !strings.HasPrefix(got, "%7\r\n$6\r\nserver\r\n$5\r\nstash\r\n") || !strings.Contains(got, "$5\r\nproto\r\n:3\r\n") {
		t.Fatalf("HELLO 3: %q", got)
	}
	if got := c.do("GET", "nothing"); got != "_\r\n" {
		t.Fatalf("RESP3 null: %q", got)
	}
	c.do("HSET", "h", "a", "1")
	if got := c.do("HGETALL", "h"); got != "%1\r\n$1\r\na\r\n$1\r\n1\r\n" {
		t.Fatalf("RESP3 map: %q", got)
	}
	got = c.do("HELLO", "2")
	if !strings.HasPrefix(got, "*14\r\n") {
		t.Fatalf("back to RESP2: %q", got)
	}
}

func TestAuthGate(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.Password = "pw" })
	c := ts.dial(t)
	for _, s := range []struct {
		args []string
		want string
	}{
		{[]string{"GET", "k"}, "-NOAUTH Authentication required.\r\n"},
		{[]string{"HELLO", "3"}, "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"},
		{[]string{"AUTH", "bad"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "other", "pw"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"GET", "k"}, "-NOAUTH Authentication required.\r\n"},
		{[]string{"AUTH", "default", "pw"}, "+OK\r\n"},
		{[]string{"GET", "k"}, "$-1\r\n"},
	} {
		if got := c.do(s.args...); got != s.want {
			t.Fatalf("%q: got %q want %q", s.args, got, s.want)
		}
	}
	c2 := ts.dial(t)
	if got := c2.do("HELLO", "3", "AUTH", "default", "pw"); !strings.HasPrefix(got, "%7") {
		t.Fatalf("HELLO AUTH: %q", got)
	}
}

func TestStashCommands(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	put := c.do("STASH.PUT", "state-1", "TTL", "60")
	if !strings.HasPrefix(put, "$") {
		t.Fatalf("STASH.PUT: %q", put)
	}
	tg := strings.Split(put, "\r\n")[1]
	bulk := func(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"STASH.GET", tg}, bulk("state-1")},
		{[]string{"STASH.SET", tg, "state-2"}, "+OK\r\n"},
		{[]string{"STASH.GET", tg}, bulk("state-2")},
		{[]string{"STASH.TOUCH", tg, "600"}, ":1\r\n"},
		{[]string{"STASH.TOUCH", tg, "0"}, "-ERR invalid TTL: seconds must be between 1 and 3153600000\r\n"},
		{[]string{"STASH.PUT", "x", "TTL"}, "-ERR syntax error\r\n"},
		{[]string{"STASH.PUT", strings.Repeat("x", 1025)}, "-ERR value of 1025 bytes exceeds max-value-bytes (1024)\r\n"},
		{[]string{"STASH.DEL", tg}, ":1\r\n"},
		{[]string{"STASH.DEL", tg}, ":0\r\n"},
		{[]string{"STASH.GET", tg}, "$-1\r\n"},
		{[]string{"STASH.TOUCH", tg, "5"}, ":0\r\n"},
	}
	for i, s := range steps {
		if got := c.do(s.args...); got != s.want {
			t.Fatalf("step %d %q: got %q want %q", i, s.args, got, s.want)
		}
	}
	// TTL runs out on the shared clock.
	tg2 := strings.Split(c.do("STASH.PUT", "short", "TTL", "5"), "\r\n")[1]
	ts.clock.advance(5 * time.Second)
	if got := c.do("STASH.GET", tg2); got != "$-1\r\n" {
		t.Fatalf("expired stash: %q", got)
	}
	// Bad tags are BADTAG, and a forged one says so.
	forged := []byte(tg)
	i := len(forged) - 2
	if forged[i] == 'A' {
		forged[i] = 'B'
	} else {
		forged[i] = 'A'
	}
	for _, bad := range []string{string(forged), tg[:10], "", "!!!!"} {
		if got := c.do("STASH.GET", bad); !strings.HasPrefix(got, "-BADTAG ") {
			t.Fatalf("tag %q: %q", bad, got)
		}
	}
}

func TestScanVisitsEveryKeyOnce(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	want := map[string]bool{}
	for i := 0; i < 500; i++ {
		k := fmt.Sprintf("user:%d", i)
		want[k] = true
		c.do("SET", k, "x")
	}
	c.do("HSET", "other", "a", "b")
	seen := map[string]int{}
	cursor := "0"
	for rounds := 0; ; rounds++ {
		if rounds > 20000 {
			t.Fatal("SCAN does not terminate")
		}
		c.send("SCAN", cursor, "MATCH", "user:*", "COUNT", "50")
		r := c.reply()
		parts := strings.Split(r, "\r\n")
		cursor = parts[2]
		for j := 4; j+1 < len(parts); j += 2 {
			seen[parts[j+1]]++
		}
		if cursor == "0" {
			break
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("SCAN saw %d keys, want %d", len(seen), len(want))
	}
	for k, n := range seen {
		if !want[k] || n != 1 {
			t.Fatalf("key %q seen %d times", k, n)
		}
	}
	if got := c.do("SCAN", "0", "COUNT", "1000", "TYPE", "hash"); !strings.Contains(got, "$5\r\nother\r\n") || strings.Contains(got, "user:") {
		t.Fatalf("SCAN TYPE hash: %q", got)
	}
}

func TestShutdownAnswersInFlightAndRefusesNew(t *testing.T) {
	clock := &fakeClock{}
	store, err := storage.Open(storage.Config{Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s := NewRESP(Config{}, store, nil, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	if got := rc.do("PING"); got != "+PONG\r\n" {
		t.Fatal(got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != ErrServerClosed {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	stashclient "github.com/stashcluster/stash/client"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/tag"
)

const remoteAddr = "10.9.9.9:6380"

type routeCall struct {
	slot            uint16
	write, readonly bool
}

type forwardCall struct {
	slot  uint16
	proto int
	args  []string
}

// fakeRouter routes by a settable function (default: every slot local),
// answers Forward with canned bytes and records every call.
type fakeRouter struct {
	mu       sync.Mutex // guards every field
	decide   func(slot uint16, write, readonly bool) Route
	reply    []byte
	fwdErr   error
	view     ClusterView
	routes   []routeCall
	forwards []forwardCall
}

func (f *fakeRouter) Route(slot uint16, write, readonly bool) Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = append(f.routes, routeCall{slot, write, readonly})
	if f.decide == nil {
		return Route{Local: true}
	}
	return f.decide(slot, write, readonly)
}

func (f *fakeRouter) Forward(ctx context.Context, slot uint16, proto int, args [][]byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := forwardCall{slot: slot, proto: proto}
	for _, a := range args {
		call.args = append(call.args, string(a))
	}
	f.forwards = append(f.forwards, call)
	return f.reply, f.fwdErr
}

func (f *fakeRouter) View() ClusterView {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view
}

func (f *fakeRouter) set(fn func(f *fakeRouter)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// takeForwards returns and clears the recorded Forward calls.
func (f *fakeRouter) takeForwards() []forwardCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	fw := f.forwards
	f.forwards = nil
	return fw
}

func (f *fakeRouter) takeRoutes() []routeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.routes
	f.routes = nil
	return r
}

// remoteSlots routes the given slots to remoteAddr, the rest here.
func remoteSlots(slots ...uint16) func(uint16, bool, bool) Route {
	return func(slot uint16, _, _ bool) Route {
		for _, s := range slots {
			if s == slot {
				return Route{Addr: remoteAddr}
			}
		}
		return Route{Local: true}
	}
}

func newRouted(t *testing.T, mut func(*Config)) (*testServer, *fakeRouter) {
	t.Helper()
	fr := &fakeRouter{}
	ts := newTestServer(t, func(c *Config) {
		c.Router = fr
		if mut != nil {
			mut(c)
		}
	})
	return ts, fr
}

// Keys in different slots, chosen by name; the test checks they differ.
const localKey, remoteKey = "here", "there"

func keySlots(t *testing.T) (uint16, uint16) {
	t.Helper()
	l, r := ring.Slot(localKey), ring.Slot(remoteKey)
	if l == r {
		t.Fatal("test keys share a slot")
	}
	return l, r
}

func TestRouterLocalRunsHere(t *testing.T) {
	ts, fr := newRouted(t, nil)
	c := ts.dial(t)
	for _, s := range []struct{ args, want string }{
		{"SET k v", "+OK\r\n"},
		{"GET k", "$1\r\nv\r\n"},
		{"MSET {u}a 1 {u}b 2", "+OK\r\n"},
		{"MGET {u}a {u}b", "*2\r\n$1\r\n1\r\n$1\r\n2\r\n"},
		{"PING", "+PONG\r\n"},
	} {
		if got := c.do(strings.Fields(s.args)...); got != s.want {
			t.Fatalf("%s: got %q want %q", s.args, got, s.want)
		}
	}
	if fw := fr.takeForwards(); len(fw) != 0 {
		t.Fatalf("local commands forwarded: %v", fw)
	}
	want := []routeCall{{ring.Slot("k"), true, false}, {ring.Slot("k"), false, false}, {ring.Slot("{u}"), true, false}, {ring.Slot("{u}"), false, false}}
	if got := fr.takeRoutes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("routes %v, want %v (PING must not be routed)", got, want)
	}
}

func TestRouterForwardsWithConnectionProtocol(t *testing.T) {
	ts, fr := newRouted(t, nil)
	_, rs := keySlots(t)
	canned := "$7\r\nfromfar\r\n"
	fr.set(func(f *fakeRouter) { f.decide = remoteSlots(rs); f.reply = []byte(canned) })

	c := ts.dial(t)
	if got := c.do("SET", remoteKey, "v"); got != canned {
		t.Fatalf("forwarded SET: got %q want %q", got, canned)
	}
	if got := c.do("GET", localKey); got != "$-1\r\n" {
		t.Fatalf("local GET: %q", got)
	}
	c.do("HELLO", "3")
	fr.set(func(f *fakeRouter) { f.reply = []byte("-WRONGTYPE from the primary\r\n") })
	if got := c.do("GET", remoteKey); got != "-WRONGTYPE from the primary\r\n" {
		t.Fatalf("primary's error must pass through: %q", got)
	}
	want := []forwardCall{{rs, 2, []string{"SET", remoteKey, "v"}}, {rs, 3, []string{"GET", remoteKey}}}
	if got := fr.takeForwards(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("forwards %v, want %v", got, want)
	}
	if _, ok := ts.store.Get(rs, remoteKey); ok {
		t.Fatal("a forwarded SET was applied locally")
	}
	if n := forwardedCount(t, ts.srv.metrics, "set"); n != 1 {
		t.Fatalf("stash_forwarded_total{cmd=set} = %v, want 1", n)
	}
}

// forwardedCount reads stash_forwarded_total{cmd} from the registry.
func forwardedCount(t *testing.T, m *Metrics, cmd string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "stash_forwarded_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cmd" && l.GetValue() == cmd {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestRouterMovedForClusterAwareConnections(t *testing.T) {
	_, rs := keySlots(t)
	moved := fmt.Sprintf("-MOVED %d %s\r\n", rs, remoteAddr)
	ts, fr := newRouted(t, nil)
	fr.set(func(f *fakeRouter) { f.decide = remoteSlots(rs); f.reply = []byte("+OK\r\n") })
	for _, hello := range [][]string{{"READONLY"}, {"READWRITE"}, {"CLIENT", "CAPA", "redirect"}} {
		c := ts.dial(t)
		if got := c.do(hello...); got != "+OK\r\n" {
			t.Fatalf("%q: %q", hello, got)
		}
		fr.takeRoutes()
		if got := c.do("GET", remoteKey); got != moved {
			t.Fatalf("after %q: got %q want %q", hello, got, moved)
		}
		if got := c.do("SET", localKey, "x"); got != "+OK\r\n" {
			t.Fatalf("after %q, local SET: %q", hello, got)
		}
		readonly := hello[0] == "READONLY"
		want := []routeCall{{rs, false, readonly}, {ring.Slot(localKey), true, readonly}}
		if got := fr.takeRoutes(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after %q: routes %v, want %v", hello, got, want)
		}
	}
	// READWRITE takes READONLY back.
	c := ts.dial(t)
	c.do("READONLY")
	c.do("READWRITE")
	fr.takeRoutes()
	c.do("GET", remoteKey)
	if got := fr.takeRoutes(); len(got) != 1 || got[0].readonly {
		t.Fatalf("READWRITE did not clear readonly: %v", got)
	}
	// Other capabilities do not ask for redirects.
	c = ts.dial(t)
	c.do("CLIENT", "CAPA", "something-else")
	if got := c.do("GET", remoteKey); got != "+OK\r\n" {
		t.Fatalf("CLIENT CAPA other: want a forwarded reply, got %q", got)
	}
	if fw := fr.takeForwards(); len(fw) != 1 {
		t.Fatalf("forwards: %v", fw)
	}

	// ClusterRedirects: every connection gets MOVED.
	ts2, fr2 := newRouted(t, func(c *Config) { c.ClusterRedirects = true })
	fr2.set(func(f *fakeRouter) { f.decide = remoteSlots(rs) })
	if got := ts2.dial(t).do("SET", remoteKey, "v"); got != moved {
		t.Fatalf("ClusterRedirects: got %q want %q", got, moved)
	}
	if fw := fr2.takeForwards(); len(fw) != 0 {
		t.Fatalf("ClusterRedirects forwarded: %v", fw)
	}
}

func TestReadOnlyWithoutCluster(t *testing.T) {
	c := newTestServer(t, nil).dial(t)
	for _, cmd := range []string{"READONLY", "READWRITE"} {
		if got := c.do(cmd); got != "-ERR This instance has cluster support disabled\r\n" {
			t.Fatalf("%s: %q", cmd, got)
		}
	}
	if got := c.do("CLIENT", "CAPA", "redirect"); got != "+OK\r\n" {
		t.Fatalf("CLIENT CAPA: %q", got)
	}
}

func TestCrossSlot(t *testing.T) {
	const cross = "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
	keySlots(t)
	ts, fr := newRouted(t, nil)
	c := ts.dial(t)
	for _, args := range [][]string{
		{"MGET", localKey, remoteKey},
		{"MSET", localKey, "1", remoteKey, "2"},
		{"DEL", localKey, remoteKey},
		{"EXISTS", localKey, localKey, remoteKey},
	} {
		if got := c.do(args...); got != cross {
			t.Fatalf("%q: got %q", args, got)
		}
	}
	if got := c.do("MSET", "{x}1", "a", "{x}2", "b"); got != "+OK\r\n" {
		t.Fatalf("MSET in one slot: %q", got)
	}
	if got := c.do("EXISTS", localKey, "{x}1"); got != cross {
		t.Fatalf("nothing written by the refused MSET: %q", got)
	}
	if n := len(fr.takeForwards()); n != 0 {
		t.Fatalf("%d forwards", n)
	}
	// A single node has no slots to cross.
	c = newTestServer(t, nil).dial(t)
	if got := c.do("MSET", localKey, "1", remoteKey, "2"); got != "+OK\r\n" {
		t.Fatalf("single node MSET: %q", got)
	}
	if got := c.do("DEL", localKey, remoteKey); got != ":2\r\n" {
		t.Fatalf("single node DEL: %q", got)
	}
}

func TestRouteErrAndForwardErrors(t *testing.T) {
	ls, rs := keySlots(t)
	ts, fr := newRouted(t, nil)
	fr.set(func(f *fakeRouter) {
		f.decide = func(slot uint16, _, _ bool) Route {
			if slot == ls {
				return Route{Err: "CLUSTERDOWN slot is being moved"}
			}
			return Route{Addr: remoteAddr}
		}
		f.fwdErr = errors.New("connection reset")
	})
	c := ts.dial(t)
	for _, s := range []struct {
		args []string
		want string
	}{
		{[]string{"GET", localKey}, "-CLUSTERDOWN slot is being moved\r\n"},
		{[]string{"SET", localKey, "v"}, "-CLUSTERDOWN slot is being moved\r\n"},
		{[]string{"SET", remoteKey, "v"}, "-NOQUORUM forward to primary failed: connection reset\r\n"},
		{[]string{"DEL", remoteKey}, "-NOQUORUM forward to primary failed: connection reset\r\n"},
		{[]string{"GET", remoteKey}, "-TRYAGAIN forward to primary failed: connection reset\r\n"},
		{[]string{"TTL", remoteKey}, "-TRYAGAIN forward to primary failed: connection reset\r\n"},
	} {
		if got := c.do(s.args...); got != s.want {
			t.Fatalf("%q: got %q want %q", s.args, got, s.want)
		}
	}
	if fw := fr.takeForwards(); len(fw) != 4 || fw[0].slot != rs {
		t.Fatalf("forwards %v", fw)
	}
	// An empty reply is a failed forward, not a hung client.
	fr.set(func(f *fakeRouter) { f.fwdErr, f.reply = nil, nil })
	if got := c.do("GET", remoteKey); got != "-TRYAGAIN forward to primary failed: empty reply\r\n" {
		t.Fatalf("empty reply: %q", got)
	}
}

func TestStashRoutingByTagSlot(t *testing.T) {
	ts, fr := newRouted(t, nil)
	c := ts.dial(t)
	tg := strings.Split(c.do("STASH.PUT", "v1"), "\r\n")[1]
	codec, _ := tag.NewCodec([]byte("0123456789abcdef0123456789abcdef"))
	dec, err := codec.Decode(tg)
	if err != nil {
		t.Fatal(err)
	}
	slot := ring.Slot(dec.ID.Key())
	if got := c.do("STASH.GET", tg); got != "$2\r\nv1\r\n" {
		t.Fatalf("local STASH.GET: %q", got)
	}
	fr.takeRoutes()
	fr.set(func(f *fakeRouter) { f.decide = remoteSlots(slot); f.reply = []byte("$6\r\nremote\r\n") })
	for _, args := range [][]string{{"STASH.GET", tg}, {"STASH.SET", tg, "v2"}, {"STASH.TOUCH", tg, "60"}, {"STASH.DEL", tg}} {
		if got := c.do(args...); got != "$6\r\nremote\r\n" {
			t.Fatalf("%q: %q", args, got)
		}
	}
	fw := fr.takeForwards()
	if len(fw) != 4 || fw[0].slot != slot || fmt.Sprint(fw[1].args) != fmt.Sprint([]string{"STASH.SET", tg, "v2"}) {
		t.Fatalf("forwards %v", fw)
	}
	want := fmt.Sprint([]routeCall{{slot, false, false}, {slot, true, false}, {slot, true, false}, {slot, true, false}})
	if got := fr.takeRoutes(); fmt.Sprint(got) != want {
		t.Fatalf("routes %v, want %v", got, want)
	}
	// The value is still here: nothing ran locally.
	if _, ok := ts.store.Get(slot, dec.ID.Key()); !ok {
		t.Fatal("a forwarded STASH.DEL ran locally")
	}
	// A bad tag is answered here, without routing.
	if got := c.do("STASH.GET", "nonsense"); !strings.HasPrefix(got, "-BADTAG ") {
		t.Fatalf("bad tag: %q", got)
	}
	if r, f := fr.takeRoutes(), fr.takeForwards(); len(r)+len(f) != 0 {
		t.Fatalf("bad tag routed %v / forwarded %v", r, f)
	}
}

func TestStashPutMintsInALocalSlot(t *testing.T) {
	codec, _ := tag.NewCodec([]byte("0123456789abcdef0123456789abcdef"))
	ts, fr := newRouted(t, nil)
	fr.set(func(f *fakeRouter) {
		f.decide = func(slot uint16, _, _ bool) Route { return Route{Local: slot%8 == 3, Addr: remoteAddr} }
	})
	c := ts.dial(t)
	for i := 0; i < 30; i++ {
		got := c.do("STASH.PUT", "v")
		dec, err := codec.Decode(strings.Split(got, "\r\n")[1])
		if err != nil {
			t.Fatalf("STASH.PUT: %q: %v", got, err)
		}
		if s := ring.Slot(dec.ID.Key()); s%8 != 3 {
			t.Fatalf("minted in slot %d, which this node does not serve", s)
		}
	}
	if fw := fr.takeForwards(); len(fw) != 0 {
		t.Fatalf("forwarded: %v", fw)
	}
	// Serving no slot, the node forwards the PUT to some primary.
	fr.set(func(f *fakeRouter) {
		f.decide = func(uint16, bool, bool) Route { return Route{Addr: remoteAddr} }
		f.reply = []byte("$3\r\ntag\r\n")
	})
	if got := c.do("STASH.PUT", "v", "TTL", "60"); got != "$3\r\ntag\r\n" {
		t.Fatalf("forwarded STASH.PUT: %q", got)
	}
	if fw := fr.takeForwards(); len(fw) != 1 || fmt.Sprint(fw[0].args) != "[STASH.PUT v TTL 60]" {
		t.Fatalf("forwards %v", fw)
	}
	// Exec never forwards it again.
	if got := string(ts.srv.Exec(context.Background(), 2, argv("STASH.PUT", "v"))); !strings.HasPrefix(got, "-TRYAGAIN ") {
		t.Fatalf("Exec STASH.PUT without a slot: %q", got)
	}
	if fw := fr.takeForwards(); len(fw) != 0 {
		t.Fatalf("Exec forwarded: %v", fw)
	}
}

func argv(args ...string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

func TestExec(t *testing.T) {
	ls, rs := keySlots(t)
	ts, fr := newRouted(t, func(c *Config) { c.Password = "secret" })
	fr.set(func(f *fakeRouter) { f.decide = remoteSlots(rs); f.reply = []byte("+OK\r\n") })
	ctx := context.Background()
	for _, s := range []struct {
		proto int
		args  []string
		want  string
	}{
		{2, []string{"GET", localKey}, "$-1\r\n"},
		{3, []string{"GET", localKey}, "_\r\n"},
		{2, []string{"SET", localKey, "v"}, "+OK\r\n"}, // no AUTH needed
		{3, []string{"get", localKey}, "$1\r\nv\r\n"},
		{2, []string{"HSET", "h", "f", "x"}, ":1\r\n"},
		{3, []string{"HGETALL", "h"}, "%1\r\n$1\r\nf\r\n$1\r\nx\r\n"},
		{2, []string{"GET", remoteKey}, fmt.Sprintf("-TRYAGAIN slot %d is not served by this node\r\n", rs)},
		{2, []string{"SET", remoteKey, "v"}, fmt.Sprintf("-TRYAGAIN slot %d is not served by this node\r\n", rs)},
		{2, []string{"MGET", localKey, remoteKey}, "-CROSSSLOT Keys in request don't hash to the same slot\r\n"},
		{2, []string{"HELLO", "3"}, "-ERR HELLO cannot be forwarded: it changes connection state\r\n"},
		{2, []string{"AUTH", "secret"}, "-ERR AUTH cannot be forwarded: it changes connection state\r\n"},
		{2, []string{"SELECT", "0"}, "-ERR SELECT cannot be forwarded: it changes connection state\r\n"},
		{2, []string{"CLIENT", "ID"}, "-ERR CLIENT cannot be forwarded: it changes connection state\r\n"},
		{2, []string{"QUIT"}, "-ERR QUIT cannot be forwarded: it changes connection state\r\n"},
		{2, []string{"READONLY"}, "-ERR READONLY cannot be forwarded: it changes connection state\r\n"},
		{2, []string{"GET"}, "-ERR wrong number of arguments for 'get' command\r\n"},
		{2, []string{"NOPE"}, "-ERR unknown command 'NOPE', with args beginning with: \r\n"},
	} {
		if got := string(ts.srv.Exec(ctx, s.proto, argv(s.args...))); got != s.want {
			t.Fatalf("Exec(%d, %q): got %q want %q", s.proto, s.args, got, s.want)
		}
	}
	if fw := fr.takeForwards(); len(fw) != 0 {
		t.Fatalf("Exec forwarded: %v", fw)
	}
	if st, ok := ts.store.Get(ls, localKey); !ok || st.Value != "v" {
		t.Fatalf("Exec SET not stored: %+v %v", st, ok)
	}
	// A value kept by the store must not alias the caller's buffer.
	buf := argv("SET", "alias", "before")
	ts.srv.Exec(ctx, 2, buf)
	copy(buf[2], "after!")
	if got := string(ts.srv.Exec(ctx, 2, argv("GET", "alias"))); got != "$6\r\nbefore\r\n" {
		t.Fatalf("stored value changed with the caller's buffer: %q", got)
	}
}

// TestExecLocalRead: a fallback read runs here whatever the router says
// about its slot, and nothing but reads of that slot runs.
func TestExecLocalRead(t *testing.T) {
	ls, rs := keySlots(t)
	ts, fr := newRouted(t, nil)
	ctx := context.Background()
	// Every slot is served here at first (the router's default).
	if got := string(ts.srv.Exec(ctx, 2, argv("SET", remoteKey, "there"))); got != "+OK\r\n" {
		t.Fatalf("SET while local: %q", got)
	}
	// Now no slot is served here (the new primary took over).
	fr.set(func(f *fakeRouter) { f.decide = remoteSlots(ls, rs) })
	for _, s := range []struct {
		args []string
		want string
	}{
		{[]string{"GET", remoteKey}, "$5\r\nthere\r\n"},
		{[]string{"EXISTS", remoteKey}, ":1\r\n"},
		{[]string{"GET", localKey}, fmt.Sprintf("-TRYAGAIN a fallback read runs only reads of slot %d\r\n", rs)},
		{[]string{"SET", remoteKey, "v"}, "-TRYAGAIN SET is a write; a fallback read runs only reads\r\n"},
		{[]string{"FLUSHALL"}, "-TRYAGAIN FLUSHALL is a write; a fallback read runs only reads\r\n"},
	} {
		if got := string(ts.srv.ExecLocalRead(ctx, rs, 2, argv(s.args...))); got != s.want {
			t.Fatalf("ExecLocalRead(%q): got %q want %q", s.args, got, s.want)
		}
	}
	if fw := fr.takeForwards(); len(fw) != 0 {
		t.Fatalf("ExecLocalRead forwarded: %v", fw)
	}
}

func TestExecConcurrent(t *testing.T) {
	ts, _ := newRouted(t, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k := fmt.Sprintf("k%d-%d", g, i)
				if got := string(ts.srv.Exec(context.Background(), 2, argv("SET", k, k))); got != "+OK\r\n" {
					t.Errorf("SET: %q", got)
					return
				}
				want := fmt.Sprintf("$%d\r\n%s\r\n", len(k), k)
				if got := string(ts.srv.Exec(context.Background(), 2, argv("GET", k))); got != want {
					t.Errorf("GET: %q want %q", got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// testView: node 0 (self) is primary for 0-5460 (two ranges with
// different replicas) and 10923; node 1 for 5461-10922; node 2, dead, for
// 10924-16383; node 3 holds nothing.
func testView() ClusterView {
	id := func(c byte) string { return strings.Repeat(string(c), 40) }
	return ClusterView{
		MyID:  id('a'),
		Epoch: 7,
		OK:    false,
		Nodes: []ClusterNode{
			{ID: id('a'), Name: "n0", Host: "127.0.0.1", Port: 7000, ClusterPort: 17000, Alive: true, Self: true},
			{ID: id('b'), Name: "n1", Host: "127.0.0.2", Port: 7001, ClusterPort: 17001, Alive: true},
			{ID: id('c'), Name: "n2", Host: "127.0.0.3", Port: 7002, ClusterPort: 17002},
			{ID: id('d'), Name: "n3", Host: "127.0.0.4", Port: 7003, ClusterPort: 17003, Alive: true},
		},
		Ranges: []SlotRange{
			{0, 100, []int{0, 1, 2}},
			{101, 5460, []int{0, 1}},
			{5461, 10922, []int{1, 0}},
			{10923, 10923, []int{0, 2}},
			{10924, 16383, []int{2, 0}},
		},
	}
}

// RESP2 builders for expected replies.
func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }
func arr(n int) string     { return fmt.Sprintf("*%d\r\n", n) }
func num(n int) string     { return fmt.Sprintf(":%d\r\n", n) }

func TestClusterCommands(t *testing.T) {
	ts, fr := newRouted(t, nil)
	v := testView()
	fr.set(func(f *fakeRouter) { f.view = v })
	c := ts.dial(t)
	a, b, cc := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)

	info := "cluster_enabled:1\r\ncluster_state:fail\r\ncluster_slots_assigned:16384\r\n" +
		"cluster_slots_ok:10924\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:5460\r\n" +
		"cluster_known_nodes:4\r\ncluster_size:3\r\ncluster_current_epoch:7\r\ncluster_my_epoch:7\r\n"
	if got := c.do("CLUSTER", "INFO"); got != bulk(info) {
		t.Fatalf("CLUSTER INFO:\n got %q\nwant %q", got, bulk(info))
	}
	if got := c.do("CLUSTER", "MYID"); got != bulk(a) {
		t.Fatalf("CLUSTER MYID: %q", got)
	}

	node := func(host string, port int, id string) string { return arr(3) + bulk(host) + num(port) + bulk(id) }
	n0, n1, n2 := node("127.0.0.1", 7000, a), node("127.0.0.2", 7001, b), node("127.0.0.3", 7002, cc)
	slots := arr(5) +
		arr(4) + num(0) + num(100) + n0 + n1 + // dead replica n2 left out
		arr(4) + num(101) + num(5460) + n0 + n1 +
		arr(4) + num(5461) + num(10922) + n1 + n0 +
		arr(3) + num(10923) + num(10923) + n0 +
		arr(4) + num(10924) + num(16383) + n2 + n0 // a dead primary stays
	if got := c.do("CLUSTER", "SLOTS"); got != slots {
		t.Fatalf("CLUSTER SLOTS:\n got %q\nwant %q", got, slots)
	}

	nodes := a + " 127.0.0.1:7000@17000 myself,master - 0 0 7 connected 0-5460 10923\n" +
		b + " 127.0.0.2:7001@17001 master - 0 0 7 connected 5461-10922\n" +
		cc + " 127.0.0.3:7002@17002 master,fail - 0 0 7 disconnected 10924-16383\n" +
		strings.Repeat("d", 40) + " 127.0.0.4:7003@17003 master - 0 0 7 connected\n"
	if got := c.do("CLUSTER", "NODES"); got != bulk(nodes) {
		t.Fatalf("CLUSTER NODES:\n got %q\nwant %q", got, bulk(nodes))
	}

	shardNode := func(id string, port int, host, role, health string) string {
		return arr(14) + bulk("id") + bulk(id) + bulk("port") + num(port) + bulk("ip") + bulk(host) +
			bulk("endpoint") + bulk(host) + bulk("role") + bulk(role) +
			bulk("replication-offset") + num(0) + bulk("health") + bulk(health)
	}
	shards := c.do("CLUSTER", "SHARDS")
	first := arr(6) + arr(4) + bulk("slots") + arr(2) + num(0) + num(100) + bulk("nodes") + arr(3) +
		shardNode(a, 7000, "127.0.0.1", "master", "online") +
		shardNode(b, 7001, "127.0.0.2", "replica", "online") +
		shardNode(cc, 7002, "127.0.0.3", "replica", "fail")
	if !strings.HasPrefix(shards, first) {
		t.Fatalf("CLUSTER SHARDS starts:\n got %q\nwant %q", shards, first)
	}
	last := arr(4) + bulk("slots") + arr(0) + bulk("nodes") + arr(1) +
		shardNode(strings.Repeat("d", 40), 7003, "127.0.0.4", "master", "online")
	if !strings.HasSuffix(shards, last) {
		t.Fatalf("CLUSTER SHARDS: the node without slots is not its own shard: %q", shards)
	}

	// RESP3: INFO and NODES are verbatim text, SHARDS maps.
	c.do("HELLO", "3")
	if got := c.do("CLUSTER", "INFO"); got != fmt.Sprintf("=%d\r\ntxt:%s\r\n", len(info)+4, info) {
		t.Fatalf("CLUSTER INFO (RESP3): %q", got)
	}
	if got := c.do("CLUSTER", "SHARDS"); !strings.HasPrefix(got, "*6\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:100\r\n$5\r\nnodes\r\n*3\r\n%7\r\n") {
		t.Fatalf("CLUSTER SHARDS (RESP3): %q", got)
	}
	c.do("HELLO", "2")

	// Keys in slots.
	c.do("SET", "{s}1", "x")
	c.do("SET", "{s}2", "y")
	s := ring.Slot("{s}")
	if got := c.do("CLUSTER", "COUNTKEYSINSLOT", fmt.Sprint(s)); got != ":2\r\n" {
		t.Fatalf("COUNTKEYSINSLOT: %q", got)
	}
	got := c.do("CLUSTER", "GETKEYSINSLOT", fmt.Sprint(s), "10")
	if got != arr(2)+bulk("{s}1")+bulk("{s}2") && got != arr(2)+bulk("{s}2")+bulk("{s}1") {
		t.Fatalf("GETKEYSINSLOT: %q", got)
	}
	if got := c.do("CLUSTER", "GETKEYSINSLOT", fmt.Sprint(s), "1"); !strings.HasPrefix(got, "*1\r\n") {
		t.Fatalf("GETKEYSINSLOT count 1: %q", got)
	}
	for _, s := range []struct{ args, want string }{
		{"CLUSTER COUNTKEYSINSLOT 16384", "-ERR Invalid slot\r\n"},
		{"CLUSTER GETKEYSINSLOT 1 -1", "-ERR Invalid slot or number of keys\r\n"},
		{"CLUSTER KEYSLOT foo", ":12182\r\n"},
		{"CLUSTER MYID extra", "-ERR wrong number of arguments for 'cluster|myid' command\r\n"},
		{"CLUSTER MEET 1.2.3.4 5", "-ERR unknown subcommand 'MEET'. Try CLUSTER HELP.\r\n"},
	} {
		if got := c.do(strings.Fields(s.args)...); got != s.want {
			t.Fatalf("%s: got %q want %q", s.args, got, s.want)
		}
	}

	// A view with a bad node index does not crash the connection.
	fr.set(func(f *fakeRouter) { f.view.Ranges = []SlotRange{{0, 16383, []int{0, 9}}} })
	if got := c.do("CLUSTER", "SLOTS"); got != arr(1)+arr(3)+num(0)+num(16383)+n0 {
		t.Fatalf("CLUSTER SLOTS, bad index: %q", got)
	}
}

func TestClusterInInfoAndHello(t *testing.T) {
	ts, _ := newRouted(t, nil)
	c := ts.dial(t)
	if got := c.do("INFO", "cluster"); got != bulk("# Cluster\r\ncluster_enabled:1\r\n") {
		t.Fatalf("INFO cluster: %q", got)
	}
	if got := c.do("INFO", "server"); !strings.Contains(got, "redis_mode:cluster\r\n") {
		t.Fatalf("INFO server: %q", got)
	}
	if got := c.do("HELLO", "3"); !strings.Contains(got, "$4\r\nmode\r\n$7\r\ncluster\r\n") {
		t.Fatalf("HELLO: %q", got)
	}
	c = newTestServer(t, nil).dial(t)
	if got := c.do("INFO", "cluster"); got != bulk("# Cluster\r\ncluster_enabled:0\r\n") {
		t.Fatalf("INFO cluster, single node: %q", got)
	}
}

func TestScanAndDBSizeCountLocalPrimaries(t *testing.T) {
	ts, fr := newRouted(t, nil)
	c := ts.dial(t)
	mine := map[string]bool{}
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("key:%d", i)
		c.do("SET", k, "x")
		if ring.Slot(k)%3 == 0 {
			mine[k] = true
		}
	}
	// From now on this node is primary for one slot in three; the other
	// keys are replicas it holds for other primaries.
	fr.set(func(f *fakeRouter) {
		f.decide = func(slot uint16, write, readonly bool) Route {
			return Route{Local: slot%3 == 0 || (readonly && !write), Addr: remoteAddr}
		}
	})
	if got, want := c.do("DBSIZE"), fmt.Sprintf(":%d\r\n", len(mine)); got != want {
		t.Fatalf("DBSIZE %q, want %q", got, want)
	}
	if got := c.do("INFO", "keyspace"); !strings.Contains(got, fmt.Sprintf("db0:keys=%d\r\n", len(mine))) {
		t.Fatalf("INFO keyspace: %q", got)
	}
	seen := map[string]int{}
	cursor := "0"
	for rounds := 0; ; rounds++ {
		if rounds > 20000 {
			t.Fatal("SCAN does not terminate")
		}
		parts := strings.Split(c.do("SCAN", cursor, "COUNT", "7"), "\r\n")
		cursor = parts[2]
		for j := 4; j+1 < len(parts); j += 2 {
			seen[parts[j+1]]++
		}
		if cursor == "0" {
			break
		}
	}
	if len(seen) != len(mine) {
		t.Fatalf("SCAN saw %d keys, want %d", len(seen), len(mine))
	}
	for k, n := range seen {
		if !mine[k] || n != 1 {
			t.Fatalf("SCAN: key %q (slot %d) seen %d times", k, ring.Slot(k), n)
		}
	}
	// READONLY does not change what SCAN counts: it is per node.
	c.do("READONLY")
	if got := c.do("DBSIZE"); got != fmt.Sprintf(":%d\r\n", len(mine)) {
		t.Fatalf("DBSIZE after READONLY: %q", got)
	}
}

func TestFlushAllRefusedInCluster(t *testing.T) {
	ts, _ := newRouted(t, nil)
	c := ts.dial(t)
	c.do("SET", "k", "v")
	for _, cmd := range []string{"FLUSHALL", "FLUSHDB"} {
		if got, want := c.do(cmd), "-ERR "+cmd+" is not supported in a cluster; delete keys instead\r\n"; got != want {
			t.Fatalf("%s: got %q want %q", cmd, got, want)
		}
	}
	if got := c.do("DBSIZE"); got != ":1\r\n" {
		t.Fatalf("DBSIZE after refused FLUSHALL: %q", got)
	}
	if got := string(ts.srv.Exec(context.Background(), 2, argv("FLUSHALL"))); !strings.HasPrefix(got, "-ERR FLUSHALL is not supported") {
		t.Fatalf("Exec FLUSHALL: %q", got)
	}
}

// selfView is a one-node cluster: this server, primary for every slot.
func selfView(t *testing.T, addr string) ClusterView {
	t.Helper()
	var port int
	if _, err := fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("e", 40)
	return ClusterView{
		MyID: id, Epoch: 1, OK: true,
		Nodes:  []ClusterNode{{ID: id, Name: "n1", Host: "127.0.0.1", Port: port, ClusterPort: port + 10000, Alive: true, Self: true}},
		Ranges: []SlotRange{{0, ring.Slots - 1, []int{0}}},
	}
}

// TestGoRedisClusterClient: go-redis's ClusterClient parses CLUSTER SLOTS
// and works against a one-node cluster; so does this module's client.
func TestGoRedisClusterClient(t *testing.T) {
	ts, fr := newRouted(t, nil)
	fr.set(func(f *fakeRouter) { f.view = selfView(t, ts.addr) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{ts.addr}, MaxRetries: -1})
	defer rc.Close()
	slots, err := rc.ClusterSlots(ctx).Result()
	if err != nil || len(slots) != 1 || slots[0].Start != 0 || slots[0].End != 16383 || slots[0].Nodes[0].Addr != ts.addr {
		t.Fatalf("ClusterSlots: %+v, %v", slots, err)
	}
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("user:%d", i)
		if err := rc.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		if v, err := rc.Get(ctx, k).Result(); err != nil || v != k {
			t.Fatalf("GET %s: %q, %v", k, v, err)
		}
	}

	cl, err := stashclient.Dial(ctx, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if !cl.Clustered() {
		t.Fatal("client.Dial did not see a cluster")
	}
	tg, err := cl.Put(ctx, []byte("state"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cl.Get(ctx, tg); err != nil || string(v) != "state" {
		t.Fatalf("client Get: %q, %v", v, err)
	}
}

package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Workloads.
const (
	Register = "register" // SET/GET/DEL over a small, rotating key space; checked for linearizability
	Stash    = "stash"    // STASH.PUT/SET/GET/DEL with unique values; checked for lost, stale, resurrected
)

// stashTTL is the lifetime of the stash workload's stashes: far longer than
// a run, and than the widest swing of the clock nemesis (see clockOffsets).
const stashTTL = 6 * time.Hour

// client is one logical Jepsen client: one connection to one node, one
// operation at a time, no retries (a retry would hide what happened).
type client struct {
	id   int
	node *Node
	rdb  *redis.Client
}

func newClient(id int, n *Node, nw *Net, timeout time.Duration) *client {
	rdb := redis.NewClient(&redis.Options{
		Addr:            n.Addr(),
		Dialer:          nw.DialContext,
		Protocol:        2,
		MaxRetries:      -1,
		DialTimeout:     timeout,
		ReadTimeout:     timeout,
		WriteTimeout:    timeout,
		PoolSize:        1,
		PoolTimeout:     timeout,
		DisableIdentity: true,
	})
	return &client{id: id, node: n, rdb: rdb}
}

// classify maps a client error to a completion type: Fail only when the
// request certainly had no effect (the server answered with an error, or
// we could not even connect); otherwise Info. NOQUORUM is Stash's answer
// for a write that may or may not have been applied (it reached the
// primary but not enough replicas), so it is Info too.
func classify(err error) Type {
	if err == nil || errors.Is(err, redis.Nil) {
		return OK
	}
	var re redis.Error
	if errors.As(err, &re) {
		if strings.HasPrefix(re.Error(), "NOQUORUM") {
			return Info
		}
		return Fail
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return Fail
	}
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return Fail
	}
	return Info
}

// gen chooses operations and owns the shared key space; safe for
// concurrent use.
type gen struct {
	workload string
	n        atomic.Int64

	mu   sync.Mutex // guards tags
	tags []string   // stash: tags minted so far (recent ones are chosen)
}

const (
	regKeys      = 5   // keys live at once
	regOpsPerKey = 100 // operations per generation of keys, roughly, so each key's history stays checkable (kills leave many indeterminate writes per key; porcupine's search grows fast with them)
)

func (g *gen) addTag(t string) {
	g.mu.Lock()
	g.tags = append(g.tags, t)
	g.mu.Unlock()
}

func (g *gen) recentTag(r *rand.Rand) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.tags) == 0 {
		return ""
	}
	w := min(len(g.tags), 20)
	return g.tags[len(g.tags)-1-r.IntN(w)]
}

// next returns the invocation of a client's next operation.
func (g *gen) next(c *client, r *rand.Rand, seq int) Event {
	i := g.n.Add(1)
	e := Event{Client: c.id, Node: c.node.Name}
	val := fmt.Sprintf("%d-%d", c.id, seq)
	p := r.Float64()
	if g.workload == Register {
		e.Key = fmt.Sprintf("r%d-%d", (i / (regKeys * regOpsPerKey)), r.IntN(regKeys))
		switch {
		case p < 0.45:
			e.F = "get"
		case p < 0.88:
			e.F, e.Value = "set", val
		default:
			e.F = "del"
		}
		return e
	}
	tag := g.recentTag(r)
	switch {
	case tag == "" || p < 0.15:
		e.F, e.Value = "put", val
	case p < 0.45:
		e.F, e.Key, e.Value = "set", tag, val
	case p < 0.93:
		e.F, e.Key = "get", tag
	default:
		e.F, e.Key = "del", tag
	}
	return e
}

// do executes one operation and records its invocation and completion.
func (c *client) do(ctx context.Context, rec *Recorder, g *gen, inv Event) {
	inv = rec.Invoke(inv)
	var (
		err   error
		val   string
		isNil bool
		count int64
		key   string
	)
	switch {
	case g.workload == Register && inv.F == "get":
		val, err = c.rdb.Get(ctx, inv.Key).Result()
	case g.workload == Register && inv.F == "set":
		err = c.rdb.Set(ctx, inv.Key, inv.Value, 0).Err()
	case g.workload == Register && inv.F == "del":
		count, err = c.rdb.Del(ctx, inv.Key).Result()
	case inv.F == "put":
		key, err = c.rdb.Do(ctx, "STASH.PUT", inv.Value, "TTL", int(stashTTL/time.Second)).Text()
	case inv.F == "set":
		err = c.rdb.Do(ctx, "STASH.SET", inv.Key, inv.Value).Err()
	case inv.F == "get":
		val, err = c.rdb.Do(ctx, "STASH.GET", inv.Key).Text()
	case inv.F == "del":
		count, err = c.rdb.Do(ctx, "STASH.DEL", inv.Key).Int64()
	}
	if errors.Is(err, redis.Nil) {
		isNil, val = true, ""
	}
	t := classify(err)
	rec.Complete(inv, t, func(e *Event) {
		if err != nil && !isNil {
			e.Error = err.Error()
			return
		}
		switch inv.F {
		case "get":
			e.Value, e.Nil = val, isNil
		case "del":
			e.Count = count
		case "put":
			e.Key = key
		}
	})
	if t == OK && inv.F == "put" {
		g.addTag(key)
	}
}

// runClients runs concurrency clients until ctx ends, spread over the
// members, at about rate operations per second in total. Client i talks to
// member i mod members; when the members change it moves (a new
// connection) to the member that formula now gives, so clients leave a
// removed node before it stops and some reach a new one.
func runClients(ctx context.Context, fl *fleet, nw *Net, rec *Recorder, g *gen, concurrency int, rate float64, timeout time.Duration) {
	var wg sync.WaitGroup
	for i := 0; i < concurrency; i++ {
		n, ver := fl.nodeFor(i)
		c := newClient(i, n, nw, timeout)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { c.rdb.Close() }()
			r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			mean := time.Duration(float64(concurrency) / rate * float64(time.Second))
			for seq := 0; ctx.Err() == nil; seq++ {
				if fl.Version() != ver {
					var n *Node
					if n, ver = fl.nodeFor(i); n != c.node {
						c.rdb.Close()
						c = newClient(i, n, nw, timeout)
					}
				}
				inv := g.next(c, r, seq)
				opCtx, cancel := context.WithTimeout(context.Background(), 2*timeout)
				c.do(opCtx, rec, g, inv)
				cancel()
				if mean > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(r.Int64N(int64(2*mean) + 1))):
					}
				}
			}
		}()
	}
	wg.Wait()
}

// finalReads reads every key once more after the faults are healed, so
// that a write lost at the end cannot escape; a read that fails is retried
// (each attempt recorded) for up to a few seconds.
func finalReads(ctx context.Context, nodes []*Node, nw *Net, rec *Recorder, g *gen, timeout time.Duration) {
	keys := map[string]bool{}
	for _, e := range rec.Events() {
		if e.Client < 0 {
			continue
		}
		k := e.Key
		if k != "" && (g.workload == Stash || strings.HasPrefix(k, "r")) {
			keys[k] = true
		}
	}
	var clients []*client
	for i, n := range nodes {
		c := newClient(1000+i, n, nw, timeout)
		defer c.rdb.Close()
		clients = append(clients, c)
	}
	i := 0
	for k := range keys {
		c := clients[i%len(clients)]
		i++
		for try := 0; try < 20 && ctx.Err() == nil; try++ {
			inv := rec.Invoke(Event{Client: c.id, Node: c.node.Name, F: "get", Key: k})
			c.finish(ctx, rec, g, inv)
			if rec.lastType() == OK {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// finish completes an already-recorded read invocation.
func (c *client) finish(ctx context.Context, rec *Recorder, g *gen, inv Event) {
	var val string
	var err error
	opCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if g.workload == Register {
		val, err = c.rdb.Get(opCtx, inv.Key).Result()
	} else {
		val, err = c.rdb.Do(opCtx, "STASH.GET", inv.Key).Text()
	}
	isNil := errors.Is(err, redis.Nil)
	rec.Complete(inv, classify(err), func(e *Event) {
		if err != nil && !isNil {
			e.Error = err.Error()
			return
		}
		e.Value, e.Nil = val, isNil
	})
}

package server

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/stashcluster/stash/internal/stashops"
	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

const (
	errWrongType = "WRONGTYPE Operation against a key holding the wrong kind of value"
	errNotInt    = "ERR value is not an integer or out of range"
	errSyntax    = "ERR syntax error"
)

func parseInt(b []byte) (int64, bool) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// take returns arg, an argument of the request being served, as a string
// the caller may keep (see resp.Reader.Take); Exec's args are copied.
func (c *client) take(arg []byte) string {
	if c.rd == nil {
		return string(arg)
	}
	return c.rd.Take(arg)
}

// nowMs is the node's clock when the command being served started.
func (c *client) nowMs() int64 { return c.now.UnixMilli() }

// tooBig replies with the value-size error when n exceeds the limit.
func (c *client) tooBig(n int) bool {
	if n > c.srv.cfg.MaxValueBytes {
		c.err("ERR " + (&stashops.ValueTooLargeError{Size: n, Limit: c.srv.cfg.MaxValueBytes}).Error())
		return true
	}
	return false
}

// update runs fn on key and replies with a storage error if one occurs;
// it reports whether the caller should write its own reply.
func (c *client) update(key []byte, fn func(cur storage.Stash, ok bool) (storage.Stash, storage.Op)) bool {
	ctx, cancel := c.ctx()
	defer cancel()
	// The store copies the key if it keeps it.
	k := ""
	if len(key) > 0 {
		k = unsafe.String(&key[0], len(key))
	}
	_, err := c.srv.kv.Update(ctx, ring.Slot(k), k, fn)
	if err != nil {
		c.storageErr(err)
		return false
	}
	return true
}

// CodedError is an error that names its own RESP error code (NOQUORUM,
// TRYAGAIN, …): the client sees RESPError() instead of "ERR " + Error().
// The layers below the server (replication) use it for conditions a
// client must tell apart, such as "may or may not have been applied".
type CodedError interface {
	error
	RESPError() string
}

func (c *client) storageErr(err error) {
	var coded CodedError
	switch {
	case errors.As(err, &coded):
		c.err(coded.RESPError())
	case errors.Is(err, storage.ErrClosed):
		c.err("ERR server is shutting down")
	default:
		c.err("ERR " + err.Error())
	}
}

// get looks key up. The key is passed to the store without a copy: a read
// does not keep it, and the request buffer is not touched during the call.
func (c *client) get(key []byte) (storage.Stash, bool) {
	if len(key) == 0 {
		return c.srv.kv.Get(ring.Slot(""), "")
	}
	return c.srv.kv.Get(ring.SlotBytes(key), unsafe.String(&key[0], len(key)))
}

func cmdGet(c *client, args [][]byte) {
	st, ok := c.get(args[1])
	switch {
	case !ok:
		c.wr.Null()
	case st.Kind != storage.KindString:
		c.err(errWrongType)
	default:
		c.wr.BulkString(st.Value)
	}
}

// expireOpt holds a parsed EX/PX/EXAT/PXAT/KEEPTTL/PERSIST option.
type expireOpt struct {
	set     bool  // an expiry option was given
	at      int64 // absolute unix ms
	keepTTL bool
	persist bool
}

// parseExpire reads the value of an EX/PX/EXAT/PXAT option.
func (c *client) parseExpire(opt string, v []byte, cmd string) (int64, bool) {
	n, ok := parseInt(v)
	if !ok {
		c.err(errNotInt)
		return 0, false
	}
	bad := func() (int64, bool) {
		c.err("ERR invalid expire time in '" + cmd + "' command")
		return 0, false
	}
	if n <= 0 {
		return bad()
	}
	now := c.nowMs()
	switch opt {
	case "ex":
		if n > (math.MaxInt64-now)/1000 {
			return bad()
		}
		return now + n*1000, true
	case "px":
		if n > math.MaxInt64-now {
			return bad()
		}
		return now + n, true
	case "exat":
		if n > math.MaxInt64/1000 {
			return bad()
		}
		return n * 1000, true
	default: // pxat
		return n, true
	}
}

// expireOpts parses the options of SET (from args[3]) or GETEX (from
// args[2]): one of EX/PX/EXAT/PXAT, or KEEPTTL (SET) / PERSIST (GETEX);
// any other word goes to other, which reports whether it knew it.
func (c *client) expireOpts(args [][]byte, from int, cmd string, other func(opt string) bool) (expireOpt, bool) {
	var ex expireOpt
	fail := func() (expireOpt, bool) {
		c.err(errSyntax)
		return ex, false
	}
	for i := from; i < len(args); i++ {
		o := strings.ToLower(string(args[i]))
		switch {
		case o == "keepttl" && cmd == "set", o == "persist" && cmd == "getex":
			if ex.set || ex.keepTTL || ex.persist {
				return fail()
			}
			ex.keepTTL, ex.persist = cmd == "set", cmd == "getex"
		case o == "ex" || o == "px" || o == "exat" || o == "pxat":
			if ex.set || ex.keepTTL || ex.persist || i+1 >= len(args) {
				return fail()
			}
			at, ok := c.parseExpire(o, args[i+1], cmd)
			if !ok {
				return ex, false
			}
			ex.set, ex.at = true, at
			i++
		default:
			if other == nil || !other(o) {
				return fail()
			}
		}
	}
	return ex, true
}

func cmdSet(c *client, args [][]byte) {
	var nx, xx, get bool
	ex, ok := c.expireOpts(args, 3, "set", func(o string) bool {
		switch o {
		case "nx":
			nx = true
		case "xx":
			xx = true
		case "get":
			get = true
		default:
			return false
		}
		return true
	})
	if !ok {
		return
	}
	if nx && xx {
		c.err(errSyntax)
		return
	}
	c.set(args[1], args[2], nx, xx, get, ex)
}

// setOp is one SET's arguments and outcome, kept in the client so that
// a SET allocates no closure: client.setFn, bound once per connection,
// runs it under the key's lock.
type setOp struct {
	v                     string
	now                   int64
	nx, xx, get           bool
	ex                    expireOpt
	old                   storage.Stash
	had, wrote, wrongType bool
}

func (c *client) set(key, value []byte, nx, xx, get bool, ex expireOpt) {
	if c.tooBig(len(value)) {
		return
	}
	c.setOp = setOp{v: c.take(value), now: c.nowMs(), nx: nx, xx: xx, get: get, ex: ex}
	if c.setFn == nil {
		c.setFn = c.applySet
	}
	ok := c.update(key, c.setFn)
	r := &c.setOp
	switch {
	case !ok:
	case r.wrongType:
		c.err(errWrongType)
	case get:
		if r.had {
			c.wr.BulkString(r.old.Value)
		} else {
			c.wr.Null()
		}
	case r.wrote:
		c.wr.OK()
	default:
		c.wr.Null()
	}
	c.setOp = setOp{} // keep no value or old stash alive until the next SET
}

// applySet is SET's change to the key's current state (see setOp).
func (c *client) applySet(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
	r := &c.setOp
	r.had = ok
	if r.get {
		r.old = cur
	}
	if r.get && ok && cur.Kind != storage.KindString {
		r.wrongType = true
		return cur, storage.OpKeep
	}
	if (r.nx && ok) || (r.xx && !ok) {
		return cur, storage.OpKeep
	}
	r.wrote = true
	next := storage.Stash{Kind: storage.KindString, Value: r.v}
	switch {
	case r.ex.set:
		if r.ex.at <= r.now {
			if !ok {
				return cur, storage.OpKeep
			}
			return cur, storage.OpDelete
		}
		next.ExpireAt = r.ex.at
	case r.ex.keepTTL && ok:
		next.ExpireAt = cur.ExpireAt
	}
	return next, storage.OpPut
}

func cmdSetEx(c *client, args [][]byte) {
	at, ok := c.parseExpire("ex", args[2], "setex")
	if ok {
		c.set(args[1], args[3], false, false, false, expireOpt{set: true, at: at})
	}
}

func cmdPSetEx(c *client, args [][]byte) {
	at, ok := c.parseExpire("px", args[2], "psetex")
	if ok {
		c.set(args[1], args[3], false, false, false, expireOpt{set: true, at: at})
	}
}

func cmdSetNX(c *client, args [][]byte) {
	if c.tooBig(len(args[2])) {
		return
	}
	v := c.take(args[2])
	wrote := false
	if c.update(args[1], func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
		if ok {
			return cur, storage.OpKeep
		}
		wrote = true
		return storage.Stash{Kind: storage.KindString, Value: v}, storage.OpPut
	}) {
		c.wr.Int(b2i(wrote))
	}
}

func cmdGetEx(c *client, args [][]byte) {
	ex, ok := c.expireOpts(args, 2, "getex", nil)
	if !ok {
		return
	}
	if !ex.set && !ex.persist {
		cmdGet(c, args[:2])
		return
	}
	now := c.nowMs()
	c.getAndChange(args[1], func(cur storage.Stash) (storage.Stash, storage.Op) {
		if ex.persist {
			if cur.ExpireAt == 0 {
				return cur, storage.OpKeep
			}
			cur.ExpireAt = 0
		} else {
			if ex.at <= now {
				return cur, storage.OpDelete
			}
			cur.ExpireAt = ex.at
		}
		cur.Version = storage.Version{}
		return cur, storage.OpPut
	})
}

func cmdGetDel(c *client, args [][]byte) {
	c.getAndChange(args[1], func(cur storage.Stash) (storage.Stash, storage.Op) {
		return cur, storage.OpDelete
	})
}

// getAndChange applies change to a live string stash and replies with the
// value it had: nil when missing, WRONGTYPE (and no change) for a hash.
func (c *client) getAndChange(key []byte, change func(cur storage.Stash) (storage.Stash, storage.Op)) {
	var old storage.Stash
	var had, wrongType bool
	if !c.update(key, func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
		had, old = ok, cur
		if !ok {
			return cur, storage.OpKeep
		}
		if cur.Kind != storage.KindString {
			wrongType = true
			return cur, storage.OpKeep
		}
		return change(cur)
	}) {
		return
	}
	switch {
	case wrongType:
		c.err(errWrongType)
	case !had:
		c.wr.Null()
	default:
		c.wr.BulkString(old.Value)
	}
}

func cmdMGet(c *client, args [][]byte) {
	c.wr.Array(len(args) - 1)
	for _, k := range args[1:] {
		st, ok := c.get(k)
		if !ok || st.Kind != storage.KindString {
			c.wr.Null()
			continue
		}
		c.wr.BulkString(st.Value)
	}
}

// cmdMSet sets each pair in turn. Unlike Redis, the pairs are not applied
// atomically as a group: another client may observe some but not all.
func cmdMSet(c *client, args [][]byte) {
	if len(args)%2 != 1 {
		c.arityErr("mset")
		return
	}
	for i := 2; i < len(args); i += 2 {
		if c.tooBig(len(args[i])) {
			return
		}
	}
	for i := 1; i < len(args); i += 2 {
		v := string(args[i+1])
		if !c.update(args[i], func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
			return storage.Stash{Kind: storage.KindString, Value: v}, storage.OpPut
		}) {
			return
		}
	}
	c.wr.OK()
}

func cmdDel(c *client, args [][]byte) {
	var n int64
	for _, k := range args[1:] {
		if !c.update(k, func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
			if !ok {
				return cur, storage.OpKeep
			}
			n++
			return cur, storage.OpDelete
		}) {
			return
		}
	}
	c.wr.Int(n)
}

func cmdExists(c *client, args [][]byte) {
	var n int64
	for _, k := range args[1:] {
		if _, ok := c.get(k); ok {
			n++
		}
	}
	c.wr.Int(n)
}

func cmdType(c *client, args [][]byte) {
	st, ok := c.get(args[1])
	switch {
	case !ok:
		c.wr.Simple("none")
	case st.Kind == storage.KindHash:
		c.wr.Simple("hash")
	default:
		c.wr.Simple("string")
	}
}

func cmdExpire(c *client, args [][]byte) {
	name := strings.ToLower(string(args[0]))
	n, ok := parseInt(args[2])
	if !ok {
		c.err(errNotInt)
		return
	}
	var nx, xx, gt, lt bool
	for _, a := range args[3:] {
		switch strings.ToLower(string(a)) {
		case "nx":
			nx = true
		case "xx":
			xx = true
		case "gt":
			gt = true
		case "lt":
			lt = true
		default:
			c.err("ERR Unsupported option " + trunc(a, 64))
			return
		}
	}
	if nx && (xx || gt || lt) {
		c.err("ERR NX and XX, GT or LT options at the same time are not compatible")
		return
	}
	if gt && lt {
		c.err("ERR GT and LT options at the same time are not compatible")
		return
	}
	now := c.nowMs()
	var at int64
	overflow := false
	switch name {
	case "expire":
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 || (n > 0 && n*1000 > math.MaxInt64-now) {
			overflow = true
		} else {
			at = now + n*1000
		}
	case "pexpire":
		if n > 0 && n > math.MaxInt64-now {
			overflow = true
		} else {
			at = now + n
		}
	case "expireat":
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			overflow = true
		} else {
			at = n * 1000
		}
	default:
		at = n
	}
	if overflow {
		c.err("ERR invalid expire time in '" + name + "' command")
		return
	}
	var changed bool
	if !c.update(args[1], func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
		if !ok {
			return cur, storage.OpKeep
		}
		curTTL := cur.ExpireAt
		switch {
		case nx && curTTL != 0, xx && curTTL == 0:
			return cur, storage.OpKeep
		case gt && (curTTL == 0 || at <= curTTL):
			return cur, storage.OpKeep
		case lt && curTTL != 0 && at >= curTTL:
			return cur, storage.OpKeep
		}
		changed = true
		if at <= now {
			return cur, storage.OpDelete
		}
		cur.ExpireAt = at
		cur.Version = storage.Version{}
		return cur, storage.OpPut
	}) {
		return
	}
	c.wr.Int(b2i(changed))
}

func cmdTTL(c *client, args [][]byte) {
	name := strings.ToLower(string(args[0]))
	st, ok := c.get(args[1])
	if !ok {
		c.wr.Int(-2)
		return
	}
	if st.ExpireAt == 0 {
		c.wr.Int(-1)
		return
	}
	left := st.ExpireAt - c.nowMs()
	if left < 0 {
		left = 0
	}
	switch name {
	case "ttl":
		c.wr.Int((left + 500) / 1000)
	case "pttl":
		c.wr.Int(left)
	case "expiretime":
		c.wr.Int(st.ExpireAt / 1000)
	default:
		c.wr.Int(st.ExpireAt)
	}
}

func cmdPersist(c *client, args [][]byte) {
	changed := false
	if c.update(args[1], func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
		if !ok || cur.ExpireAt == 0 {
			return cur, storage.OpKeep
		}
		changed = true
		cur.ExpireAt = 0
		cur.Version = storage.Version{}
		return cur, storage.OpPut
	}) {
		c.wr.Int(b2i(changed))
	}
}

func cmdScan(c *client, args [][]byte) {
	cursor, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		c.err("ERR invalid cursor")
		return
	}
	count := 10
	var match []byte
	typ := ""
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			c.err(errSyntax)
			return
		}
		switch strings.ToLower(string(args[i])) {
		case "match":
			match = args[i+1]
		case "count":
			n, ok := parseInt(args[i+1])
			if !ok {
				c.err(errNotInt)
				return
			}
			if n < 1 {
				c.err(errSyntax)
				return
			}
			count = int(min(n, 1<<20))
		case "type":
			typ = strings.ToLower(string(args[i+1]))
		default:
			c.err(errSyntax)
			return
		}
	}
	if cursor >= ring.Slots {
		cursor = 0
		c.wr.Array(2)
		c.wr.BulkString("0")
		c.wr.Array(0)
		return
	}
	var keys []string
	var serves func(k string) bool // in a cluster: whether k's slot is ours
	if c.srv.cfg.Router != nil {
		// Start at the next slot this node serves as primary; keys of
		// the slots it only replicates are skipped.
		for cursor < ring.Slots && !c.srv.primary(uint16(cursor)) {
			cursor++
		}
		if cursor >= ring.Slots {
			c.wr.Array(2)
			c.wr.BulkString("0")
			c.wr.Array(0)
			return
		}
		last, lastOK := -1, false
		serves = func(k string) bool {
			if sl := int(ring.Slot(k)); sl != last {
				last, lastOK = sl, c.srv.primary(uint16(sl))
			}
			return lastOK
		}
	}
	next := c.srv.kv.Scan(cursor, count, func(k string) {
		if match != nil && !globMatch(match, []byte(k)) {
			return
		}
		if serves != nil && !serves(k) {
			return
		}
		keys = append(keys, k)
	})
	if typ != "" {
		kept := keys[:0]
		for _, k := range keys {
			st, ok := c.srv.kv.Get(ring.Slot(k), k)
			if !ok {
				continue
			}
			t := "string"
			if st.Kind == storage.KindHash {
				t = "hash"
			}
			if t == typ {
				kept = append(kept, k)
			}
		}
		keys = kept
	}
	c.wr.Array(2)
	c.wr.BulkString(strconv.FormatUint(next, 10))
	c.wr.Array(len(keys))
	for _, k := range keys {
		c.wr.BulkString(k)
	}
}

// cmdFlushAll is FLUSHALL and FLUSHDB. A cluster refuses them: one node
// emptying itself would make its replicas diverge.
func cmdFlushAll(c *client, args [][]byte) {
	for _, a := range args[1:] {
		if !eq(a, "sync") && !eq(a, "async") {
			c.err(errSyntax)
			return
		}
	}
	if c.srv.cfg.Router != nil {
		c.err("ERR " + strings.ToUpper(string(args[0])) + " is not supported in a cluster; delete keys instead")
		return
	}
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.srv.kv.FlushAll(ctx); err != nil {
		c.storageErr(err)
		return
	}
	c.srv.cfg.Logger.Info("FLUSHALL: every stash removed", "addr", c.addr)
	c.wr.OK()
}

package server

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// command flags
const (
	flagWrite  = 1 << iota // changes data
	flagNoAuth             // allowed before AUTH
	flagFast               // O(1)
	flagNoKeys             // takes no keys
	flagConn               // changes connection state: refused by Exec
)

type command struct {
	name  string
	arity int // as Redis: n exact, -n at least n (name included)
	flags int
	// first, last, step: key positions, as COMMAND INFO reports them.
	first, last, step int
	// tagArg, when > 0, is the position of a stash tag whose ID's slot
	// routes the command (STASH.SET/GET/TOUCH/DEL).
	tagArg int
	fn     func(c *client, args [][]byte)
	m      *cmdMetrics
	fwd    prometheus.Counter // forwarded to another node; nil without metrics
}

// commands is built once per server (no package-level mutable state).
func (s *RESP) table() map[string]*command {
	cmds := []*command{
		{name: "ping", arity: -1, flags: flagFast | flagNoKeys, fn: cmdPing},
		{name: "echo", arity: 2, flags: flagFast | flagNoKeys, fn: cmdEcho},
		{name: "hello", arity: -1, flags: flagNoAuth | flagFast | flagNoKeys | flagConn, fn: cmdHello},
		{name: "auth", arity: -2, flags: flagNoAuth | flagFast | flagNoKeys | flagConn, fn: cmdAuth},
		{name: "select", arity: 2, flags: flagFast | flagNoKeys | flagConn, fn: cmdSelect},
		{name: "quit", arity: -1, flags: flagNoAuth | flagFast | flagNoKeys | flagConn, fn: cmdQuit},
		{name: "client", arity: -2, flags: flagNoKeys | flagConn, fn: cmdClient},
		{name: "readonly", arity: 1, flags: flagFast | flagNoKeys | flagConn, fn: cmdReadOnly},
		{name: "readwrite", arity: 1, flags: flagFast | flagNoKeys | flagConn, fn: cmdReadOnly},
		{name: "command", arity: -1, flags: flagNoKeys, fn: cmdCommand},
		{name: "info", arity: -1, flags: flagNoKeys, fn: cmdInfo},
		{name: "dbsize", arity: 1, flags: flagFast | flagNoKeys, fn: cmdDBSize},
		{name: "time", arity: 1, flags: flagFast | flagNoKeys, fn: cmdTime},
		{name: "get", arity: 2, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdGet},
		{name: "set", arity: -3, flags: flagWrite, first: 1, last: 1, step: 1, fn: cmdSet},
		{name: "setex", arity: 4, flags: flagWrite, first: 1, last: 1, step: 1, fn: cmdSetEx},
		{name: "psetex", arity: 4, flags: flagWrite, first: 1, last: 1, step: 1, fn: cmdPSetEx},
		{name: "setnx", arity: 3, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdSetNX},
		{name: "getex", arity: -2, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdGetEx},
		{name: "getdel", arity: 2, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdGetDel},
		{name: "mget", arity: -2, flags: flagFast, first: 1, last: -1, step: 1, fn: cmdMGet},
		{name: "mset", arity: -3, flags: flagWrite, first: 1, last: -1, step: 2, fn: cmdMSet},
		{name: "del", arity: -2, flags: flagWrite, first: 1, last: -1, step: 1, fn: cmdDel},
		{name: "unlink", arity: -2, flags: flagWrite | flagFast, first: 1, last: -1, step: 1, fn: cmdDel},
		{name: "exists", arity: -2, flags: flagFast, first: 1, last: -1, step: 1, fn: cmdExists},
		{name: "type", arity: 2, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdType},
		{name: "expire", arity: -3, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdExpire},
		{name: "pexpire", arity: -3, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdExpire},
		{name: "expireat", arity: -3, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdExpire},
		{name: "pexpireat", arity: -3, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdExpire},
		{name: "ttl", arity: 2, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdTTL},
		{name: "pttl", arity: 2, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdTTL},
		{name: "expiretime", arity: 2, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdTTL},
		{name: "pexpiretime", arity: 2, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdTTL},
		{name: "persist", arity: 2, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdPersist},
		{name: "hset", arity: -4, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdHSet},
		{name: "hmset", arity: -4, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdHSet},
		{name: "hsetnx", arity: 4, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdHSetNX},
		{name: "hget", arity: 3, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdHGet},
		{name: "hmget", arity: -3, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdHMGet},
		{name: "hgetall", arity: 2, first: 1, last: 1, step: 1, fn: cmdHGetAll},
		{name: "hkeys", arity: 2, first: 1, last: 1, step: 1, fn: cmdHGetAll},
		{name: "hvals", arity: 2, first: 1, last: 1, step: 1, fn: cmdHGetAll},
		{name: "hdel", arity: -3, flags: flagWrite | flagFast, first: 1, last: 1, step: 1, fn: cmdHDel},
		{name: "hexists", arity: 3, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdHExists},
		{name: "hlen", arity: 2, flags: flagFast, first: 1, last: 1, step: 1, fn: cmdHLen},
		{name: "scan", arity: -2, flags: flagNoKeys, fn: cmdScan},
		{name: "flushall", arity: -1, flags: flagWrite | flagNoKeys, fn: cmdFlushAll},
		{name: "flushdb", arity: -1, flags: flagWrite | flagNoKeys, fn: cmdFlushAll},
		{name: "cluster", arity: -2, flags: flagNoKeys, fn: cmdCluster},
		{name: "stash.put", arity: -2, flags: flagWrite | flagNoKeys, fn: cmdStashPut},
		{name: "stash.set", arity: -3, flags: flagWrite | flagNoKeys, tagArg: 1, fn: cmdStashSet},
		{name: "stash.get", arity: 2, flags: flagFast | flagNoKeys, tagArg: 1, fn: cmdStashGet},
		{name: "stash.touch", arity: 3, flags: flagWrite | flagFast | flagNoKeys, tagArg: 1, fn: cmdStashTouch},
		{name: "stash.del", arity: 2, flags: flagWrite | flagFast | flagNoKeys, tagArg: 1, fn: cmdStashDel},
	}
	m := make(map[string]*command, len(cmds))
	for _, c := range cmds {
		if s.metrics != nil {
			c.m = s.metrics.forCommand(c.name)
			if c.first > 0 || c.tagArg > 0 || c.name == "stash.put" {
				c.fwd = s.metrics.forwarded.WithLabelValues(c.name)
			}
		}
		m[c.name] = c
	}
	return m
}

func (c *client) dispatch(args [][]byte) {
	s := c.srv
	s.stats.commands.Add(1)
	name := args[0]
	var cmd *command
	if len(name) <= len(c.lower) {
		low := c.lower[:len(name)]
		for i, ch := range name {
			if ch >= 'A' && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			low[i] = ch
		}
		cmd = s.cmds[string(low)]
	}
	if cmd == nil {
		c.unknown(args)
		s.count("(unknown)", false)
		return
	}
	if !c.authed && cmd.flags&flagNoAuth == 0 {
		c.wr.Error("NOAUTH Authentication required.")
		s.count(cmd.name, false)
		return
	}
	if c.exec && cmd.flags&flagConn != 0 {
		c.connOnly(cmd)
		s.count(cmd.name, false)
		return
	}
	if c.local && cmd.flags&flagWrite != 0 {
		c.err("TRYAGAIN " + strings.ToUpper(cmd.name) + " is a write; a fallback read runs only reads")
		s.count(cmd.name, false)
		return
	}
	if (cmd.arity > 0 && len(args) != cmd.arity) || (cmd.arity < 0 && len(args) < -cmd.arity) {
		c.arityErr(cmd.name)
		s.count(cmd.name, false)
		return
	}
	c.lastCmd = cmd.name
	// One clock read serves both expiry decisions and the latency metric.
	c.now = s.cfg.Now()
	c.failed = false
	if s.cfg.Router == nil || c.here(cmd, args) {
		cmd.fn(c, args)
	}
	if cmd.m != nil {
		cmd.m.observe(!c.failed, time.Since(c.now))
	}
}

func (c *client) unknown(args [][]byte) {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.WriteString(trunc(args[0], 128))
	b.WriteString("', with args beginning with: ")
	for _, a := range args[1:] {
		if b.Len() > 512 {
			break
		}
		b.WriteString("'" + trunc(a, 128) + "' ")
	}
	c.wr.Error(b.String())
}

func trunc(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

func (c *client) arityErr(name string) {
	c.err("ERR wrong number of arguments for '" + name + "' command")
}

// err writes an error reply and marks the command failed for metrics.
func (c *client) err(msg string) {
	c.failed = true
	c.wr.Error(msg)
}

// ctx is the context for one command's storage calls: the connection's
// own, cancelled when the connection goes away. (A per-command timeout
// would cost a timer per write; a write waits only for a group commit.)
func (c *client) ctx() (context.Context, context.CancelFunc) {
	return c.base, noCancel
}

func noCancel() {}

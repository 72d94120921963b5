package server

import (
	"bytes"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stashcluster/stash/ring"
)

func eq(b []byte, s string) bool { return strings.EqualFold(string(b), s) }

func cmdPing(c *client, args [][]byte) {
	switch len(args) {
	case 1:
		c.wr.Simple("PONG")
	case 2:
		c.wr.Bulk(args[1])
	default:
		c.arityErr("ping")
	}
}

func cmdEcho(c *client, args [][]byte) { c.wr.Bulk(args[1]) }

func cmdSelect(c *client, args [][]byte) {
	n, ok := parseInt(args[1])
	if !ok {
		c.err("ERR value is not an integer or out of range")
		return
	}
	if n != 0 {
		c.err("ERR DB index is out of range")
		return
	}
	c.wr.OK()
}

func cmdQuit(c *client, args [][]byte) {
	c.wr.OK()
	c.quit = true
}

func cmdAuth(c *client, args [][]byte) {
	if len(args) > 3 {
		c.err("ERR syntax error")
		return
	}
	if c.srv.cfg.Password == "" {
		c.err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	user, pass := "", string(args[1])
	if len(args) == 3 {
		user, pass = string(args[1]), string(args[2])
	}
	if !c.srv.checkPassword(user, pass) {
		c.srv.cfg.Logger.Info("client failed to authenticate", "addr", c.addr)
		c.err("WRONGPASS invalid username-password pair or user is disabled.")
		return
	}
	c.authed = true
	c.wr.OK()
}

func cmdHello(c *client, args [][]byte) {
	proto := c.wr.Proto()
	i := 1
	if len(args) > 1 {
		p, ok := parseInt(args[1])
		if !ok {
			c.err("ERR Protocol version is not an integer or out of range")
			return
		}
		if p != 2 && p != 3 {
			c.err("NOPROTO unsupported protocol version")
			return
		}
		proto = int(p)
		i = 2
	}
	var setName []byte
	authed := c.authed
	for ; i < len(args); i++ {
		switch {
		case eq(args[i], "auth") && i+2 < len(args):
			if c.srv.cfg.Password == "" {
				c.err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
				return
			}
			if !c.srv.checkPassword(string(args[i+1]), string(args[i+2])) {
				c.srv.cfg.Logger.Info("client failed to authenticate", "addr", c.addr)
				c.err("WRONGPASS invalid username-password pair or user is disabled.")
				return
			}
			authed = true
			i += 2
		case eq(args[i], "setname") && i+1 < len(args):
			if !validName(args[i+1]) {
				c.err("ERR Client names cannot contain spaces, newlines or special characters.")
				return
			}
			setName = args[i+1]
			i++
		default:
			c.err("ERR Syntax error in HELLO option '" + trunc(args[i], 64) + "'")
			return
		}
	}
	if !authed {
		c.err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	c.authed = true
	if setName != nil {
		c.setName(string(setName))
	}
	c.wr.SetProto(proto)
	w := c.wr
	w.Map(7)
	w.BulkString("server")
	w.BulkString("stash")
	w.BulkString("version")
	w.BulkString(c.srv.cfg.Version)
	w.BulkString("proto")
	w.Int(int64(proto))
	w.BulkString("id")
	w.Int(c.id)
	w.BulkString("mode")
	w.BulkString(c.srv.mode())
	w.BulkString("role")
	w.BulkString("master")
	w.BulkString("modules")
	w.Array(0)
}

func validName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

func (c *client) setName(n string) {
	c.srv.mu.Lock()
	c.name = n
	c.srv.mu.Unlock()
}

func cmdClient(c *client, args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	switch sub {
	case "id":
		c.wr.Int(c.id)
	case "setname":
		if len(args) != 3 {
			c.arityErr("client|setname")
			return
		}
		if !validName(args[2]) {
			c.err("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.setName(string(args[2]))
		c.wr.OK()
	case "getname":
		c.srv.mu.Lock()
		n := c.name
		c.srv.mu.Unlock()
		if n == "" {
			c.wr.Null()
		} else {
			c.wr.BulkString(n)
		}
	case "setinfo":
		if len(args) != 4 {
			c.arityErr("client|setinfo")
			return
		}
		if !validName(args[3]) {
			c.err("ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.")
			return
		}
		switch {
		case eq(args[2], "lib-name"):
			c.libName = string(args[3])
		case eq(args[2], "lib-ver"):
			c.libVer = string(args[3])
		default:
			c.err("ERR Unrecognized option '" + trunc(args[2], 64) + "'")
			return
		}
		c.wr.OK()
	case "info":
		c.wr.Verbatim(c.srv.clientLine(c))
	case "list":
		c.srv.mu.Lock()
		cs := make([]*client, 0, len(c.srv.conns))
		for o := range c.srv.conns {
			cs = append(cs, o)
		}
		c.srv.mu.Unlock()
		sort.Slice(cs, func(i, j int) bool { return cs[i].id < cs[j].id })
		var b strings.Builder
		for _, o := range cs {
			b.WriteString(c.srv.clientLine(o))
		}
		c.wr.Verbatim(b.String())
	case "no-evict", "no-touch":
		c.wr.OK()
	case "capa":
		// Any capability is accepted; "redirect" makes the connection
		// cluster-aware: it gets -MOVED instead of forwarded commands.
		if len(args) < 3 {
			c.arityErr("client|capa")
			return
		}
		for _, a := range args[2:] {
			if eq(a, "redirect") {
				c.redirect = true
			}
		}
		c.wr.OK()
	case "help":
		lines := []string{
			"CLIENT <subcommand> [<arg> ...]. Subcommands are:",
			"ID", "SETNAME <name>", "GETNAME", "SETINFO <LIB-NAME|LIB-VER> <value>", "INFO", "LIST", "CAPA <option> [<option> ...]", "HELP",
		}
		c.wr.Array(len(lines))
		for _, l := range lines {
			c.wr.Simple(l)
		}
	default:
		c.err("ERR unknown subcommand '" + trunc(args[1], 64) + "'. Try CLIENT HELP.")
	}
}

func (s *RESP) clientLine(c *client) string {
	s.mu.Lock()
	name := c.name
	s.mu.Unlock()
	return fmt.Sprintf("id=%d addr=%s name=%s age=%d db=0 cmd=%s lib-name=%s lib-ver=%s resp=%d\n",
		c.id, c.addr, name, int(time.Since(c.since).Seconds()), c.lastCmd, c.libName, c.libVer, c.wr.Proto())
}

func cmdCommand(c *client, args [][]byte) {
	s := c.srv
	if len(args) == 1 {
		names := s.sortedNames()
		c.wr.Array(len(names))
		for _, n := range names {
			c.commandInfo(s.cmds[n])
		}
		return
	}
	switch strings.ToLower(string(args[1])) {
	case "count":
		c.wr.Int(int64(len(s.cmds)))
	case "list":
		names := s.sortedNames()
		c.wr.Array(len(names))
		for _, n := range names {
			c.wr.BulkString(n)
		}
	case "info":
		names := args[2:]
		if len(names) == 0 {
			all := s.sortedNames()
			c.wr.Array(len(all))
			for _, n := range all {
				c.commandInfo(s.cmds[n])
			}
			return
		}
		c.wr.Array(len(names))
		for _, n := range names {
			if cmd := s.cmds[strings.ToLower(string(n))]; cmd != nil {
				c.commandInfo(cmd)
			} else {
				c.wr.NullArray()
			}
		}
	case "docs":
		// Names with an empty doc map: enough for clients that ask at
		// start-up (redis-cli) to go on.
		var names []string
		if len(args) == 2 {
			names = s.sortedNames()
		} else {
			for _, n := range args[2:] {
				if s.cmds[strings.ToLower(string(n))] != nil {
					names = append(names, strings.ToLower(string(n)))
				}
			}
		}
		c.wr.Map(len(names))
		for _, n := range names {
			c.wr.BulkString(n)
			c.wr.Map(0)
		}
	default:
		c.err("ERR unknown subcommand '" + trunc(args[1], 64) + "'. Try COMMAND HELP.")
	}
}

func (s *RESP) sortedNames() []string {
	names := make([]string, 0, len(s.cmds))
	for n := range s.cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *client) commandInfo(cmd *command) {
	w := c.wr
	w.Array(10)
	w.BulkString(cmd.name)
	w.Int(int64(cmd.arity))
	var flags []string
	if cmd.flags&flagWrite != 0 {
		flags = append(flags, "write")
	} else {
		flags = append(flags, "readonly")
	}
	if cmd.flags&flagFast != 0 {
		flags = append(flags, "fast")
	}
	if cmd.flags&flagNoAuth != 0 {
		flags = append(flags, "no_auth")
	}
	w.Set(len(flags))
	for _, f := range flags {
		w.Simple(f)
	}
	w.Int(int64(cmd.first))
	w.Int(int64(cmd.last))
	w.Int(int64(cmd.step))
	w.Set(0)   // ACL categories
	w.Set(0)   // tips
	w.Array(0) // key specs
	w.Array(0) // subcommands
}

func cmdDBSize(c *client, args [][]byte) { c.wr.Int(c.srv.dbsize()) }

// dbsize counts the stashes this node answers for: all of them on a single
// node; in a cluster, those of the slots it serves as primary (a node also
// holds replicas of other nodes' slots).
func (s *RESP) dbsize() int64 {
	if s.cfg.Router == nil {
		return s.kv.Stats().Stashes
	}
	var n int64
	for slot := range uint16(ring.Slots) {
		if k := s.kv.SlotCount(slot); k > 0 && s.primary(slot) {
			n += int64(k)
		}
	}
	return n
}

// primary reports whether this node serves slot as its primary (reads
// without READONLY run here). Only with a Router.
func (s *RESP) primary(slot uint16) bool { return s.cfg.Router.Route(slot, false, false).Local }

// mode is the redis_mode of INFO and the mode of HELLO.
func (s *RESP) mode() string {
	if s.cfg.Router != nil {
		return "cluster"
	}
	return "standalone"
}

func cmdTime(c *client, args [][]byte) {
	now := c.srv.cfg.Now()
	c.wr.Array(2)
	c.wr.BulkString(strconv.FormatInt(now.Unix(), 10))
	c.wr.BulkString(strconv.FormatInt(int64(now.Nanosecond()/1000), 10))
}

// redisCompat is the Redis version whose command semantics Stash follows;
// some client libraries read it from INFO to pick features.
const redisCompat = "7.2.0"

func cmdInfo(c *client, args [][]byte) {
	s := c.srv
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var b bytes.Buffer
	section := func(name string, kv ...any) {
		if !all && !want[strings.ToLower(name)] {
			return
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		fmt.Fprintf(&b, "# %s\r\n", name)
		for i := 0; i+1 < len(kv); i += 2 {
			fmt.Fprintf(&b, "%v:%v\r\n", kv[i], kv[i+1])
		}
	}
	st := s.kv.Stats()
	var ms runtime.MemStats
	if all || want["memory"] {
		runtime.ReadMemStats(&ms)
	}
	up := time.Since(s.start)
	section("Server",
		"stash_version", s.cfg.Version,
		"redis_version", redisCompat,
		"redis_mode", s.mode(),
		"node_name", s.cfg.NodeName,
		"os", runtime.GOOS+" "+runtime.GOARCH,
		"go_version", runtime.Version(),
		"process_id", pid(),
		"uptime_in_seconds", int(up.Seconds()),
		"uptime_in_days", int(up.Hours()/24))
	section("Clients",
		"connected_clients", s.clients.Load(),
		"maxclients", s.cfg.MaxClients)
	section("Memory",
		"used_memory", ms.HeapAlloc,
		"used_memory_rss", ms.Sys,
		"stash_bytes", st.Bytes)
	section("Persistence",
		"loading", 0,
		"stashes_loaded", st.Loaded,
		"load_seconds", fmt.Sprintf("%.3f", st.LoadedIn.Seconds()),
		"commits", st.Commits,
		"committed_writes", st.Writes)
	section("Stats",
		"total_connections_received", s.stats.conns.Load(),
		"rejected_connections", s.stats.rejected.Load(),
		"total_commands_processed", s.stats.commands.Load(),
		"expired_keys", st.Expired)
	section("Replication", "role", "master", "connected_slaves", 0)
	section("Cluster", "cluster_enabled", b2i(s.cfg.Router != nil))
	if all || want["keyspace"] {
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# Keyspace\r\n")
		if n := s.dbsize(); n > 0 {
			fmt.Fprintf(&b, "db0:keys=%d\r\n", n)
		}
	}
	c.wr.Verbatim(b.String())
}

package server

import (
	"errors"
	"strings"
	"time"

	"github.com/stashcluster/stash/internal/stashops"
	"github.com/stashcluster/stash/tag"
)

// parseTTLOpt reads an optional trailing "TTL <seconds>" at args[i:].
func (c *client) parseTTLOpt(args [][]byte, i int) (time.Duration, bool) {
	if i == len(args) {
		return 0, true
	}
	if i+2 != len(args) || !eq(args[i], "ttl") {
		c.err(errSyntax)
		return 0, false
	}
	n, ok := parseInt(args[i+1])
	if !ok {
		c.err(errNotInt)
		return 0, false
	}
	if n <= 0 || n > 100*365*24*3600 {
		c.err("ERR invalid TTL: seconds must be between 1 and 3153600000")
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// stashErr writes the reply for an error of a STASH.* operation.
func (c *client) stashErr(err error) {
	var tl *stashops.ValueTooLargeError
	switch {
	case errors.Is(err, tag.ErrForged):
		c.err("BADTAG tag signature does not verify (forged, altered, or minted under another cluster secret)")
	case errors.Is(err, tag.ErrBadTag):
		c.err("BADTAG malformed tag: " + strings.TrimPrefix(err.Error(), "tag: "))
	case errors.As(err, &tl):
		c.err("ERR " + tl.Error())
	case errors.Is(err, stashops.ErrWrongType):
		c.err(errWrongType)
	default:
		c.storageErr(err)
	}
}

func cmdStashPut(c *client, args [][]byte) {
	ttl, ok := c.parseTTLOpt(args, 2)
	if !ok {
		return
	}
	ctx, cancel := c.ctx()
	defer cancel()
	t, err := c.srv.ops.Put(ctx, args[1], ttl)
	if err != nil && c.srv.cfg.Router != nil && isExhausted(err) {
		// In a cluster, IDs are minted in slots this node serves; it
		// serves none now, so a node that does mints it.
		c.forwardPut(c.srv.cmds["stash.put"], args)
		return
	}
	if err != nil {
		c.stashErr(err)
		return
	}
	c.wr.BulkString(t)
}

func cmdStashSet(c *client, args [][]byte) {
	ttl, ok := c.parseTTLOpt(args, 3)
	if !ok {
		return
	}
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.srv.ops.Set(ctx, string(args[1]), args[2], ttl); err != nil {
		c.stashErr(err)
		return
	}
	c.wr.OK()
}

func cmdStashGet(c *client, args [][]byte) {
	ctx, cancel := c.ctx()
	defer cancel()
	v, err := c.srv.ops.Get(ctx, string(args[1]))
	switch {
	case errors.Is(err, stashops.ErrNotFound):
		c.wr.Null()
	case err != nil:
		c.stashErr(err)
	default:
		c.wr.Bulk(v)
	}
}

func cmdStashTouch(c *client, args [][]byte) {
	n, ok := parseInt(args[2])
	if !ok {
		c.err(errNotInt)
		return
	}
	if n <= 0 || n > 100*365*24*3600 {
		c.err("ERR invalid TTL: seconds must be between 1 and 3153600000")
		return
	}
	ctx, cancel := c.ctx()
	defer cancel()
	c.presence(c.srv.ops.Touch(ctx, string(args[1]), time.Duration(n)*time.Second))
}

// presence replies 1 on success, 0 for a missing stash, or the error.
func (c *client) presence(err error) {
	switch {
	case errors.Is(err, stashops.ErrNotFound):
		c.wr.Int(0)
	case err != nil:
		c.stashErr(err)
	default:
		c.wr.Int(1)
	}
}

func cmdStashDel(c *client, args [][]byte) {
	ctx, cancel := c.ctx()
	defer cancel()
	c.presence(c.srv.ops.Delete(ctx, string(args[1])))
}

package server

import (
	"strings"

	"github.com/stashcluster/stash/storage"
)

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// hashOf decodes a hash stash; ok=false with the reply written when the key
// holds another kind or the stored encoding is damaged.
func (c *client) hashOf(st storage.Stash) ([]storage.Field, bool) {
	if st.Kind != storage.KindHash {
		c.err(errWrongType)
		return nil, false
	}
	f, err := storage.DecodeHash(st.Value)
	if err != nil {
		c.err("ERR stored hash is damaged: " + err.Error())
		return nil, false
	}
	return f, true
}

func findField(fs []storage.Field, name string) int {
	for i := range fs {
		if fs[i].Name == name {
			return i
		}
	}
	return -1
}

func cmdHSet(c *client, args [][]byte) {
	if len(args)%2 != 0 {
		c.arityErr(strings.ToLower(string(args[0])))
		return
	}
	hmset := eq(args[0], "hmset")
	c.hset(args[1], args[2:], false, func(added int) {
		if hmset {
			c.wr.OK()
		} else {
			c.wr.Int(int64(added))
		}
	})
}

func cmdHSetNX(c *client, args [][]byte) {
	c.hset(args[1], args[2:], true, func(added int) { c.wr.Int(int64(added)) })
}

// hset sets field/value pairs; with onlyNew, existing fields are kept.
func (c *client) hset(key []byte, pairs [][]byte, onlyNew bool, reply func(added int)) {
	added := 0
	var bad string
	if !c.update(key, func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
		added = 0
		var fs []storage.Field
		if ok {
			if cur.Kind != storage.KindHash {
				bad = errWrongType
				return cur, storage.OpKeep
			}
			var err error
			if fs, err = storage.DecodeHash(cur.Value); err != nil {
				bad = "ERR stored hash is damaged: " + err.Error()
				return cur, storage.OpKeep
			}
		}
		for i := 0; i < len(pairs); i += 2 {
			name, val := string(pairs[i]), string(pairs[i+1])
			if j := findField(fs, name); j >= 0 {
				if !onlyNew {
					fs[j].Value = val
				}
				continue
			}
			fs = append(fs, storage.Field{Name: name, Value: val})
			added++
		}
		if onlyNew && added == 0 {
			return cur, storage.OpKeep
		}
		enc := storage.EncodeHash(fs)
		if len(enc) > c.srv.cfg.MaxValueBytes {
			bad = "ERR hash of " + itoa(len(enc)) + " bytes would exceed max-value-bytes (" + itoa(c.srv.cfg.MaxValueBytes) + ")"
			added = 0
			return cur, storage.OpKeep
		}
		next := storage.Stash{Kind: storage.KindHash, Value: enc}
		if ok {
			next.ExpireAt = cur.ExpireAt
		}
		return next, storage.OpPut
	}) {
		return
	}
	if bad != "" {
		c.err(bad)
		return
	}
	reply(added)
}

func (c *client) getHash(key []byte) ([]storage.Field, bool, bool) {
	st, ok := c.get(key)
	if !ok {
		return nil, false, true
	}
	fs, ok := c.hashOf(st)
	return fs, true, ok
}

func cmdHGet(c *client, args [][]byte) {
	fs, exists, ok := c.getHash(args[1])
	if !ok {
		return
	}
	if exists {
		if j := findField(fs, string(args[2])); j >= 0 {
			c.wr.BulkString(fs[j].Value)
			return
		}
	}
	c.wr.Null()
}

func cmdHMGet(c *client, args [][]byte) {
	fs, _, ok := c.getHash(args[1])
	if !ok {
		return
	}
	c.wr.Array(len(args) - 2)
	for _, f := range args[2:] {
		if j := findField(fs, string(f)); j >= 0 {
			c.wr.BulkString(fs[j].Value)
		} else {
			c.wr.Null()
		}
	}
}

func cmdHGetAll(c *client, args [][]byte) {
	fs, _, ok := c.getHash(args[1])
	if !ok {
		return
	}
	switch strings.ToLower(string(args[0])) {
	case "hkeys":
		c.wr.Array(len(fs))
		for _, f := range fs {
			c.wr.BulkString(f.Name)
		}
	case "hvals":
		c.wr.Array(len(fs))
		for _, f := range fs {
			c.wr.BulkString(f.Value)
		}
	default:
		c.wr.Map(len(fs))
		for _, f := range fs {
			c.wr.BulkString(f.Name)
			c.wr.BulkString(f.Value)
		}
	}
}

func cmdHDel(c *client, args [][]byte) {
	removed := 0
	var bad string
	if !c.update(args[1], func(cur storage.Stash, ok bool) (storage.Stash, storage.Op) {
		removed = 0
		if !ok {
			return cur, storage.OpKeep
		}
		if cur.Kind != storage.KindHash {
			bad = errWrongType
			return cur, storage.OpKeep
		}
		fs, err := storage.DecodeHash(cur.Value)
		if err != nil {
			bad = "ERR stored hash is damaged: " + err.Error()
			return cur, storage.OpKeep
		}
		for _, f := range args[2:] {
			if j := findField(fs, string(f)); j >= 0 {
				fs = append(fs[:j], fs[j+1:]...)
				removed++
			}
		}
		if removed == 0 {
			return cur, storage.OpKeep
		}
		if len(fs) == 0 {
			return cur, storage.OpDelete
		}
		return storage.Stash{Kind: storage.KindHash, Value: storage.EncodeHash(fs), ExpireAt: cur.ExpireAt}, storage.OpPut
	}) {
		return
	}
	if bad != "" {
		c.err(bad)
		return
	}
	c.wr.Int(int64(removed))
}

func cmdHExists(c *client, args [][]byte) {
	fs, _, ok := c.getHash(args[1])
	if ok {
		c.wr.Int(b2i(findField(fs, string(args[2])) >= 0))
	}
}

func cmdHLen(c *client, args [][]byte) {
	fs, _, ok := c.getHash(args[1])
	if ok {
		c.wr.Int(int64(len(fs)))
	}
}

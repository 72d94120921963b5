package storage

import (
	"hash/maphash"
	"math/bits"
	"slices"
	"unsafe"
)

// This file holds the in-memory index of one slot: an open-addressing hash
// table with linear probing, a byte of hash tag per bucket, and
// backward-shift deletion (no deleted-bucket markers). The store's own
// tombstones (deleted keys kept for replication, see Stash.Deleted) are
// ordinary entries of kind kindTombstone, with no value, whose exp is the
// time the reaper removes them.
//
// Why not map[string]item? A Go map (Swiss table) with 16-byte keys and a
// 40-byte item costs 57 bytes per bucket at a load factor that swings
// between 7/16 and 7/8 with power-of-two growth; measured with 16384 maps
// holding 0.1–2M stashes that is 105–155 bytes per stash before the key and
// value bytes, over the 100-byte budget. This table costs 49 bytes per
// bucket (48-byte entry plus a tag byte), grows by 1.25× into whole
// allocation size classes and is kept between ~68% and 85% full: measured
// 60–80 bytes per stash over the same range (BenchmarkMemoryOverhead), and
// it shrinks after mass deletes, which Go maps never do. The price of the
// small growth step is more frequent rehashing (about four entry moves per
// insert, amortised), cheap next to the rest of a write.
//
// The entry keeps the value as a pointer plus a 28-bit length (the other 4
// bits hold the Kind) instead of a 16-byte string header; unsafe.String
// rebuilds the string on the way out. The pointer is an ordinary
// GC-visible pointer into the value string's allocation, so the value stays
// alive exactly as long as the entry refers to it.

const (
	// maxLoadNum/maxLoadDen is the load factor above which a table grows.
	maxLoadNum = 17
	maxLoadDen = 20
	// minCap is the capacity of a table's first allocation.
	minCap = 8

	// growNum/growDen is the factor by which a full table grows.
	growNum = 5
	growDen = 4

	vlenBits = 28
	vlenMask = 1<<vlenBits - 1
)

// entry is one stash in a table. 48 bytes.
type entry struct {
	key   string
	val   unsafe.Pointer // first byte of the value string; may be nil when the value is empty
	vlen  uint32         // low 28 bits: len(value); high 4 bits: Kind (kindTombstone for a tombstone)
	epoch uint32
	exp   int64 // ExpireAt, unix ms; 0 = never. For a tombstone: when to remove it.
	seq   uint64
}

func makeEntry(key string, kind Kind, value string, exp int64, v Version) entry {
	return entry{
		key:   key,
		val:   unsafe.Pointer(unsafe.StringData(value)),
		vlen:  uint32(len(value)) | uint32(kind)<<vlenBits,
		epoch: v.Epoch,
		exp:   exp,
		seq:   v.Seq,
	}
}

// makeTombstone returns the entry of a tombstone for key at version v, to
// be removed at gcAt (unix ms).
func makeTombstone(key string, v Version, gcAt int64) entry {
	return entry{
		key:   key,
		vlen:  uint32(kindTombstone) << vlenBits,
		epoch: v.Epoch,
		exp:   max(gcAt, 1), // never 0, which would keep it forever
		seq:   v.Seq,
	}
}

func (e *entry) value() string {
	return unsafe.String((*byte)(e.val), int(e.vlen&vlenMask))
}

func (e *entry) kind() Kind             { return Kind(e.vlen >> vlenBits) }
func (e *entry) version() Version       { return Version{Epoch: e.epoch, Seq: e.seq} }
func (e *entry) size() int64            { return int64(len(e.key)) + int64(e.vlen&vlenMask) }
func (e *entry) expired(now int64) bool { return e.exp != 0 && e.exp <= now }
func (e *entry) tombstone() bool        { return e.kind() == kindTombstone }

// live reports whether e is a stash that Get returns: not a tombstone, not
// expired.
func (e *entry) live(now int64) bool { return !e.tombstone() && !e.expired(now) }

// stash returns a copy of e; a tombstone has only Key, Version and Deleted.
func (e *entry) stash() Stash {
	if e.tombstone() {
		return Stash{Key: e.key, Version: e.version(), Deleted: true}
	}
	return Stash{
		Key:      e.key,
		Kind:     e.kind(),
		Value:    e.value(),
		ExpireAt: e.exp,
		Version:  e.version(),
	}
}

// table is the index of one slot. It is not safe for concurrent use: the
// owning slot's mutex guards it. The zero value is an empty table.
type table struct {
	tags    []uint8 // per bucket: 0 = empty, else tagOf(hash of the key)
	entries []entry // same length as tags
	n       int     // occupied buckets
}

func tagOf(h uint64) uint8 { return uint8(h) | 0x80 }

// home is the bucket a hash prefers: a multiply-shift range reduction, so
// capacities need not be powers of two.
func (t *table) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(t.tags)))
	return int(hi)
}

// capFor returns the capacity that holds n entries at the maximum load.
func capFor(n int) int {
	c := n*maxLoadDen/maxLoadNum + 1
	if c < minCap {
		c = minCap
	}
	return c
}

// find returns the bucket holding key, or -1. h is maphash of key.
func (t *table) find(h uint64, key string) int {
	c := len(t.tags)
	if c == 0 {
		return -1
	}
	tag := tagOf(h)
	for i := t.home(h); ; {
		switch tg := t.tags[i]; {
		case tg == 0:
			return -1
		case tg == tag && t.entries[i].key == key:
			return i
		}
		if i++; i == c {
			i = 0
		}
	}
}

// insert adds e, whose key must not be in the table, and returns its bucket.
func (t *table) insert(seed maphash.Seed, h uint64, e entry) int {
	if (t.n+1)*maxLoadDen > len(t.tags)*maxLoadNum {
		t.resize(seed, len(t.tags)*growNum/growDen)
	}
	t.n++
	return t.place(h, e)
}

// place puts e in the first free bucket from its home. There is one.
func (t *table) place(h uint64, e entry) int {
	c := len(t.tags)
	i := t.home(h)
	for t.tags[i] != 0 {
		if i++; i == c {
			i = 0
		}
	}
	t.tags[i] = tagOf(h)
	t.entries[i] = e
	return i
}

// resize rebuilds the table with capacity newCap (at least capFor(t.n)).
func (t *table) resize(seed maphash.Seed, newCap int) {
	if m := capFor(t.n); newCap < m {
		newCap = m
	}
	old, oldTags := t.entries, t.tags
	t.tags, t.entries = allocBuckets(newCap)
	for i, tg := range oldTags {
		if tg != 0 {
			t.place(maphash.String(seed, old[i].key), old[i])
		}
	}
}

// removeAt deletes the entry in bucket i, shifting later entries of its
// probe run back so that no deleted-bucket marker is needed. It may shrink the table.
func (t *table) removeAt(seed maphash.Seed, i int) {
	c := len(t.tags)
	j := i
	for {
		if j++; j == c {
			j = 0
		}
		if t.tags[j] == 0 {
			break
		}
		k := t.home(maphash.String(seed, t.entries[j].key))
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		var inRange bool
		if i <= j {
			inRange = i < k && k <= j
		} else {
			inRange = i < k || k <= j
		}
		if !inRange {
			t.tags[i] = t.tags[j]
			t.entries[i] = t.entries[j]
			i = j
		}
	}
	t.tags[i] = 0
	t.entries[i] = entry{}
	t.n--
	switch {
	case t.n == 0:
		*t = table{}
	case c > minCap && t.n*5 < c:
		t.resize(seed, capFor(t.n*3/2))
	}
}

// allocBuckets returns arrays of at least c buckets. The entries array is
// stretched to fill its allocation's size class: the memory is spent
// anyway (4320 bytes of 90 entries occupy a 4864-byte object), so it
// might as well hold buckets.
func allocBuckets(c int) ([]uint8, []entry) {
	es := slices.Grow([]entry(nil), c)
	es = es[:cap(es)]
	return make([]uint8, len(es)), es
}

// buildTable returns a table holding es, whose keys must be distinct,
// sized to fit them exactly.
func buildTable(seed maphash.Seed, es []entry) table {
	if len(es) == 0 {
		return table{}
	}
	t := table{n: len(es)}
	t.tags, t.entries = allocBuckets(capFor(len(es)))
	for _, e := range es {
		t.place(maphash.String(seed, e.key), e)
	}
	return t
}

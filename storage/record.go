package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"
)

// On-disk layout of stash.db (format 3; format 2 had no tombstones, and
// format 1 lacked "walckpt" and the log too; both are upgraded in place at
// Open, as they hold nothing this format does not read).
//
// Bucket "stashes": one record per stash or tombstone.
//
//	key   = slot (2 bytes, big-endian) ++ stash key
//	value = kind (1) ++ expireAt (8, BE, int64 unix ms) ++ epoch (4, BE)
//	        ++ seq (8, BE) ++ crc (4, BE) ++ value bytes
//
// A tombstone has kind 0x0F (kindTombstone), no value bytes, and, as
// expireAt, the time it is to be removed.
//
// crc is CRC-32C over the bbolt key, the first 21 header bytes and the
// value bytes, so a record that was damaged, or moved under another key,
// is detected at load.
//
// Bucket "meta": "format" → uint32 BE format version; "s" ++ slot (2 bytes)
// → uint64 BE sequence high-water of that slot, so that sequences never go
// backwards after the stash that carried the highest one was deleted;
// "walckpt" → uint64 BE, the highest write-ahead log segment (wal.go)
// whose changes are in this file.
//
// Bucket "quarantine": records rejected as corrupt at load, moved aside
// with their bytes unchanged for inspection.

const (
	formatVersion = 3
	recHdrLen     = 1 + 8 + 4 + 8 + 4
	recCRCOff     = recHdrLen - 4

	// MaxKeyLen is the longest key the store accepts, in bytes (bbolt's key
	// limit minus the 2-byte slot prefix).
	MaxKeyLen = bolt.MaxKeySize - 2
	// MaxValueLen is the longest value the store accepts, in bytes
	// (256 MiB - 1).
	MaxValueLen = vlenMask
)

var (
	bucketData       = []byte("stashes")
	bucketMeta       = []byte("meta")
	bucketQuarantine = []byte("quarantine")
	metaFormat       = []byte("format")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is a decoded stash or tombstone record.
type record struct {
	slot  uint16
	key   []byte // aliases the input
	kind  Kind   // kindTombstone for a tombstone
	exp   int64
	ver   Version
	value []byte // aliases the input
}

// recordKeyLen is the length of the bbolt key for a stash key.
func recordKeyLen(key string) int { return 2 + len(key) }

// recordValLen is the length of the bbolt value for a stash value.
func recordValLen(val string) int { return recHdrLen + len(val) }

// appendRecordKey appends the bbolt key of (slot, key) to dst.
func appendRecordKey(dst []byte, slot uint16, key string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, slot)
	return append(dst, key...)
}

// appendRecordValue appends the bbolt value of a stash to dst; bkey is the
// record's bbolt key (covered by the checksum).
func appendRecordValue(dst, bkey []byte, kind Kind, exp int64, v Version, val string) []byte {
	start := len(dst)
	dst = append(dst, byte(kind))
	dst = binary.BigEndian.AppendUint64(dst, uint64(exp))
	dst = binary.BigEndian.AppendUint32(dst, v.Epoch)
	dst = binary.BigEndian.AppendUint64(dst, v.Seq)
	dst = append(dst, 0, 0, 0, 0)
	dst = append(dst, val...)
	rec := dst[start:]
	binary.BigEndian.PutUint32(rec[recCRCOff:], recordCRC(bkey, rec))
	return dst
}

func recordCRC(bkey, rec []byte) uint32 {
	c := crc32.Update(0, castagnoli, bkey)
	c = crc32.Update(c, castagnoli, rec[:recCRCOff])
	return crc32.Update(c, castagnoli, rec[recHdrLen:])
}

// decodeRecord decodes one bbolt key/value pair of the stashes bucket.
// The returned slices alias k and v. It never panics.
func decodeRecord(k, v []byte) (record, error) {
	if len(k) < 2 {
		return record{}, fmt.Errorf("%w: key of %d bytes has no slot prefix", ErrCorrupt, len(k))
	}
	r := record{slot: binary.BigEndian.Uint16(k), key: k[2:]}
	if r.slot >= Slots {
		return r, fmt.Errorf("%w: slot %d out of range", ErrCorrupt, r.slot)
	}
	if len(r.key) > MaxKeyLen {
		return r, fmt.Errorf("%w: key of %d bytes", ErrCorrupt, len(r.key))
	}
	if len(v) < recHdrLen {
		return r, fmt.Errorf("%w: record of %d bytes is shorter than its header", ErrCorrupt, len(v))
	}
	if len(v)-recHdrLen > MaxValueLen {
		return r, fmt.Errorf("%w: value of %d bytes", ErrCorrupt, len(v)-recHdrLen)
	}
	if want, got := binary.BigEndian.Uint32(v[recCRCOff:]), recordCRC(k, v); want != got {
		return r, fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorrupt, want, got)
	}
	r.kind = Kind(v[0])
	switch {
	case r.kind == kindTombstone:
		if len(v) != recHdrLen {
			return r, fmt.Errorf("%w: tombstone with a value of %d bytes", ErrCorrupt, len(v)-recHdrLen)
		}
	case !r.kind.valid():
		return r, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, r.kind)
	}
	r.exp = int64(binary.BigEndian.Uint64(v[1:]))
	r.ver = Version{Epoch: binary.BigEndian.Uint32(v[9:]), Seq: binary.BigEndian.Uint64(v[13:])}
	r.value = v[recHdrLen:]
	return r, nil
}

// metaSlotKey is the meta bucket key holding slot's sequence high-water.
func metaSlotKey(slot uint16) []byte {
	return []byte{'s', byte(slot >> 8), byte(slot)}
}

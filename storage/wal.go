package storage

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The write-ahead log (format 2) is a directory, Dir/wal, of segment files
// named by a 16-hex-digit sequence number ("000000000000002a.wal"), each
// starting with an 8-byte header ("SWAL" ++ uint32 BE version) followed by
// frames:
//
//	frame   = length (4, BE: len(payload)) ++ crc (4, BE) ++ payload
//	payload = op (1) ++ slot (2) ++ kind (1) ++ expireAt (8) ++ epoch (4)
//	          ++ seq (8) ++ hw (8) ++ keyLen (2) ++ key ++ value
//
// crc is CRC-32C over the length bytes and the payload, so a torn or
// damaged frame is detected and replay stops before it. hw is the slot's
// sequence high-water when the change was made. op is put (1), delete (2),
// dropslot (3), flushall (4) or tombstone (5). A tombstone (a delete that
// must be remembered, see Stash.Deleted) carries its version and, as
// expireAt, the time it is to be removed; no kind or value. A delete
// removes the key, tombstone included (what the reaper does when a
// tombstone's time is up), and carries no kind, expiry or value; a
// dropslot carries only its slot (and hw); a flushall nothing.
//
// Format 1 had no tombstone op; this build replays format 1 segments too,
// and writes format 2, which older builds refuse (ErrFormat) instead of
// taking a tombstone for damage.
//
// Segment numbers are consecutive. The meta bucket's "walckpt" holds the
// highest segment a checkpoint has moved into stash.db, in the same bbolt
// transaction as the data: segments up to it are obsolete (removed after
// the checkpoint, or at Open if that did not happen), later ones are
// replayed in order.

const (
	walDirName    = "wal"
	walExt        = ".wal"
	walVersion    = 2 // format written
	walOldest     = 1 // oldest format replayed
	walHdrLen     = 8
	walFrameHdr   = 8
	walPayloadHdr = 1 + 2 + 1 + 8 + 4 + 8 + 8 + 2
	// walMaxPayload bounds a frame's length before it is read.
	walMaxPayload = walPayloadHdr + MaxKeyLen + MaxValueLen
)

var walMagic = [4]byte{'S', 'W', 'A', 'L'}

// walOp is what a log record does.
type walOp uint8

const (
	walPut walOp = iota + 1
	walDelete
	walDropSlot
	walFlushAll
	walTombstone
)

// walRecord is one decoded log record. key and value alias the input.
type walRecord struct {
	op    walOp
	slot  uint16
	kind  Kind
	exp   int64
	epoch uint32
	seq   uint64
	hw    uint64
	key   []byte
	value []byte
}

// appendWALRecord appends r's frame to dst.
func appendWALRecord(dst []byte, r *walRecord) []byte {
	return appendWALFrame(dst, r.op, r.slot, r.kind, r.exp, r.epoch, r.seq, r.hw, r.key, r.value)
}

// appendWALWrite appends the frame of a pending write to dst.
func appendWALWrite(dst []byte, k wkey, w *wval) []byte {
	switch {
	case w.del:
		return appendWALFrame(dst, walDelete, k.slot, 0, 0, 0, 0, w.hw, k.key, "")
	case w.kind == kindTombstone:
		return appendWALFrame(dst, walTombstone, k.slot, 0, w.exp, w.epoch, w.seq, w.hw, k.key, "")
	}
	return appendWALFrame(dst, walPut, k.slot, w.kind, w.exp, w.epoch, w.seq, w.hw, k.key, w.val)
}

func appendWALFrame[S ~string | ~[]byte](dst []byte, op walOp, slot uint16, kind Kind, exp int64, epoch uint32, seq, hw uint64, key, value S) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0) // length and crc, filled below
	dst = append(dst, byte(op))
	dst = binary.BigEndian.AppendUint16(dst, slot)
	dst = append(dst, byte(kind))
	dst = binary.BigEndian.AppendUint64(dst, uint64(exp))
	dst = binary.BigEndian.AppendUint32(dst, epoch)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, hw)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = append(dst, value...)
	f := dst[start:]
	binary.BigEndian.PutUint32(f, uint32(len(f)-walFrameHdr))
	binary.BigEndian.PutUint32(f[4:], walCRC(f[:4], f[walFrameHdr:]))
	return dst
}

func walCRC(length, payload []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, length), castagnoli, payload)
}

// errWALShort reports a frame cut short by the end of its input.
var errWALShort = fmt.Errorf("%w: log frame cut short", ErrCorrupt)

// checkWALFrameHdr returns the payload length a frame header announces.
func checkWALFrameHdr(hdr []byte) (int, error) {
	n := binary.BigEndian.Uint32(hdr)
	if n < walPayloadHdr || n > walMaxPayload {
		return 0, fmt.Errorf("%w: log frame of %d bytes", ErrCorrupt, n)
	}
	return int(n), nil
}

// decodeWALFrame decodes the frame at the start of b and returns it with
// its length. It returns errWALShort if b ends within the frame and an
// ErrCorrupt error for anything else invalid; it never panics. The
// record's slices alias b.
func decodeWALFrame(b []byte) (walRecord, int, error) {
	if len(b) < walFrameHdr {
		return walRecord{}, 0, errWALShort
	}
	n, err := checkWALFrameHdr(b)
	if err != nil {
		return walRecord{}, 0, err
	}
	if len(b)-walFrameHdr < n {
		return walRecord{}, 0, errWALShort
	}
	r, err := decodeWALPayload(b[:4], binary.BigEndian.Uint32(b[4:]), b[walFrameHdr:walFrameHdr+n])
	return r, walFrameHdr + n, err
}

// decodeWALPayload checks a frame's crc and decodes its payload.
func decodeWALPayload(length []byte, crc uint32, p []byte) (walRecord, error) {
	if got := walCRC(length, p); got != crc {
		return walRecord{}, fmt.Errorf("%w: log frame checksum %08x, computed %08x", ErrCorrupt, crc, got)
	}
	r := walRecord{
		op:    walOp(p[0]),
		slot:  binary.BigEndian.Uint16(p[1:]),
		kind:  Kind(p[3]),
		exp:   int64(binary.BigEndian.Uint64(p[4:])),
		epoch: binary.BigEndian.Uint32(p[12:]),
		seq:   binary.BigEndian.Uint64(p[16:]),
		hw:    binary.BigEndian.Uint64(p[24:]),
	}
	klen := int(binary.BigEndian.Uint16(p[32:]))
	rest := p[walPayloadHdr:]
	if klen > len(rest) || klen > MaxKeyLen {
		return walRecord{}, fmt.Errorf("%w: log record key of %d bytes", ErrCorrupt, klen)
	}
	r.key, r.value = rest[:klen:klen], rest[klen:]
	if r.slot >= Slots {
		return walRecord{}, fmt.Errorf("%w: log record slot %d", ErrCorrupt, r.slot)
	}
	switch r.op {
	case walPut:
		if !r.kind.valid() {
			return walRecord{}, fmt.Errorf("%w: log record kind %d", ErrCorrupt, r.kind)
		}
		if len(r.value) > MaxValueLen {
			return walRecord{}, fmt.Errorf("%w: log record value of %d bytes", ErrCorrupt, len(r.value))
		}
	case walTombstone:
		if r.kind != 0 || len(r.value) != 0 {
			return walRecord{}, fmt.Errorf("%w: log tombstone with a kind or value", ErrCorrupt)
		}
	case walDelete, walDropSlot, walFlushAll:
		if len(r.value) != 0 {
			return walRecord{}, fmt.Errorf("%w: log record op %d with a value", ErrCorrupt, r.op)
		}
	default:
		return walRecord{}, fmt.Errorf("%w: log record op %d", ErrCorrupt, r.op)
	}
	return r, nil
}

func walHeader() []byte {
	return binary.BigEndian.AppendUint32(walMagic[:], walVersion)
}

func segmentName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, walExt) }

// segment is one log file.
type segment struct {
	seq  uint64
	size int64 // bytes on disk
}

// listSegments returns the log segments in dir, in order.
func listSegments(dir string) ([]segment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), walExt)
		if !ok || len(name) != 16 || !de.Type().IsRegular() {
			continue
		}
		seq, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			return nil, err
		}
		segs = append(segs, segment{seq: seq, size: fi.Size()})
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.seq, b.seq) })
	return segs, nil
}

// walWriter appends to the current segment. Owned by the committer.
type walWriter struct {
	dir  string
	sync bool // fdatasync after each append (not under FsyncNever)
	f    *os.File
	seq  uint64
	off  int64 // end of the last complete append
	pend int64 // bytes written by the batch being appended, after off
	// torn is set when an append or its sync failed: the file may hold a
	// partial frame, or bytes the disk did not take, after off. The next
	// append first truncates the file back to off, so that a frame never
	// follows garbage.
	torn bool
}

// createSegment creates segment seq in w.dir (truncating a leftover of a
// failed attempt), writes its header and makes its name durable.
func (w *walWriter) createSegment(seq uint64) (*os.File, error) {
	path := filepath.Join(w.dir, segmentName(seq))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err = f.WriteAt(walHeader(), 0); err == nil && w.sync {
		err = syncDir(w.dir)
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(path) // holds nothing yet; a leftover is truncated by the next attempt
		return nil, fmt.Errorf("creating log segment %s: %w", path, err)
	}
	return f, nil
}

// open starts writing segment seq.
func (w *walWriter) open(seq uint64) error {
	f, err := w.createSegment(seq)
	if err != nil {
		return err
	}
	w.f, w.seq, w.off, w.torn = f, seq, walHdrLen, false
	return nil
}

// walChunk is the most a batch's records are buffered before being
// written: a batch up to this size is one write call, a larger one (a
// burst under FsyncBatch) is written in pieces of this size, all before
// one fdatasync.
const walChunk = 4 << 20

// begin starts appending a batch.
func (w *walWriter) begin() error {
	if w.torn {
		if err := w.f.Truncate(w.off); err != nil {
			return fmt.Errorf("log segment %s: truncating a failed append: %w", segmentName(w.seq), err)
		}
		w.torn = false
	}
	w.pend = 0
	return nil
}

// write writes p after what the batch wrote so far.
func (w *walWriter) write(p []byte) error {
	if _, err := w.f.WriteAt(p, w.off+w.pend); err != nil {
		w.torn = true
		return fmt.Errorf("log segment %s: %w", segmentName(w.seq), err)
	}
	w.pend += int64(len(p))
	return nil
}

// commit ends the batch: unless FsyncNever, it fdatasyncs the segment.
// On error nothing of the batch counts as written.
func (w *walWriter) commit() error {
	if w.sync {
		if err := fdatasync(w.f); err != nil {
			w.torn = true
			return fmt.Errorf("log segment %s: %w", segmentName(w.seq), err)
		}
	}
	w.off += w.pend
	w.pend = 0
	return nil
}

// append appends p as one batch.
func (w *walWriter) append(p []byte) error {
	if err := w.begin(); err != nil {
		return err
	}
	if err := w.write(p); err != nil {
		return err
	}
	return w.commit()
}

// rotate closes the current segment and starts the next one; it returns
// the closed segment. On error the current segment stays open.
func (w *walWriter) rotate() (segment, error) {
	if w.torn {
		if err := w.f.Truncate(w.off); err != nil {
			return segment{}, fmt.Errorf("log segment %s: truncating a failed append: %w", segmentName(w.seq), err)
		}
		w.torn = false
	}
	f, err := w.createSegment(w.seq + 1)
	if err != nil {
		return segment{}, err
	}
	old := segment{seq: w.seq, size: w.off}
	closeFile(w.f)
	w.f, w.seq, w.off = f, w.seq+1, walHdrLen
	return old, nil
}

// close closes the current segment file and returns it.
func (w *walWriter) close() segment {
	closeFile(w.f)
	return segment{seq: w.seq, size: w.off}
}

// closeFile closes a segment file whose appends were all synced (or need
// not be): an error closing it loses nothing.
func closeFile(f *os.File) { _ = f.Close() }

// segmentReader reads the frames of one segment in order. It reads the
// file in blocks of walBlock bytes (or a frame's size, if larger) and
// never reuses one, so the records it returns stay valid, and can be
// handed to other goroutines, without a copy.
type segmentReader struct {
	r    io.Reader
	size int64 // of the file
	off  int64 // file offset of the next frame
	buf  []byte
	pos  int // of the next frame in buf
	name string
}

const walBlock = 4 << 20

// openSegment checks the header of segment r, size bytes long, and returns
// a reader positioned after it. It returns errWALShort if the file is
// shorter than its header.
func openSegment(r io.Reader, name string, size int64) (*segmentReader, error) {
	var hdr [walHdrLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errWALShort
		}
		return nil, err
	}
	if [4]byte(hdr[:4]) != walMagic {
		return nil, fmt.Errorf("%w: %s is not a log segment (header %x)", ErrCorrupt, name, hdr)
	}
	if v := binary.BigEndian.Uint32(hdr[4:]); v < walOldest || v > walVersion {
		return nil, fmt.Errorf("%w: log segment %s has format %d, this build reads %d to %d", ErrFormat, name, v, walOldest, walVersion)
	}
	return &segmentReader{r: r, size: size, off: walHdrLen, name: name}, nil
}

// fill makes at least need bytes available at sr.pos, in a new block,
// unless the file ends first.
func (sr *segmentReader) fill(need int) error {
	rest := sr.buf[sr.pos:]
	nb := make([]byte, max(walBlock, need))
	n := copy(nb, rest)
	m, err := io.ReadFull(sr.r, nb[n:])
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	sr.buf, sr.pos = nb[:n+m], 0
	return err
}

// next returns the next record, io.EOF at a clean end, errWALShort at a
// frame cut short, an ErrCorrupt error at a damaged one, or an I/O error.
func (sr *segmentReader) next() (walRecord, error) {
	if len(sr.buf)-sr.pos < walFrameHdr {
		if err := sr.fill(walFrameHdr); err != nil {
			return walRecord{}, err
		}
		switch avail := len(sr.buf) - sr.pos; {
		case avail == 0:
			return walRecord{}, io.EOF
		case avail < walFrameHdr:
			return walRecord{}, errWALShort
		}
	}
	hdr := sr.buf[sr.pos : sr.pos+walFrameHdr]
	n, err := checkWALFrameHdr(hdr)
	if err != nil {
		return walRecord{}, err
	}
	if sr.off+walFrameHdr+int64(n) > sr.size {
		return walRecord{}, errWALShort // do not read (or allocate) what a torn length says
	}
	if len(sr.buf)-sr.pos < walFrameHdr+n {
		if err := sr.fill(walFrameHdr + n); err != nil {
			return walRecord{}, err
		}
		if len(sr.buf)-sr.pos < walFrameHdr+n {
			return walRecord{}, errWALShort // the file shrank under us
		}
		hdr = sr.buf[sr.pos : sr.pos+walFrameHdr]
	}
	p := sr.buf[sr.pos+walFrameHdr : sr.pos+walFrameHdr+n : sr.pos+walFrameHdr+n]
	r, err := decodeWALPayload(hdr[:4], binary.BigEndian.Uint32(hdr[4:]), p)
	if err != nil {
		return walRecord{}, err
	}
	sr.pos += walFrameHdr + n
	sr.off += int64(walFrameHdr + n)
	return r, nil
}

package storage

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// replayResult counts what replay did.
type replayResult struct {
	records   int64 // records applied
	discarded int64 // bytes of log dropped as a torn or corrupt tail
}

// replay applies the log segments after walCkpt (the last one a checkpoint
// covered) to memory, in order, and returns the log state the batcher
// starts from: a fresh segment open for appends, the replayed segments
// (removed by the first checkpoint) and the keys they changed.
//
// Replay stops at the first frame that is cut short or fails its checksum,
// keeping every record before it. In the last segment that is the torn
// tail of an append a crash interrupted: the segment is cut there, so that
// the log stays a clean sequence of frames. Anywhere else it is damage:
// the segment is copied to "<name>.bad" before being cut, and the later
// segments, which cannot be applied without the records lost, are renamed
// to "<name>.bad". A missing segment number is handled likewise.
func (s *Store) replay(dir string, walCkpt uint64) (walState, replayResult, error) {
	var rep replayResult
	ws := walState{dirty: newDirtySet()}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ws, rep, err
	}
	segs, err := listSegments(dir)
	if err != nil {
		return ws, rep, err
	}
	for len(segs) > 0 && segs[0].seq <= walCkpt {
		// Covered by the last checkpoint, which crashed before removing it.
		path := filepath.Join(dir, segmentName(segs[0].seq))
		if err := os.Remove(path); err != nil {
			return ws, rep, err
		}
		segs = segs[1:]
	}
	next := walCkpt + 1
	changed := false // directory entries changed: sync the directory
	ap := s.newApplier()
	defer func() {
		if ap != nil {
			ap.finish()
		}
	}()
	for k, sg := range segs {
		if sg.seq != next {
			s.log.Error("storage: log segment missing; the later segments are not replayed and were renamed *.bad",
				"dir", dir, "missing", segmentName(next), "segments", len(segs)-k)
			n, err := setAside(dir, segs[k:])
			rep.discarded += n
			if err != nil {
				return ws, rep, err
			}
			changed = true
			break
		}
		n, good, err := replaySegment(dir, sg, ap)
		rep.records += n
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return ws, rep, fmt.Errorf("log segment %s: %w", segmentName(sg.seq), err)
		}
		next++
		if err == nil {
			ws.sealed = append(ws.sealed, sg)
			ws.bytes += sg.size
			continue
		}
		path := filepath.Join(dir, segmentName(sg.seq))
		last := k == len(segs)-1
		if last {
			s.log.Warn("storage: torn tail of the log cut off (a crash interrupted an append)",
				"segment", path, "records", n, "kept_bytes", good, "cut_bytes", sg.size-good, "err", err)
		} else {
			s.log.Error("storage: corrupt log record; replay stopped before it. The segment was copied to *.bad and later segments renamed *.bad",
				"segment", path, "offset", good, "later_segments", len(segs)-k-1, "err", err)
			if err := copyFile(path, path+".bad"); err != nil {
				return ws, rep, err
			}
		}
		size, err := cutSegment(path, good)
		if err != nil {
			return ws, rep, err
		}
		rep.discarded += sg.size - size
		ws.sealed = append(ws.sealed, segment{seq: sg.seq, size: size})
		ws.bytes += size
		if !last {
			n, err := setAside(dir, segs[k+1:])
			rep.discarded += n
			if err != nil {
				return ws, rep, err
			}
			changed = true
		}
		break
	}
	ws.dirty = ap.finish()
	ap = nil
	w := &walWriter{dir: dir, sync: s.cfg.Fsync != FsyncNever}
	if err := w.open(next); err != nil {
		return ws, rep, err
	}
	ws.w = w
	ws.bytes += walHdrLen
	if changed && w.sync {
		if err := syncDir(dir); err != nil {
			w.close()
			return ws, rep, err
		}
	}
	return ws, rep, nil
}

// replaySegment applies the records of one segment and returns how many it
// applied and the offset after the last. An ErrCorrupt error means a frame
// at that offset is cut short or damaged; other errors are I/O errors.
func replaySegment(dir string, sg segment, ap *applier) (int64, int64, error) {
	name := segmentName(sg.seq)
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sr, err := openSegment(f, name, sg.size)
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for {
		r, err := sr.next()
		if err == io.EOF {
			return n, sr.off, nil
		}
		if err != nil {
			return n, sr.off, err
		}
		ap.add(r)
		n++
	}
}

// applyBatch is how many records the reader hands a worker at a time.
const applyBatch = 256

// applier applies replayed records on worker goroutines, one per part of
// the slots (slot % workers): the records of one slot, hence of one key,
// are applied by one worker in log order, and a flushall by every worker,
// to its slots, in its place in the log. Each worker notes its changes in
// its own dirtySet.
type applier struct {
	in    []chan []walRecord // per worker; closed by finish
	batch [][]walRecord      // per worker: records not handed over yet
	dirty []*dirtySet        // per worker; read after the workers exit
	wg    sync.WaitGroup
}

func (s *Store) newApplier() *applier {
	w := runtime.GOMAXPROCS(0)
	a := &applier{in: make([]chan []walRecord, w), batch: make([][]walRecord, w), dirty: make([]*dirtySet, w)}
	for i := range w {
		a.in[i] = make(chan []walRecord, 8)
		a.dirty[i] = newDirtySet()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for recs := range a.in[i] {
				for j := range recs {
					s.replayRecord(&recs[j], a.dirty[i], i, w)
				}
			}
		}()
	}
	return a
}

// add hands r to the worker owning its slot (every worker for a flushall).
// r's slices must stay valid until finish.
func (a *applier) add(r walRecord) {
	if r.op == walFlushAll {
		for i := range a.in {
			a.push(i, r)
		}
		return
	}
	a.push(int(r.slot)%len(a.in), r)
}

func (a *applier) push(i int, r walRecord) {
	if a.batch[i] == nil {
		a.batch[i] = make([]walRecord, 0, applyBatch)
	}
	a.batch[i] = append(a.batch[i], r)
	if len(a.batch[i]) == applyBatch {
		a.in[i] <- a.batch[i]
		a.batch[i] = nil
	}
}

// finish applies what is left, stops the workers and returns their changes
// merged (each worker's set holds only its own slots, so the merge is a
// union).
func (a *applier) finish() *dirtySet {
	for i := range a.in {
		if len(a.batch[i]) > 0 {
			a.in[i] <- a.batch[i]
		}
		close(a.in[i])
	}
	a.wg.Wait()
	d := newDirtySet()
	for _, wd := range a.dirty {
		d.flushAll = d.flushAll || wd.flushAll
		d.keys = append(d.keys, wd.keys...)
		for slot := range wd.drops {
			d.drop(slot)
		}
		for i := range d.slots {
			d.slots[i] |= wd.slots[i]
		}
	}
	return d
}

// replayRecord applies one log record to memory and notes it in d; a
// flushall empties the slots of part (slot % parts == part). Records apply
// unconditionally: the log's order is the order the changes were made in.
func (s *Store) replayRecord(r *walRecord, d *dirtySet, part, parts int) {
	if r.op == walFlushAll {
		for i := part; i < Slots; i += parts {
			sl := &s.slots[i]
			sl.mu.Lock()
			s.clearLocked(sl)
			sl.mu.Unlock()
		}
		d.flush()
		return
	}
	sl := &s.slots[r.slot]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.seq = max(sl.seq, r.hw, r.seq)
	switch r.op {
	case walPut, walTombstone:
		key := string(r.key)
		h := maphash.String(s.seed, key)
		v := Version{Epoch: r.epoch, Seq: r.seq}
		var e entry
		if r.op == walPut {
			e = makeEntry(key, r.kind, string(r.value), r.exp, v)
		} else {
			e = makeTombstone(key, v, r.exp) // removed by the reaper if due
		}
		s.storeLocked(sl, h, sl.t.find(h, key), &e)
		d.add(wkey{slot: r.slot, key: e.key})
	case walDelete:
		key := string(r.key)
		if i := sl.t.find(maphash.String(s.seed, key), key); i >= 0 {
			key = s.removeLocked(sl, i)
		}
		d.add(wkey{slot: r.slot, key: key})
	case walDropSlot:
		s.clearLocked(sl)
		d.drop(r.slot)
	}
}

// cutSegment truncates segment path to its first size bytes (at least its
// header, rewritten if damaged), syncs it and returns its new size.
func cutSegment(path string, size int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	if size < walHdrLen {
		size = walHdrLen
		_, err = f.WriteAt(walHeader(), 0)
	}
	if err == nil {
		err = f.Truncate(size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("cutting log segment %s: %w", path, err)
	}
	return size, nil
}

// setAside renames segments to "<name>.bad", out of replay's way, and
// returns their total size.
func setAside(dir string, segs []segment) (int64, error) {
	var n int64
	for _, sg := range segs {
		path := filepath.Join(dir, segmentName(sg.seq))
		if err := os.Rename(path, path+".bad"); err != nil {
			return n, err
		}
		n += sg.size
	}
	return n, nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o600)
	}
	return err
}

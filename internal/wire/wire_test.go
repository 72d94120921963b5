package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestRoundTrip(t *testing.T) {
	msgs := []*Msg{
		{Kind: KindForward, ID: 1, Epoch: 7, From: "n1", Slot: 12182, Args: [][]byte{[]byte("SET"), []byte("foo"), {0, 1, 2}}},
		{Kind: KindReply, ID: 1, Reply: []byte("+OK\r\n")},
		{Kind: KindReplicate, ID: 2, Epoch: 9, Slot: 5, Entries: []Entry{
			{Key: "a", Kind: 1, Value: "x", ExpireAt: 1700000000000, Epoch: 9, Seq: 41},
			{Key: "b", Epoch: 9, Seq: 42, Deleted: true},
		}},
		{Kind: KindAck, ID: 2, Err: "STALE epoch 8 < 9"},
		{Kind: KindDigest, ID: 3, Slots: []uint16{0, 16383}},
		{Kind: KindDigests, ID: 3, Digests: []uint64{0, ^uint64(0)}, States: []byte{SlotComplete, SlotLost}},
		{Kind: KindEntries, ID: 4, Last: true},
		{Kind: KindForward, ID: 5, Epoch: 3, Slot: 9, Args: [][]byte{[]byte("GET"), []byte("k")}, Fallback: true},
		// Larger than the reader's buffer: read whole before decoding,
		// unlike the frames around it.
		{Kind: KindEntries, ID: 6, Entries: []Entry{{Key: "big", Kind: 1, Value: strings.Repeat("b", 200<<10), Seq: 1}}},
		{Kind: KindAck, ID: 7},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf)
	for i, want := range msgs {
		got, err := r.Read()
		if err != nil {
			t.Fatalf("msg %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("msg %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	if _, err := r.Read(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: %v", err)
	}
}

func TestRejects(t *testing.T) {
	frame := func(body []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		return append(b, body...)
	}
	wrongVersion := (&Msg{V: 99, Kind: KindAck}).appendBody(nil)
	unknownKind := (&Msg{V: Version, Kind: 200}).appendBody(nil)
	trailing := append((&Msg{V: Version, Kind: KindAck}).appendBody(nil), 0x01)
	tooFew, _ := msgpack.Marshal([]any{Version, KindAck})
	// 15 fields: version, kind, ID, epoch, then From claims ~4 GiB.
	hugeString := []byte{0x9f, Version, byte(KindAck), 0, 0, 0xdb, 0xff, 0xff, 0xff, 0xf0}
	cases := map[string]struct {
		in   []byte
		want error
	}{
		"huge length":   {binary.BigEndian.AppendUint32(nil, MaxFrame+1), ErrFrameTooLarge},
		"garbage body":  {frame([]byte{0xc1, 0xff, 0x00}), ErrBadFrame},
		"wrong version": {frame(wrongVersion), ErrBadFrame},
		"unknown kind":  {frame(unknownKind), ErrBadFrame},
		"trailing byte": {frame(trailing), ErrBadFrame},
		"too few":       {frame(tooFew), ErrBadFrame},
		"huge string":   {frame(hugeString), ErrBadFrame},
		"torn body":     {frame([]byte{1, 2, 3})[:5], io.ErrUnexpectedEOF},
		"torn header":   {[]byte{0, 0}, io.ErrUnexpectedEOF},
		"torn big body": {frame(make([]byte, 100<<10))[:70<<10], io.ErrUnexpectedEOF},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(c.in)).Read()
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

// FuzzDecode: no input panics, and whatever decodes re-encodes to a frame
// that decodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, m := range []*Msg{
		{V: Version, Kind: KindForward, Args: [][]byte{[]byte("GET"), []byte("k")}},
		{V: Version, Kind: KindReplicate, Entries: []Entry{{Key: "k", Value: "v", Seq: 3}}},
	} {
		f.Add(m.appendBody(nil))
	}
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		back, err := NewReader(&buf).Read()
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if !reflect.DeepEqual(normalize(back), normalize(m)) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", back, m)
		}
	})
}

// normalize maps empty slices to nil, as omitempty does.
func normalize(m *Msg) *Msg {
	c := *m
	if len(c.Slots) == 0 {
		c.Slots = nil
	}
	if len(c.Args) == 0 {
		c.Args = nil
	}
	for i := range c.Args {
		if len(c.Args[i]) == 0 {
			c.Args[i] = nil
		}
	}
	if len(c.Reply) == 0 {
		c.Reply = nil
	}
	if len(c.Entries) == 0 {
		c.Entries = nil
	}
	if len(c.Digests) == 0 {
		c.Digests = nil
	}
	return &c
}

func BenchmarkWriteRead(b *testing.B) {
	m := &Msg{Kind: KindReplicate, ID: 1, Epoch: 3, Slot: 77, Entries: []Entry{{Key: "stash:abcdefghijklmnopqrstuv", Kind: 1, Value: strings.Repeat("v", 1024), ExpireAt: 1, Epoch: 3, Seq: 99}}}
	pr, pw := io.Pipe()
	w := NewWriter(pw)
	r := NewReader(pr)
	go func() {
		for {
			if _, err := r.Read(); err != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	b.SetBytes(1100)
	for b.Loop() {
		w.Write(m)
		w.Flush()
	}
	pw.Close()
}

// chunks is a reader that hands out its chunks one per Read call, as a
// connection hands out what has arrived.
type chunks [][]byte

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*c)[0])
	(*c)[0] = (*c)[0][n:]
	if len((*c)[0]) == 0 {
		*c = (*c)[1:]
	}
	return n, nil
}

func TestReadyOnlyForWholeBufferedFrames(t *testing.T) {
	one, err := AppendFrame(nil, &Msg{Kind: KindAck, ID: 1})
	if err != nil {
		t.Fatal(err)
	}
	two, err := AppendFrame(nil, &Msg{Kind: KindAck, ID: 2, Err: "ERR x"})
	if err != nil {
		t.Fatal(err)
	}
	// First read brings frame one and half of frame two; the rest of two
	// arrives with a later read.
	in := chunks{append(append([]byte{}, one...), two[:3]...), two[3:]}
	r := NewReader(&in)
	if r.Ready() {
		t.Fatal("Ready before anything was read")
	}
	if m, err := r.Read(); err != nil || m.ID != 1 {
		t.Fatalf("first frame: %+v, %v", m, err)
	}
	if r.Ready() {
		t.Fatal("Ready with only 3 bytes of the next frame buffered")
	}
	if m, err := r.Read(); err != nil || m.ID != 2 {
		t.Fatalf("second frame: %+v, %v", m, err)
	}
	// Two whole frames in one read: Ready between them.
	in = chunks{append(append([]byte{}, one...), two...)}
	r = NewReader(&in)
	if _, err := r.Read(); err != nil {
		t.Fatal(err)
	}
	if !r.Ready() {
		t.Fatal("not Ready with a whole frame buffered")
	}
}

// BenchmarkCodec encodes and decodes one replicated 1 KiB write and its
// ack: the frames every acknowledged write costs.
func BenchmarkCodec(b *testing.B) {
	m := &Msg{Kind: KindReplicate, ID: 123456, Epoch: 3, From: "node-1", Slot: 7777, Entries: []Entry{{Key: "stash:abcdefghijklmnopqrstuv", Kind: 1, Value: strings.Repeat("v", 1024), ExpireAt: 1790000000000, Epoch: 3, Seq: 991234}}}
	ack := &Msg{Kind: KindAck, ID: 123456, From: "node-2"}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		for _, x := range []*Msg{m, ack} {
			var err error
			buf, err = AppendFrame(buf[:0], x)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Decode(buf[4:]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestMsgpackCompat: frames are plain msgpack. A general msgpack decoder
// reads what Encoder writes, and Decode reads what a general encoder
// writes with its own choice of integer widths.
func TestMsgpackCompat(t *testing.T) {
	m := &Msg{Kind: KindReplicate, ID: 1 << 40, Epoch: 300, From: "node-1", Slot: 16383, Slots: []uint16{1, 2},
		Args: [][]byte{[]byte("SET"), {}}, Entries: []Entry{{Key: "k", Kind: 1, Value: strings.Repeat("v", 300), ExpireAt: -5, Epoch: 70000, Seq: 1 << 33, Deleted: true}},
		Digests: []uint64{^uint64(0)}, Last: true, Err: string(bytes.Repeat([]byte("e"), 40)), Proto: 3, States: []byte{SlotComplete}, Fallback: true,
		Marks: []uint64{4, 1 << 40}, ValueArgs: []byte{3}}
	frame, err := AppendFrame(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	var fields []any
	if err := msgpack.Unmarshal(frame[4:], &fields); err != nil {
		t.Fatalf("a msgpack decoder cannot read the frame: %v", err)
	}
	if len(fields) != msgFields || fields[4] != "node-1" || fmt.Sprint(fields[13]) != "3" {
		t.Fatalf("msgpack decoder read %d fields: %v", len(fields), fields)
	}
	entry := fields[9].([]any)[0].([]any)
	if entry[0] != "k" || string(entry[2].([]byte)) != m.Entries[0].Value || fmt.Sprint(entry[3]) != "-5" || fmt.Sprint(entry[5]) != "8589934592" || entry[6] != true {
		t.Fatalf("entry as a msgpack decoder reads it: %v", entry)
	}

	// The same message from a general encoder, integers at full width.
	body, err := msgpack.Marshal([]any{
		int64(Version), int64(KindReplicate), uint64(1 << 40), int64(300), "node-1", int64(16383), []any{int64(1), uint16(2)},
		[][]byte{[]byte("SET"), {}}, nil,
		[]any{[]any{"k", int32(1), []byte(m.Entries[0].Value), int64(-5), int64(70000), uint64(1 << 33), true}},
		[]uint64{^uint64(0)}, true, m.Err, int16(3), []byte{SlotComplete}, true, []any{int8(4), uint64(1 << 40)}, []byte{3},
		map[string]any{"a field": "from a newer sender"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(body)
	if err != nil {
		t.Fatalf("Decode of a general encoder's frame: %v", err)
	}
	m.V = Version
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("Decode of a general encoder's frame:\n got %+v\nwant %+v", got, m)
	}

	// A frame of an older node, without the last field, still decodes.
	older, err := msgpack.Marshal([]any{Version, KindAck, 7, 1, "n1", 0, nil, nil, nil, nil, nil, false, "", 0, nil})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Decode(older); err != nil || got.ID != 7 || got.Fallback {
		t.Fatalf("Decode of a 15-field frame: %+v, %v", got, err)
	}
	// One without Marks (a node before them) too.
	older, err = msgpack.Marshal([]any{Version, KindEntries, 8, 1, "n1", 0, []any{5}, nil, nil, nil, nil, true, "", 0, nil, false})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Decode(older); err != nil || got.ID != 8 || len(got.Slots) != 1 || got.Marks != nil {
		t.Fatalf("Decode of a 16-field frame: %+v, %v", got, err)
	}
}

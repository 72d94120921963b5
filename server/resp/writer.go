package resp

import (
	"bufio"
	"io"
	"math"
	"strconv"
)

// Writer writes replies in RESP2 or RESP3, chosen per connection with
// SetProto (HELLO). Not safe for concurrent use. Writes are buffered;
// Flush sends them.
type Writer struct {
	bw    *bufio.Writer
	proto int
	num   [32]byte
}

// NewWriter wraps w, speaking RESP2 until SetProto(3).
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, 16<<10), proto: 2}
}

// SetProto selects RESP2 (2) or RESP3 (3).
func (w *Writer) SetProto(p int) { w.proto = p }

// Proto reports the protocol version in use.
func (w *Writer) Proto() int { return w.proto }

// Flush sends buffered replies.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Buffered reports how many reply bytes wait for Flush.
func (w *Writer) Buffered() int { return w.bw.Buffered() }

func (w *Writer) head(c byte, n int64) {
	w.bw.WriteByte(c)
	w.bw.Write(strconv.AppendInt(w.num[:0], n, 10))
	w.bw.WriteString("\r\n")
}

// Simple writes a status reply (+OK). s must not contain CR or LF.
func (w *Writer) Simple(s string) {
	w.bw.WriteByte('+')
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// OK writes +OK.
func (w *Writer) OK() { w.bw.WriteString("+OK\r\n") }

// Error writes an error reply; msg starts with its code (ERR, WRONGTYPE…).
// CR and LF in msg are replaced by spaces so the reply stays well formed.
func (w *Writer) Error(msg string) {
	w.bw.WriteByte('-')
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		w.bw.WriteByte(c)
	}
	w.bw.WriteString("\r\n")
}

// Int writes an integer reply.
func (w *Writer) Int(n int64) { w.head(':', n) }

// Bulk writes a bulk string.
func (w *Writer) Bulk(b []byte) {
	w.head('$', int64(len(b)))
	w.bw.Write(b)
	w.bw.WriteString("\r\n")
}

// BulkString writes a bulk string.
func (w *Writer) BulkString(s string) {
	w.head('$', int64(len(s)))
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// Verbatim writes a RESP3 verbatim text (txt), or a bulk string in RESP2.
func (w *Writer) Verbatim(s string) {
	if w.proto < 3 {
		w.BulkString(s)
		return
	}
	w.head('=', int64(len(s)+4))
	w.bw.WriteString("txt:")
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// Null writes the null reply: $-1 in RESP2, _ in RESP3.
func (w *Writer) Null() {
	if w.proto >= 3 {
		w.bw.WriteString("_\r\n")
		return
	}
	w.bw.WriteString("$-1\r\n")
}

// NullArray writes a null array: *-1 in RESP2, _ in RESP3.
func (w *Writer) NullArray() {
	if w.proto >= 3 {
		w.bw.WriteString("_\r\n")
		return
	}
	w.bw.WriteString("*-1\r\n")
}

// Array starts an array of n elements.
func (w *Writer) Array(n int) { w.head('*', int64(n)) }

// Map starts a map of n pairs: %n in RESP3, a flat array of 2n in RESP2.
func (w *Writer) Map(n int) {
	if w.proto >= 3 {
		w.head('%', int64(n))
		return
	}
	w.head('*', int64(2*n))
}

// Set starts a set of n elements: ~n in RESP3, an array in RESP2.
func (w *Writer) Set(n int) {
	if w.proto >= 3 {
		w.head('~', int64(n))
		return
	}
	w.head('*', int64(n))
}

// Double writes a double: ,f in RESP3, a bulk string in RESP2.
func (w *Writer) Double(f float64) {
	var s string
	switch {
	case math.IsInf(f, 1):
		s = "inf"
	case math.IsInf(f, -1):
		s = "-inf"
	default:
		s = strconv.FormatFloat(f, 'g', 17, 64)
	}
	if w.proto >= 3 {
		w.bw.WriteByte(',')
		w.bw.WriteString(s)
		w.bw.WriteString("\r\n")
		return
	}
	w.BulkString(s)
}

// Bool writes a boolean: #t/#f in RESP3, :1/:0 in RESP2.
func (w *Writer) Bool(b bool) {
	if w.proto >= 3 {
		if b {
			w.bw.WriteString("#t\r\n")
		} else {
			w.bw.WriteString("#f\r\n")
		}
		return
	}
	if b {
		w.Int(1)
	} else {
		w.Int(0)
	}
}

// Raw writes bytes as they are (already RESP encoded).
func (w *Writer) Raw(b []byte) { w.bw.Write(b) }

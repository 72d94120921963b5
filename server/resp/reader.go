// Package resp reads Redis-protocol requests and writes RESP2/RESP3
// replies, with limits on what one request may make the reader hold.
//
// # Concurrency
//
// A Reader and a Writer belong to one connection's goroutine.
//
// # Caveats
//
// Requests are multibulk arrays or inline lines, as Redis accepts them;
// argument slices returned by ReadCommand are reused by the next call.
package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unsafe"
)

// Limits bound what one request may make the reader hold in memory.
type Limits struct {
	// MaxRequestBytes is the largest request (sum of its argument bytes)
	// that is read into memory. A larger request is read off the socket and
	// discarded, and ReadCommand returns a *TooLargeError; the connection
	// stays usable. Default 8 MiB.
	MaxRequestBytes int
	// MaxArgs bounds the number of arguments of one request. Default 1M.
	MaxArgs int
	// MaxInlineBytes bounds an inline (telnet-style) request line.
	// Default 64 KiB.
	MaxInlineBytes int
}

const (
	defaultMaxRequest = 8 << 20
	defaultMaxArgs    = 1 << 20
	defaultMaxInline  = 64 << 10
	// maxBulk is the largest bulk length the protocol accepts at all, as
	// Redis's proto-max-bulk-len; beyond it the stream is treated as
	// garbage and the connection closed.
	maxBulk = 512 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = defaultMaxRequest
	}
	if l.MaxArgs <= 0 {
		l.MaxArgs = defaultMaxArgs
	}
	if l.MaxInlineBytes <= 0 {
		l.MaxInlineBytes = defaultMaxInline
	}
	return l
}

// ProtocolError means the byte stream is not RESP. The connection cannot be
// resynchronised and must be closed after the error is sent.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

// TooLargeError means one request exceeded Limits.MaxRequestBytes. It was
// consumed and dropped; the next request can be read normally.
type TooLargeError struct{ Size, Limit int }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("request of %d bytes exceeds max-request-bytes (%d)", e.Size, e.Limit)
}

// Reader reads client requests. Not safe for concurrent use.
type Reader struct {
	br   *bufio.Reader
	src  *fillReader
	lim  Limits
	args [][]byte
	slab []byte
	lens []int // bulk lengths of the request being read; -1 marks a detached one
	// detached are the arguments of the last request that have buffers of
	// their own (see detachMin).
	detached [][]byte
}

// detachMin is the size from which a bulk argument gets an allocation of
// its own instead of a place in the shared slab, so Take can hand it over
// without a copy. Values that big are usually stored.
const detachMin = 256

// Read buffer sizes. A connection starts with the small one; once a read
// from the socket fills it whole (the client pipelines more than it
// holds), the reader moves to the large one, so that a pipelined batch
// costs one read system call rather than two or three.
const (
	smallBuffer = 16 << 10
	largeBuffer = 64 << 10
)

// NewReader wraps r.
func NewReader(r io.Reader, lim Limits) *Reader {
	src := &fillReader{r: r}
	return &Reader{br: bufio.NewReaderSize(src, smallBuffer), src: src, lim: lim.withDefaults()}
}

// fillReader notes when a read fills the small buffer whole.
type fillReader struct {
	r    io.Reader
	full bool
}

func (f *fillReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n == smallBuffer && len(p) == smallBuffer {
		f.full = true
	}
	return n, err
}

// Buffered reports how many bytes are already read from the socket but not
// yet parsed: zero means the next ReadCommand will block, so replies
// should be flushed first.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadCommand reads the next request. The returned slices point into the
// reader's buffers and are valid only until the next call. An empty
// request (a blank inline line, "*0") is skipped.
func (r *Reader) ReadCommand() ([][]byte, error) {
	if r.src.full && r.br.Size() < largeBuffer && r.br.Buffered() == 0 {
		// Nothing is buffered, so nothing is lost by the swap.
		r.br = bufio.NewReaderSize(r.src, largeBuffer)
	}
	for {
		b, err := r.br.Peek(1)
		if err != nil {
			return nil, err
		}
		var args [][]byte
		if b[0] == '*' {
			args, err = r.readMulti()
		} else {
			args, err = r.readInline()
		}
		if err != nil || len(args) > 0 {
			return args, err
		}
	}
}

// line reads one CRLF-terminated header line (without CRLF). Header lines
// are short; a long one is garbage.
func (r *Reader) line() ([]byte, error) {
	ln, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, &ProtocolError{"too big header line"}
		}
		return nil, err
	}
	if len(ln) < 2 || ln[len(ln)-2] != '\r' {
		return nil, &ProtocolError{"expected CRLF"}
	}
	return ln[:len(ln)-2], nil
}

func (r *Reader) readMulti() ([][]byte, error) {
	ln, err := r.line()
	if err != nil {
		return nil, err
	}
	n, ok := atoi(ln[1:])
	if !ok || n > r.lim.MaxArgs {
		return nil, &ProtocolError{"invalid multibulk length"}
	}
	if n <= 0 {
		return nil, nil
	}
	r.args = r.args[:0]
	size := 0
	tooLarge := false
	if cap(r.args) < n && n <= 1024 {
		r.args = make([][]byte, 0, n)
	}
	r.slab = r.slab[:0]
	r.lens = r.lens[:0]
	r.dropDetached()
	for i := 0; i < n; i++ {
		ln, err := r.line()
		if err != nil {
			return nil, err
		}
		if len(ln) == 0 || ln[0] != '$' {
			c := "EOF"
			if len(ln) > 0 {
				c = string(ln[0])
			}
			return nil, &ProtocolError{"expected '$', got '" + c + "'"}
		}
		l, ok := atoi(ln[1:])
		if !ok || l < 0 || l > maxBulk {
			return nil, &ProtocolError{"invalid bulk length"}
		}
		size += l
		if !tooLarge && size > r.lim.MaxRequestBytes {
			tooLarge = true
		}
		switch {
		case tooLarge:
			if _, err := r.br.Discard(l); err != nil {
				return nil, err
			}
		case l >= detachMin:
			b := make([]byte, l)
			if _, err := io.ReadFull(r.br, b); err != nil {
				return nil, err
			}
			r.detached = append(r.detached, b)
			r.lens = append(r.lens, -1)
		default:
			start := len(r.slab)
			r.slab = grow(r.slab, l)
			if _, err := io.ReadFull(r.br, r.slab[start:start+l]); err != nil {
				return nil, err
			}
			r.lens = append(r.lens, l)
		}
		if err := r.crlf(); err != nil {
			return nil, err
		}
	}
	if tooLarge {
		return nil, &TooLargeError{Size: size, Limit: r.lim.MaxRequestBytes}
	}
	// Slice the slab only now: it may have moved while growing.
	off, d := 0, 0
	for _, l := range r.lens {
		if l < 0 {
			r.args = append(r.args, r.detached[d])
			d++
			continue
		}
		r.args = append(r.args, r.slab[off:off+l:off+l])
		off += l
	}
	return r.args, nil
}

// Take returns arg, an argument of the last request, as a string the caller
// may keep. A large argument has a buffer of its own that the reader never
// reuses; it is handed over without a copy. Others are copied.
func (r *Reader) Take(arg []byte) string {
	if len(arg) >= detachMin {
		for _, d := range r.detached {
			if len(d) == len(arg) && unsafe.SliceData(d) == unsafe.SliceData(arg) {
				return unsafe.String(unsafe.SliceData(arg), len(arg))
			}
		}
	}
	return string(arg)
}

// dropDetached forgets the last request's own buffers (their owners, if
// any, keep them alive).
func (r *Reader) dropDetached() {
	clear(r.detached)
	r.detached = r.detached[:0]
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*cap(b)+n)
	copy(nb, b)
	return nb
}

func (r *Reader) crlf() error {
	c1, err := r.br.ReadByte()
	if err != nil {
		return err
	}
	c2, err := r.br.ReadByte()
	if err != nil {
		return err
	}
	if c1 != '\r' || c2 != '\n' {
		return &ProtocolError{"invalid bulk length"}
	}
	return nil
}

func (r *Reader) readInline() ([][]byte, error) {
	r.slab = r.slab[:0]
	r.dropDetached()
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(r.slab)+len(chunk) > r.lim.MaxInlineBytes {
			return nil, &ProtocolError{"too big inline request"}
		}
		r.slab = append(r.slab, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
	ln := bytes.TrimRight(r.slab, "\r\n")
	args, err := splitInline(ln)
	if err != nil {
		return nil, err
	}
	r.args = args
	return args, nil
}

// splitInline splits an inline request the way Redis's sdssplitargs does:
// whitespace separated, with "double" (escapes, \xHH) and 'single' quotes.
func splitInline(ln []byte) ([][]byte, error) {
	var args [][]byte
	i := 0
	for {
		for i < len(ln) && isSpace(ln[i]) {
			i++
		}
		if i >= len(ln) {
			return args, nil
		}
		var cur []byte
		switch ln[i] {
		case '"':
			i++
			for {
				if i >= len(ln) {
					return nil, &ProtocolError{"unbalanced quotes in request"}
				}
				c := ln[i]
				if c == '\\' && i+3 < len(ln) && ln[i+1] == 'x' && isHex(ln[i+2]) && isHex(ln[i+3]) {
					v, _ := strconv.ParseUint(string(ln[i+2:i+4]), 16, 8)
					cur = append(cur, byte(v))
					i += 4
					continue
				}
				if c == '\\' && i+1 < len(ln) {
					i++
					switch ln[i] {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'b':
						c = '\b'
					case 'a':
						c = '\a'
					default:
						c = ln[i]
					}
					cur = append(cur, c)
					i++
					continue
				}
				if c == '"' {
					i++
					if i < len(ln) && !isSpace(ln[i]) {
						return nil, &ProtocolError{"unbalanced quotes in request"}
					}
					break
				}
				cur = append(cur, c)
				i++
			}
		case '\'':
			i++
			for {
				if i >= len(ln) {
					return nil, &ProtocolError{"unbalanced quotes in request"}
				}
				c := ln[i]
				if c == '\\' && i+1 < len(ln) && ln[i+1] == '\'' {
					cur = append(cur, '\'')
					i += 2
					continue
				}
				if c == '\'' {
					i++
					if i < len(ln) && !isSpace(ln[i]) {
						return nil, &ProtocolError{"unbalanced quotes in request"}
					}
					break
				}
				cur = append(cur, c)
				i++
			}
		default:
			for i < len(ln) && !isSpace(ln[i]) {
				cur = append(cur, ln[i])
				i++
			}
		}
		if cur == nil {
			cur = []byte{}
		}
		args = append(args, cur)
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// atoi parses a decimal integer without allocating.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

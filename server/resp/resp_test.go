package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unsafe"
)

func readAll(t testing.TB, in string, lim Limits) ([][]string, error) {
	t.Helper()
	r := NewReader(strings.NewReader(in), lim)
	var out [][]string
	for {
		args, err := r.ReadCommand()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			var tl *TooLargeError
			if errors.As(err, &tl) {
				out = append(out, []string{"<too large>"})
				continue
			}
			return out, err
		}
		var cmd []string
		for _, a := range args {
			cmd = append(cmd, string(a))
		}
		out = append(out, cmd)
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    [][]string
		wantErr string
	}{
		{"multibulk", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", [][]string{{"GET", "k"}}, ""},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", [][]string{{"PING"}, {"ECHO", ""}}, ""},
		{"binary value", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n\r\n\x00\xff\r\n", [][]string{{"SET", "k", "\r\n\x00\xff"}}, ""},
		{"inline", "SET k \"a b\\x41\\n\" 'c\\'d'\r\n", [][]string{{"SET", "k", "a bA\n", "c'd"}}, ""},
		{"inline bare LF", "PING\n", [][]string{{"PING"}}, ""},
		{"empty skipped", "\r\n*0\r\nPING\r\n", [][]string{{"PING"}}, ""},
		{"bad count", "*x\r\n", nil, "invalid multibulk length"},
		{"bad bulk len", "*1\r\n$-5\r\n", nil, "invalid bulk length"},
		{"huge bulk len", "*1\r\n$99999999999\r\n", nil, "invalid bulk length"},
		{"not dollar", "*1\r\n:5\r\n", nil, "expected '$'"},
		{"missing crlf after bulk", "*1\r\n$1\r\nab\r\n", nil, "invalid bulk length"},
		{"unbalanced", "GET \"k\r\n", nil, "unbalanced quotes"},
		{"lf only header", "*1\n", nil, "expected CRLF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(t, tt.in, Limits{})
			if tt.wantErr != "" {
				var pe *ProtocolError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want protocol error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if strings.Join(got[i], "|") != strings.Join(tt.want[i], "|") {
					t.Fatalf("command %d: got %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestTooLargeIsSkippedAndStreamStaysInSync(t *testing.T) {
	big := strings.Repeat("x", 5000)
	in := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n" + big + "\r\n*1\r\n$4\r\nPING\r\n"
	got, err := readAll(t, in, Limits{MaxRequestBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0][0] != "<too large>" || got[1][0] != "PING" {
		t.Fatalf("got %q", got)
	}
}

func TestInlineTooLong(t *testing.T) {
	_, err := readAll(t, strings.Repeat("a", 100<<10)+"\r\n", Limits{})
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want protocol error", err)
	}
}

func TestWriterProtocols(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	emit := func() {
		w.Null()
		w.Map(1)
		w.BulkString("k")
		w.Int(-3)
		w.Bool(true)
		w.Double(1.5)
		w.Error("ERR bad\r\nthing")
		w.Flush()
	}
	emit()
	if got, want := b.String(), "$-1\r\n*2\r\n$1\r\nk\r\n:-3\r\n:1\r\n$3\r\n1.5\r\n-ERR bad  thing\r\n"; got != want {
		t.Fatalf("RESP2: got %q, want %q", got, want)
	}
	b.Reset()
	w.SetProto(3)
	emit()
	if got, want := b.String(), "_\r\n%1\r\n$1\r\nk\r\n:-3\r\n#t\r\n,1.5\r\n-ERR bad  thing\r\n"; got != want {
		t.Fatalf("RESP3: got %q, want %q", got, want)
	}
}

// FuzzReader: arbitrary bytes never panic, and every command read
// re-encodes to a request that reads back the same.
func FuzzReader(f *testing.F) {
	for _, s := range []string{"*1\r\n$4\r\nPING\r\n", "SET a b\r\n", "*2\r\n$1\r\na\r\n$-1\r\n", "\"x\\x4", "*-1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), Limits{MaxRequestBytes: 1 << 16, MaxInlineBytes: 1 << 12})
		for i := 0; i < 100; i++ {
			args, err := r.ReadCommand()
			if err != nil {
				return
			}
			var enc bytes.Buffer
			w := NewWriter(&enc)
			w.Array(len(args))
			for _, a := range args {
				w.Bulk(a)
			}
			w.Flush()
			back, err := NewReader(&enc, Limits{}).ReadCommand()
			if err != nil || len(back) != len(args) {
				t.Fatalf("re-read of %q: %v", args, err)
			}
			for j := range args {
				if !bytes.Equal(back[j], args[j]) {
					t.Fatalf("arg %d: %q != %q", j, back[j], args[j])
				}
			}
		}
	})
}

func BenchmarkReadCommand(b *testing.B) {
	one := "*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000001\r\n$1024\r\n" + strings.Repeat("v", 1024) + "\r\n"
	in := []byte(strings.Repeat(one, 1000))
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	rd := bytes.NewReader(in)
	r := NewReader(rd, Limits{})
	for b.Loop() {
		if _, err := r.ReadCommand(); err != nil {
			rd.Reset(in)
			r = NewReader(rd, Limits{})
		}
	}
}

// Take hands a large argument over without a copy, and the reader never
// writes to it again; small arguments are copied, so later requests cannot
// change a string Take returned.
func TestTakeKeepsArgumentsIntact(t *testing.T) {
	big1 := strings.Repeat("a", detachMin)
	big2 := strings.Repeat("b", detachMin+10)
	var in strings.Builder
	for _, v := range []string{big1, "small1", big2, "small2"} {
		fmt.Fprintf(&in, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n", len(v), v)
	}
	r := NewReader(strings.NewReader(in.String()), Limits{})
	var got []string
	var shared []bool
	for range 4 {
		args, err := r.ReadCommand()
		if err != nil {
			t.Fatal(err)
		}
		s := r.Take(args[2])
		got = append(got, s)
		shared = append(shared, unsafe.StringData(s) == unsafe.SliceData(args[2]))
		// A string taken from a request's arguments must not alias the
		// buffers the next request is read into.
		if k := r.Take(args[1]); k != "k" || unsafe.StringData(k) == unsafe.SliceData(args[1]) {
			t.Fatalf("small argument not copied")
		}
	}
	want := []string{big1, "small1", big2, "small2"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: taken value changed (len %d, want %d)", i, len(got[i]), len(want[i]))
		}
	}
	if !shared[0] || shared[1] || !shared[2] || shared[3] {
		t.Errorf("shared = %v, want large arguments handed over without a copy", shared)
	}
}

// chunks hands out one string per Read, as a socket hands out what one
// write of the client carried.
type chunks struct{ parts []string }

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.parts[0])
	if c.parts[0] = c.parts[0][n:]; c.parts[0] == "" {
		c.parts = c.parts[1:]
	}
	return n, nil
}

func TestReadBufferGrowsForPipelines(t *testing.T) {
	set := func(i int) string {
		v := strings.Repeat(string(rune('a'+i%26)), 1000)
		return fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$%d\r\n%s\r\n", len(fmt.Sprint("k", i)), i, len(v), v)
	}
	var one, batch []string
	for i := range 40 {
		one = append(one, set(i)) // one request per read: no pipelining
	}
	var b strings.Builder
	for i := range 40 {
		b.WriteString(set(i))
	}
	batch = append(batch, b.String(), set(40)) // 40 requests in one write, then one more
	for _, tc := range []struct {
		name  string
		parts []string
		n     int
		size  int
	}{
		{"one at a time", one, 40, smallBuffer},
		{"pipelined", batch, 41, largeBuffer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(&chunks{parts: tc.parts}, Limits{})
			for i := range tc.n {
				args, err := r.ReadCommand()
				if err != nil {
					t.Fatalf("command %d: %v", i, err)
				}
				if want := set(i); fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(args[1]), args[1], len(args[2]), args[2]) != want {
					t.Fatalf("command %d parsed wrong: %q %q…", i, args[1], args[2][:10])
				}
			}
			if _, err := r.ReadCommand(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last command: %v, want EOF", err)
			}
			if got := r.br.Size(); got != tc.size {
				t.Fatalf("read buffer %d bytes, want %d", got, tc.size)
			}
		})
	}
}

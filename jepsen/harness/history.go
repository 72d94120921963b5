package harness

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"
)

// Type is the kind of a history event, as in Jepsen.
type Type string

const (
	Invoke Type = "invoke" // the client is about to send the request
	OK     Type = "ok"     // the operation took effect and this is its result
	Fail   Type = "fail"   // the operation certainly did not take effect
	Info   Type = "info"   // indeterminate: it may or may not have taken effect
)

// Event is one line of history.jsonl: an invocation or a completion of a
// client operation, or a nemesis action (Client == -1, F "nemesis").
type Event struct {
	Index  int    `json:"index"`
	Type   Type   `json:"type"`
	F      string `json:"f"`               // get set del put (stash workload: put set get del)
	Key    string `json:"key,omitempty"`   // register key or stash tag
	Value  string `json:"value,omitempty"` // written value, or the value read
	Nil    bool   `json:"nil,omitempty"`   // a read found nothing
	Count  int64  `json:"count,omitempty"` // DEL: keys removed
	Client int    `json:"client"`
	Node   string `json:"node,omitempty"`
	Time   int64  `json:"time"` // nanoseconds since the run started, monotonic
	Error  string `json:"error,omitempty"`
	Op     int    `json:"op"` // operation number, shared by an invoke and its completion
}

// Recorder collects events from many goroutines and streams them as JSON
// lines. Its methods are safe for concurrent use.
type Recorder struct {
	start time.Time

	mu     sync.Mutex // guards all fields below
	events []Event
	nextOp int
	w      *bufio.Writer
	enc    *json.Encoder
	err    error
}

// NewRecorder returns a recorder whose clock starts now. If w is not nil,
// every event is also written to it as one JSON line.
func NewRecorder(w io.Writer) *Recorder {
	r := &Recorder{start: time.Now()}
	if w != nil {
		r.w = bufio.NewWriterSize(w, 1<<16)
		r.enc = json.NewEncoder(r.w)
	}
	return r
}

// Now is the monotonic time since the recorder started.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Invoke records an invocation and returns it with its Op and Time set.
func (r *Recorder) Invoke(e Event) Event {
	e.Type = Invoke
	r.mu.Lock()
	e.Op = r.nextOp
	r.nextOp++
	e.Time = r.Now()
	r.add(&e)
	r.mu.Unlock()
	return e
}

// Complete records the completion of inv with the given type.
func (r *Recorder) Complete(inv Event, t Type, fill func(*Event)) Event {
	e := inv
	e.Type, e.Error, e.Value, e.Nil, e.Count = t, "", "", false, 0
	if inv.F == "set" || inv.F == "put" {
		e.Value = inv.Value
	}
	if fill != nil {
		fill(&e)
	}
	r.mu.Lock()
	e.Time = r.Now()
	r.add(&e)
	r.mu.Unlock()
	return e
}

// Note records a nemesis event.
func (r *Recorder) Note(f, value string) {
	r.mu.Lock()
	e := Event{Type: Info, F: f, Value: value, Client: -1, Op: -1, Time: r.Now()}
	r.add(&e)
	r.mu.Unlock()
}

func (r *Recorder) add(e *Event) {
	e.Index = len(r.events)
	r.events = append(r.events, *e)
	if r.enc != nil && r.err == nil {
		r.err = r.enc.Encode(e)
	}
}

// Events returns a copy of the history so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Flush writes buffered lines out and reports the first write error.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil && r.err == nil {
		r.err = r.w.Flush()
	}
	return r.err
}

// Op is an invocation paired with its completion. Complete is zero-valued
// (Type "") when the operation never completed; such an operation is
// treated as Info.
type Op struct {
	Inv, Done Event
}

// Status is the completion type, Info for operations that never completed.
func (o Op) Status() Type {
	if o.Done.Type == "" {
		return Info
	}
	return o.Done.Type
}

// Pair turns a history into operations in invocation order, skipping
// nemesis events.
func Pair(h []Event) []Op {
	var ops []Op
	at := map[int]int{}
	for _, e := range h {
		if e.Client < 0 {
			continue
		}
		if e.Type == Invoke {
			at[e.Op] = len(ops)
			ops = append(ops, Op{Inv: e})
			continue
		}
		if i, ok := at[e.Op]; ok {
			ops[i].Done = e
		}
	}
	return ops
}

// ReadHistory reads a history.jsonl file.
func ReadHistory(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var h []Event
	dec := json.NewDecoder(f)
	for {
		var e Event
		if err := dec.Decode(&e); err == io.EOF {
			return h, nil
		} else if err != nil {
			return h, err
		}
		h = append(h, e)
	}
}

// lastType is the type of the most recent event.
func (r *Recorder) lastType() Type {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return ""
	}
	return r.events[len(r.events)-1].Type
}

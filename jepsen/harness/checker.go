package harness

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict of one checker.
type Verdict string

const (
	Valid   Verdict = "valid"
	Invalid Verdict = "invalid"
	Unknown Verdict = "unknown" // the checker gave up (timeout); not counted as valid
)

// Anomaly is one thing a checker objects to, with the operations involved.
type Anomaly struct {
	Kind string `json:"kind"` // lost stale resurrected nonlinearizable
	Key  string `json:"key"`
	Op   int    `json:"op"` // the observing operation
	Text string `json:"text"`
	File string `json:"file,omitempty"` // porcupine visualisation, relative to the out dir
}

// CheckerResult is one checker's verdict.
type CheckerResult struct {
	Name      string    `json:"name"`
	Verdict   Verdict   `json:"verdict"`
	Valid     bool      `json:"valid"`
	Keys      int       `json:"keys"`
	Anomalies []Anomaly `json:"anomalies,omitempty"` // the first few
	Count     int       `json:"anomaly_count"`
	Note      string    `json:"note,omitempty"`
}

const maxAnomalies = 50

func (c *CheckerResult) add(a Anomaly) {
	c.Count++
	if len(c.Anomalies) < maxAnomalies {
		c.Anomalies = append(c.Anomalies, a)
	}
}

func (c *CheckerResult) finish() {
	if c.Verdict == "" {
		c.Verdict = Valid
		if c.Count > 0 {
			c.Verdict = Invalid
		}
	}
	c.Valid = c.Verdict == Valid
}

// ---- stash checker: lost, stale, resurrected ----

// StashCounts are the stash checker's tallies.
type StashCounts struct {
	Lost        int // acknowledged writes that a later read did not see, with no delete to explain it
	Stale       int // reads returning a value already overwritten by an acknowledged write
	Resurrected int // reads returning a value after an acknowledged delete of it
}

type span struct {
	op       Op
	inv, end int64 // end is +inf for an indeterminate operation
	del      bool
	val      string
	ok       bool
}

func spanOf(o Op) span {
	s := span{op: o, inv: o.Inv.Time, end: math.MaxInt64, del: o.Inv.F == "del", val: o.Inv.Value}
	if o.Status() == OK {
		s.end, s.ok = o.Done.Time, true
	}
	return s
}

// CheckStash checks a stash-workload history per tag. Every write carries a
// unique value, so a read identifies the write it saw. A read is legal when
// some write (or, for "not found", some delete) that could have produced
// it had not been overwritten, before the read began, by another
// acknowledged mutation that started after it finished. Failed mutations
// are ignored; indeterminate ones may take effect at any time after their
// invocation.
func CheckStash(h []Event) (CheckerResult, StashCounts) {
	res := CheckerResult{Name: "stash"}
	var n StashCounts
	byKey := map[string][]Op{}
	var keys []string
	for _, o := range Pair(h) {
		if o.Inv.F == "put" {
			if o.Status() != OK {
				continue // an unacknowledged PUT's tag is unknown to us
			}
			o.Inv.Key = o.Done.Key
		}
		if o.Inv.Key == "" {
			continue
		}
		if _, ok := byKey[o.Inv.Key]; !ok {
			keys = append(keys, o.Inv.Key)
		}
		byKey[o.Inv.Key] = append(byKey[o.Inv.Key], o)
	}
	sort.Strings(keys)
	res.Keys = len(keys)
	lostSeen := map[int]bool{}
	for _, k := range keys {
		// The key's state before anything was written: "not found".
		muts := []span{{op: Op{Inv: Event{Op: -2, F: "del"}}, inv: -1, end: -1, del: true, ok: true}}
		for _, o := range byKey[k] {
			if (o.Inv.F == "put" || o.Inv.F == "set" || o.Inv.F == "del") && o.Status() != Fail {
				muts = append(muts, spanOf(o))
			}
		}
		overwritten := func(s span, rinv int64, self int) (bool, bool) {
			over, byDel := false, false
			for _, o2 := range muts {
				if o2.op.Inv.Op == s.op.Inv.Op || o2.op.Inv.Op == self || !o2.ok {
					continue
				}
				if s.end < o2.inv && o2.end < rinv {
					over = true
					if o2.del {
						byDel = true
					}
				}
			}
			return over, byDel
		}
		for _, o := range byKey[k] {
			if o.Status() != OK {
				continue
			}
			var isNil bool
			var val string
			switch {
			case o.Inv.F == "get":
				isNil, val = o.Done.Nil, o.Done.Value
			case o.Inv.F == "del" && o.Done.Count == 0:
				isNil = true
			default:
				continue
			}
			r := spanOf(o)
			legal, sawSource, delOver := false, false, false
			for _, s := range muts {
				if s.op.Inv.Op == o.Inv.Op || s.del != isNil || (!isNil && s.val != val) || s.inv > r.end {
					continue
				}
				sawSource = true
				over, byDel := overwritten(s, r.inv, o.Inv.Op)
				if !over {
					legal = true
					break
				}
				delOver = delOver || byDel
			}
			if legal {
				continue
			}
			switch {
			case isNil:
				// Which acknowledged write went missing? The ones not
				// overwritten before this read began.
				var lost []string
				for _, s := range muts {
					if s.ok && !s.del && s.end < r.inv {
						if over, _ := overwritten(s, r.inv, o.Inv.Op); !over {
							if !lostSeen[s.op.Inv.Op] {
								lostSeen[s.op.Inv.Op] = true
								n.Lost++
							}
							lost = append(lost, fmt.Sprintf("op %d %s %q (acknowledged at %s)", s.op.Inv.Op, s.op.Inv.F, s.val, dur(s.end)))
						}
					}
				}
				if len(lost) == 0 {
					n.Lost++ // nothing acknowledged, yet the PUT that made the tag was: count the read
				}
				res.add(Anomaly{Kind: "lost", Key: k, Op: o.Inv.Op, Text: fmt.Sprintf("%s at %s found nothing; lost: %s", o.Inv.F, dur(r.inv), strings.Join(lost, ", "))})
			case sawSource && delOver:
				n.Resurrected++
				res.add(Anomaly{Kind: "resurrected", Key: k, Op: o.Inv.Op, Text: fmt.Sprintf("get at %s returned %q, deleted by an acknowledged DEL before the read began", dur(r.inv), val)})
			default:
				n.Stale++
				why := "overwritten by an acknowledged write before the read began"
				if !sawSource {
					why = "never written (or written only by a failed write)"
				}
				res.add(Anomaly{Kind: "stale", Key: k, Op: o.Inv.Op, Text: fmt.Sprintf("get at %s returned %q, %s", dur(r.inv), val, why)})
			}
		}
	}
	res.finish()
	return res, n
}

func dur(ns int64) string {
	if ns == math.MaxInt64 {
		return "∞"
	}
	return time.Duration(ns).Round(time.Microsecond).String()
}

// ---- register checker: per-key linearizability with porcupine ----

type regIn struct {
	F     string // get set del
	Value string
}

type regOut struct {
	Unknown bool // indeterminate: no result known
	Nil     bool
	Value   string
	Count   int64
}

// RegisterModel is a register per key whose absent state is "". Values
// written are never empty.
var RegisterModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(regIn), output.(regOut)
		switch in.F {
		case "get":
			if out.Nil {
				return st == "", st
			}
			return st == out.Value, st
		case "set":
			return true, in.Value
		case "del":
			if out.Unknown {
				return true, ""
			}
			return (out.Count > 0) == (st != ""), ""
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regIn), output.(regOut)
		switch {
		case out.Unknown:
			return fmt.Sprintf("%s(%s) -> ?", in.F, in.Value)
		case in.F == "get" && out.Nil:
			return "get() -> nil"
		case in.F == "get":
			return fmt.Sprintf("get() -> %s", out.Value)
		case in.F == "del":
			return fmt.Sprintf("del() -> %d", out.Count)
		}
		return fmt.Sprintf("set(%s)", in.Value)
	},
	DescribeState: func(state any) string {
		if state.(string) == "" {
			return "nil"
		}
		return state.(string)
	},
}

// RegisterOps turns a register history into porcupine operations per key.
// Failed operations are dropped; reads that did not complete are dropped
// (they constrain nothing); writes and deletes that did not complete are
// kept with their completion at +infinity: they may take effect at any
// point after their invocation, or never (linearized last), as in Jepsen.
func RegisterOps(h []Event) map[string][]porcupine.Operation {
	out := map[string][]porcupine.Operation{}
	for _, o := range Pair(h) {
		st := o.Status()
		if st == Fail || (st == Info && o.Inv.F == "get") || o.Inv.Key == "" {
			continue
		}
		p := porcupine.Operation{ClientId: o.Inv.Client, Input: regIn{F: o.Inv.F, Value: o.Inv.Value}, Call: o.Inv.Time, Metadata: o.Inv.Node}
		if st == Info {
			p.Return = math.MaxInt64
			p.Output = regOut{Unknown: true}
		} else {
			p.Return = o.Done.Time
			p.Output = regOut{Nil: o.Done.Nil, Value: o.Done.Value, Count: o.Done.Count}
		}
		out[o.Inv.Key] = append(out[o.Inv.Key], p)
	}
	return out
}

// CheckRegister checks every key of a register history for
// linearizability. When visDir is not empty, porcupine's visualisation of
// each non-linearizable key is written there as linear-<key>.html.
// timeout bounds the search per key; a key that runs out of time makes the
// verdict Unknown unless another key is Invalid.
func CheckRegister(h []Event, visDir string, timeout time.Duration) CheckerResult {
	res := CheckerResult{Name: "linearizable"}
	byKey := RegisterOps(h)
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	res.Keys = len(keys)
	unknown := 0
	for _, k := range keys {
		r, info := porcupine.CheckOperationsVerbose(RegisterModel, byKey[k], timeout)
		switch r {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			unknown++
			continue
		}
		a := Anomaly{Kind: "nonlinearizable", Key: k, Op: -1, Text: fmt.Sprintf("key %s: %d operations admit no linearization", k, len(byKey[k]))}
		if visDir != "" {
			name := "linear-" + safeName(k) + ".html"
			if err := porcupine.VisualizePath(RegisterModel, info, filepath.Join(visDir, name)); err == nil {
				a.File = name
			} else {
				fmt.Fprintln(os.Stderr, "jepsen: visualisation:", err)
			}
		}
		res.add(a)
	}
	if unknown > 0 {
		res.Note = fmt.Sprintf("%d keys timed out after %s", unknown, timeout)
		if res.Count == 0 {
			res.Verdict = Unknown
		}
	}
	res.finish()
	return res
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

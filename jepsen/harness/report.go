package harness

import (
	"fmt"
	"html"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// WriteReport writes report.html: one self-contained file (inline SVG and
// CSS, no scripts or external resources) with throughput and latency over
// time, fault windows shaded and labelled, and the checkers' verdicts.
func WriteReport(path string, h []Event, r *Results) error {
	var b strings.Builder
	verdict := "VALID"
	color := "#1a7f37"
	if !r.Valid {
		verdict, color = "INVALID", "#cf222e"
	}
	fmt.Fprintf(&b, `<!doctype html><html><head><meta charset="utf-8"><title>stash jepsen: %s</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.v{font-size:28px;font-weight:bold;color:%s}svg{background:#fafafa;border:1px solid #ddd}code{font-size:12px}</style></head><body>
`, verdict, color)
	fmt.Fprintf(&b, "<h1>Stash jepsen run</h1><p class=v>%s</p>\n", verdict)
	fmt.Fprintf(&b, "<p>workload <b>%s</b>, %d node(s), nemesis <b>%s</b>, node args <code>%s</code>, %.0f s</p>\n",
		r.Workload, r.Nodes, html.EscapeString(strings.Join(r.Nemesis, ",")), html.EscapeString(strings.Join(r.NodeArgs, " ")), r.Seconds)
	c := r.Counts
	fmt.Fprintf(&b, "<table><tr><th>ops</th><th>ok</th><th>fail</th><th>info</th><th>lost</th><th>stale</th><th>resurrected</th><th>availability</th><th>outside faults</th></tr>")
	fmt.Fprintf(&b, "<tr><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%.1f%%</td><td>%.1f%%</td></tr></table>\n",
		c.Ops, c.OK, c.Fail, c.Info, c.Lost, c.Stale, c.Resurrected, 100*r.Availability, 100*r.QuietAvailability)

	b.WriteString("<h2>Checkers</h2><table><tr><th>checker</th><th>verdict</th><th>keys</th><th>anomalies</th><th>note</th></tr>")
	names := make([]string, 0, len(r.Checkers))
	for n := range r.Checkers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		ch := r.Checkers[n]
		col := "#1a7f37"
		if !ch.Valid {
			col = "#cf222e"
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td style='color:%s;font-weight:bold'>%s</td><td>%d</td><td>%d</td><td>%s</td></tr>", n, col, ch.Verdict, ch.Keys, ch.Count, html.EscapeString(ch.Note))
	}
	b.WriteString("</table>\n")
	for _, n := range names {
		ch := r.Checkers[n]
		if len(ch.Anomalies) == 0 {
			continue
		}
		fmt.Fprintf(&b, "<h3>%s anomalies (first %d of %d)</h3><ul>", n, len(ch.Anomalies), ch.Count)
		for _, a := range ch.Anomalies {
			link := ""
			if a.File != "" {
				link = fmt.Sprintf(` — <a href="%s">porcupine visualisation</a>`, html.EscapeString(a.File))
			}
			fmt.Fprintf(&b, "<li><b>%s</b> <code>%s</code>: %s%s</li>", a.Kind, html.EscapeString(a.Key), html.EscapeString(a.Text), link)
		}
		b.WriteString("</ul>\n")
	}

	b.WriteString("<h2>Throughput</h2><p>completed operations per second: <span style='color:#1a7f37'>ok</span>, <span style='color:#bf8700'>info</span>, <span style='color:#cf222e'>fail</span>; shaded: fault windows</p>\n")
	b.WriteString(chart(h, r.Windows, false))
	b.WriteString("<h2>Latency</h2><p>each completed operation (ms, log scale) at its invocation time: <span style='color:#1a7f37'>ok</span>, <span style='color:#bf8700'>info</span>, <span style='color:#cf222e'>fail</span></p>\n")
	b.WriteString(chart(h, r.Windows, true))

	b.WriteString("<h2>Fault windows</h2><table><tr><th>nemesis</th><th>label</th><th>start</th><th>end</th><th>ops</th><th>availability</th></tr>")
	for _, w := range r.Windows {
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%.1f%%</td></tr>", w.Nemesis, html.EscapeString(w.Label),
			time.Duration(w.Start).Round(time.Millisecond), time.Duration(w.End).Round(time.Millisecond), w.Ops, 100*w.Avail)
	}
	b.WriteString("</table><p>The full history is <a href='history.jsonl'>history.jsonl</a>; results in <a href='results.json'>results.json</a>.</p></body></html>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

const (
	chartW, chartH = 1000.0, 260.0
	padL, padB     = 50.0, 25.0
)

// chart draws throughput (per-second buckets) or latency (one dot per
// operation, sampled down to a few thousand) over the run.
func chart(h []Event, ws []Window, latency bool) string {
	ops := Pair(h)
	var end int64 = 1
	for _, e := range h {
		end = max(end, e.Time)
	}
	x := func(t int64) float64 { return padL + float64(t)/float64(end)*(chartW-padL-10) }
	plotH := chartH - padB - 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="10">`, chartW, chartH)
	for _, w := range ws {
		fmt.Fprintf(&b, `<rect x="%.1f" y="10" width="%.1f" height="%.1f" fill="#f5a623" opacity="0.18"><title>%s</title></rect>`, x(w.Start), max(1, x(w.End)-x(w.Start)), plotH, html.EscapeString(w.Label))
		fmt.Fprintf(&b, `<text x="%.1f" y="20" fill="#8a5a00">%s</text>`, x(w.Start)+2, html.EscapeString(w.Label))
	}
	colors := map[Type]string{OK: "#1a7f37", Info: "#bf8700", Fail: "#cf222e"}
	secs := int(end/1e9) + 1
	for s := 0; s <= secs; s += max(1, secs/10) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f">%ds</text>`, x(int64(s)*1e9), chartH-8, s)
	}
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#999"/>`, padL, 10+plotH, chartW-10, 10+plotH)
	if !latency {
		buckets := map[Type][]int{OK: make([]int, secs), Info: make([]int, secs), Fail: make([]int, secs)}
		top := 1
		for _, o := range ops {
			t := o.Done.Time
			if o.Done.Type == "" {
				continue
			}
			i := int(t / 1e9)
			if i < secs {
				buckets[o.Status()][i]++
				top = max(top, buckets[o.Status()][i])
			}
		}
		for _, typ := range []Type{OK, Info, Fail} {
			var pts []string
			for i, v := range buckets[typ] {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(int64(i)*1e9+5e8), 10+plotH-float64(v)/float64(top)*plotH))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, colors[typ], strings.Join(pts, " "))
		}
		fmt.Fprintf(&b, `<text x="2" y="16">%d/s</text><text x="2" y="%.0f">0</text>`, top, 10+plotH)
	} else {
		// log scale from 0.1 ms to 10 s
		y := func(ns int64) float64 {
			ms := max(float64(ns)/1e6, 0.1)
			l := (log10(ms) + 1) / 5
			return 10 + plotH - min(l, 1)*plotH
		}
		for _, ms := range []float64{0.1, 1, 10, 100, 1000, 10000} {
			fmt.Fprintf(&b, `<text x="2" y="%.0f">%gms</text><line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, y(int64(ms*1e6))+3, ms, padL, chartW-10, y(int64(ms*1e6)), y(int64(ms*1e6)))
		}
		done := ops[:0:0]
		for _, o := range ops {
			if o.Done.Type != "" {
				done = append(done, o)
			}
		}
		step := max(1, len(done)/5000)
		sort.Slice(done, func(i, j int) bool { return done[i].Inv.Time < done[j].Inv.Time })
		for i := 0; i < len(done); i += step {
			o := done[i]
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="1.2" fill="%s"/>`, x(o.Inv.Time), y(o.Done.Time-o.Inv.Time), colors[o.Status()])
		}
		// always show every non-ok op
		for i, o := range done {
			if o.Status() != OK && i%step != 0 {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="1.2" fill="%s"/>`, x(o.Inv.Time), y(o.Done.Time-o.Inv.Time), colors[o.Status()])
			}
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func log10(v float64) float64 {
	// small helper to avoid importing math just for this
	n := 0.0
	for v >= 10 {
		v /= 10
		n++
	}
	for v < 1 {
		v *= 10
		n--
	}
	// linear interpolation within the decade is good enough for a dot plot
	return n + (v-1)/9
}

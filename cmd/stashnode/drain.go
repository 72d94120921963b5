package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/stashcluster/stash"
)

// drain implements `stashnode drain --admin host:port`: it asks the node
// to drain (POST /v1/drain), then follows its progress on /v1/cluster
// with a progress bar until the node has stopped.
func drain(args []string, stdout, stderr io.Writer) int {
	fs, o := drainFlags(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	admin, wait, quiet := &o.admin, &o.timeout, &o.quiet
	query := ""
	if o.leave {
		query = "?leave=true"
	}
	base := *admin
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	base = strings.TrimRight(base, "/")
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Post(base+"/v1/drain"+query, "application/json", nil)
	if err != nil {
		fmt.Fprintf(stderr, "stashnode drain: %v\n", err)
		return 1
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		fmt.Fprintf(stderr, "stashnode drain: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	fmt.Fprintf(stdout, "draining %s\n", *admin)
	start := time.Now()
	deadline := start.Add(*wait)
	last := ""
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		st, err := clusterStatus(hc, base)
		switch {
		case isGone(err):
			if last != "" && !*quiet {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stdout, "node stopped after %v\n", time.Since(start).Round(100*time.Millisecond))
			return 0
		case err != nil:
			continue // a single node (no /v1/cluster) or a slow answer: wait for it to stop
		}
		if *quiet || st.Drain == nil {
			continue
		}
		line := progressLine(st.Drain)
		if line != last {
			fmt.Fprintf(stdout, "\r%s", line)
			last = line
		}
	}
	fmt.Fprintf(stderr, "\nstashnode drain: the node still runs after %v; its drain goes on\n", *wait)
	return 1
}

type drainOpts struct {
	admin   string
	timeout time.Duration
	quiet   bool
	leave   bool
}

func drainFlags(stderr io.Writer) (*flag.FlagSet, *drainOpts) {
	o := &drainOpts{}
	fs := flag.NewFlagSet("stashnode drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.admin, "admin", "127.0.0.1:8380", "admin address (host:port) of the node to drain")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to follow the drain before giving up (the drain itself goes on)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar; only the outcome")
	fs.BoolVar(&o.leave, "leave", false, "leave the cluster for good (scale-in): its slots are copied to other nodes before it stops")
	return fs, o
}

// isGone reports whether err means nothing answers at the address any
// more (the node has stopped).
func isGone(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func clusterStatus(hc *http.Client, base string) (stash.ClusterStatus, error) {
	var st stash.ClusterStatus
	resp, err := hc.Get(base + "/v1/cluster")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s", resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st)
	return st, err
}

// progressLine renders a drain's progress as one line with a bar: the
// primaries handed off, then (leaving for good) the slots complete on
// their new replicas.
func progressLine(d *stash.DrainStatus) string {
	const width = 30
	what, total, done := "primaries handed off", d.PrimariesTotal, d.PrimariesTotal-d.PrimariesLeft
	if d.SlotsTotal > 0 {
		what, total, done = "slots copied elsewhere", d.SlotsTotal, d.SlotsTotal-d.SlotsLeft
	}
	fill := width
	if total > 0 {
		fill = done * width / total
	}
	eta := ""
	if d.ETA > 0 {
		eta = fmt.Sprintf("  ETA %ds", int(d.ETA+0.5))
	}
	return fmt.Sprintf("[%s%s] %d/%d %s  %s sent  %s%s   ",
		strings.Repeat("#", fill), strings.Repeat(" ", width-fill), done, total, what,
		humanBytes(d.BytesSent), d.Phase, eta)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

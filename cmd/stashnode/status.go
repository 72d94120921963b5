package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stashcluster/stash"
)

// status implements `stashnode status --admin host:port`: it prints a
// node's /v1/cluster as tables.
func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stashnode status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "127.0.0.1:8380", "admin address (host:port) of any cluster node")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the node")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	hc := &http.Client{Timeout: *timeout}
	url := *admin
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	resp, err := hc.Get(strings.TrimRight(url, "/") + "/v1/cluster")
	if err != nil {
		fmt.Fprintf(stderr, "stashnode status: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		fmt.Fprintf(stderr, "stashnode status: reading the answer: %v\n", err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "stashnode status: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	if *asJSON {
		stdout.Write(body)
		return 0
	}
	var st stash.ClusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "stashnode status: not a cluster status: %v\n", err)
		return 1
	}
	printStatus(stdout, st)
	return 0
}

func printStatus(w io.Writer, st stash.ClusterStatus) {
	ready := "yes"
	if !st.Ready {
		ready = "no (" + st.Reason + ")"
	}
	fmt.Fprintf(w, "node %s   leader %s   epoch %d   replicas %d   ready %s\n", st.Self, st.Leader, st.Epoch, st.Replicas, ready)
	fmt.Fprintf(w, "slots: serving %d as primary, %d being taken over, %d backups catching up, %d under-replicated in the cluster\n",
		st.Serving, st.Waiting, st.CatchingUp, st.UnderReplicated)
	if st.Resyncing {
		fmt.Fprintln(w, "resyncing: started without its data; not counted as a replica until every slot is resynced")
	}
	fmt.Fprintf(w, "since start: %d forwarded, %d replicated writes, %d NOQUORUM, %d entries reconciled, %d repaired, %d stale copies refused\n\n",
		st.Forwarded, st.Replicated, st.NoQuorum, st.Reconciled, st.Repaired, st.Refused)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tALIVE\tVOTER\tPRIMARIES\tPLACES\tRESP\tADMIN\tZONE")
	for _, m := range st.Members {
		alive := "yes"
		if !m.Alive {
			alive = "no"
			if !m.DownSince.IsZero() {
				alive = "down " + time.Since(m.DownSince).Round(time.Second).String()
			}
		}
		voter := ""
		if m.Voter {
			voter = "voter"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", m.Name, m.State, alive, voter, m.Primaries, m.Places, m.RESPAddr, m.AdminAddr, m.Zone)
	}
	tw.Flush()
}

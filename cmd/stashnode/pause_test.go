package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stashcluster/stash"
)

// TestPausedLeaderServesNoStaleRead: the raft leader, primary for a key,
// is stopped (SIGSTOP) until the others have failed its slots over and
// acknowledged a newer value. When it resumes, the reads that queued up
// on its socket while it was stopped, and those sent right after, must not
// get the old value: raft still calls the resumed node leader until its
// lease check runs, and stamps its last contact when it steps down, so
// neither may count as contact with the cluster.
func TestPausedLeaderServesNoStaleRead(t *testing.T) {
	nodes := startCluster(t, 3)
	cx := ctx(t)

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/cluster", nodes[0].adminPort))
	if err != nil {
		t.Fatal(err)
	}
	var st stash.ClusterStatus
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Leader == "" {
		t.Fatalf("/v1/cluster: leader %q, %v", st.Leader, err)
	}
	var leader, other *proc
	for i, p := range nodes {
		if fmt.Sprintf("n%d", i+1) == string(st.Leader) {
			leader = p
		} else if other == nil {
			other = p
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is none of the nodes", st.Leader)
	}

	// A key whose primary is the leader.
	lc := leader.client(t)
	slots, err := lc.ClusterSlots(cx).Result()
	if err != nil {
		t.Fatal(err)
	}
	key := ""
	for i := 0; key == "" && i < 10000; i++ {
		k := fmt.Sprintf("paused-%d", i)
		slot, err := lc.ClusterKeySlot(cx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && s.Nodes[0].Addr == leader.addr() {
				key = k
			}
		}
	}
	if key == "" {
		t.Fatal("the leader is primary for no slot")
	}
	if err := lc.Set(cx, key, "old", 0).Err(); err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", leader.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rd := bufio.NewReader(raw)
	get := "*2\r\n$3\r\nGET\r\n$" + fmt.Sprint(len(key)) + "\r\n" + key + "\r\n"
	if _, err := raw.Write([]byte(get)); err != nil {
		t.Fatal(err)
	}
	readReply := func() string {
		raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a reply from the resumed leader: %v", err)
		}
		if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
			body, err := rd.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			line += body
		}
		return strings.TrimSpace(strings.ReplaceAll(line, "\r\n", " "))
	}
	if r := readReply(); r != "$3 old" {
		t.Fatalf("GET before the pause = %q", r)
	}

	if err := leader.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			leader.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	oc := other.client(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := oc.Set(cx, key, "new", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write of the key acknowledged while the leader was stopped: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Reads queued while stopped, then more right after it resumes.
	const queued, after = 5, 20
	for range queued {
		if _, err := raw.Write([]byte(get)); err != nil {
			t.Fatal(err)
		}
	}
	resume()
	var replies []string
	for range queued {
		replies = append(replies, readReply())
	}
	for range after {
		if _, err := raw.Write([]byte(get)); err != nil {
			t.Fatal(err)
		}
		replies = append(replies, readReply())
		time.Sleep(5 * time.Millisecond)
	}
	for i, r := range replies {
		if r == "$3 old" {
			t.Fatalf("read %d on the resumed leader returned the value overwritten while it was stopped (replies: %q)", i, replies)
		}
	}
	t.Logf("replies on the resumed leader: %q", replies)
	if r := replies[len(replies)-1]; r != "$3 new" {
		t.Errorf("last read on the resumed leader = %q, want the new value", r)
	}
}

package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Ports every node uses inside its own namespace.
const (
	RedisPort   = 6380
	AdminPort   = 8380
	GossipPort  = 7946
	ClusterPort = 7380
)

// Node is one stashnode process in its host namespace. Its methods are
// called from the harness's control goroutine and the nemesis goroutine,
// never concurrently for the same node except Alive and Addr.
type Node struct {
	Host
	Bin     string
	DataDir string
	Args    []string // all flags
	LogPath string
	nw      *Net

	mu      sync.Mutex // guards cmd, exited, exitErr, stderr, and Args once started
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
	stderr  *tailBuffer
}

// Addr is the node's Redis address.
func (n *Node) Addr() string { return fmt.Sprintf("%s:%d", n.IP, RedisPort) }

// Start launches the process (ip netns exec execs the binary, so the pid
// is stashnode's).
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && !closed(n.exited) {
		return fmt.Errorf("%s already running", n.Name)
	}
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		return err
	}
	lf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "---- %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(n.Args, " "))
	n.stderr = &tailBuffer{max: 4096}
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.NS, n.Bin}, n.Args...)...)
	cmd.Stdout = lf
	cmd.Stderr = multiWriter{lf, n.stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C in the terminal reaches the harness only
	if err := cmd.Start(); err != nil {
		lf.Close()
		return err
	}
	ex := make(chan struct{})
	n.cmd, n.exited, n.exitErr = cmd, ex, nil
	go func() {
		err := cmd.Wait()
		lf.Close()
		n.mu.Lock()
		n.exitErr = err
		n.mu.Unlock()
		close(ex)
	}()
	return nil
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (n *Node) Signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || closed(n.exited) {
		return fmt.Errorf("%s not running", n.Name)
	}
	return syscall.Kill(n.cmd.Process.Pid, sig)
}

// Wait waits for the process to exit, up to d; false if it did not.
func (n *Node) Wait(d time.Duration) bool {
	n.mu.Lock()
	ex := n.exited
	n.mu.Unlock()
	if ex == nil {
		return true
	}
	select {
	case <-ex:
		return true
	case <-time.After(d):
		return false
	}
}

// Kill SIGKILLs the process (paused or not) and waits for it to exit.
func (n *Node) Kill() {
	n.Signal(syscall.SIGKILL)
	n.Wait(10 * time.Second)
}

// Stop sends SIGTERM and waits up to d, then kills.
func (n *Node) Stop(d time.Duration) {
	n.Signal(syscall.SIGCONT)
	if n.Signal(syscall.SIGTERM) == nil && !n.Wait(d) {
		n.Kill()
	}
}

// exitInfo returns whether the process has exited, and its stderr tail.
func (n *Node) exitInfo() (bool, error, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exited == nil || !closed(n.exited) {
		return false, nil, ""
	}
	return true, n.exitErr, n.stderr.String()
}

// WaitReady polls /readyz on the admin port until it answers 200, the
// process exits, or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: n.nw.DialContext, DisableKeepAlives: true}}
	url := fmt.Sprintf("http://%s:%d/readyz", n.IP, AdminPort)
	for {
		if gone, err, tail := n.exitInfo(); gone {
			return &ExitError{Node: n.Name, Err: err, Stderr: tail}
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", n.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SetClock shifts the node's clock by d through its --fault-hooks admin
// endpoint (0 restores it).
func (n *Node) SetClock(ctx context.Context, d time.Duration) error {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: n.nw.DialContext, DisableKeepAlives: true}}
	url := fmt.Sprintf("http://%s:%d/v1/fault/clock?offset=%s", n.IP, AdminPort, d)
	req, err := http.NewRequestWithContext(ctx, "POST", url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: setting clock offset: %w", n.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: setting clock offset: HTTP %d (is --fault-hooks on?)", n.Name, resp.StatusCode)
	}
	return nil
}

// ExitError is a node that exited while the harness waited for it.
type ExitError struct {
	Node   string
	Err    error
	Stderr string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s exited (%v): %s", e.Node, e.Err, strings.TrimSpace(e.Stderr))
}

// ExitCode is the process's exit code, or -1.
func (e *ExitError) ExitCode() int {
	var x *exec.ExitError
	if errors.As(e.Err, &x) {
		return x.ExitCode()
	}
	return -1
}

// WipeData empties the node's data directory (the disk nemesis).
func (n *Node) WipeData() error {
	if err := os.RemoveAll(n.DataDir); err != nil {
		return err
	}
	return os.MkdirAll(n.DataDir, 0o700)
}

type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.Clone(t.b))
}

type multiWriter []interface{ Write([]byte) (int, error) }

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		w.Write(p)
	}
	return len(p), nil
}

// rejoin points the node's --join, if it has one, at the given members
// (other than itself), for its next Start.
func (n *Node) rejoin(members []*Node) {
	var join []string
	for _, o := range members {
		if o != n {
			join = append(join, fmt.Sprintf("%s:%d", o.IP, GossipPort))
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if i := slices.Index(n.Args, "--join"); i >= 0 && i+1 < len(n.Args) && len(join) > 0 {
		n.Args = slices.Clone(n.Args)
		n.Args[i+1] = strings.Join(join, ",")
	}
}

// nodeArgs builds a node's command line. With peers the node is in
// cluster mode and joins them; expect > 0 makes it one of the nodes that
// form the cluster (--bootstrap-expect), 0 one that waits to be added.
func nodeArgs(h Host, peers []Host, expect int, dataDir, secretFile string, replicas int, extra []string) []string {
	a := []string{
		"--name", h.Name,
		"--bind", h.IP,
		"--port", fmt.Sprint(RedisPort),
		"--admin-port", fmt.Sprint(AdminPort),
		"--gossip-port", fmt.Sprint(GossipPort),
		"--cluster-port", fmt.Sprint(ClusterPort),
		"--data-dir", dataDir,
		"--secret-file", secretFile,
		"--protected-mode=false",
		"--log-format", "json",
	}
	if len(peers) > 0 {
		var join []string
		for _, o := range peers {
			join = append(join, fmt.Sprintf("%s:%d", o.IP, GossipPort))
		}
		a = append(a, "--join", strings.Join(join, ","))
		if expect > 0 {
			a = append(a, "--bootstrap-expect", fmt.Sprint(expect))
		}
		a = append(a, "--replicas", fmt.Sprint(replicas), "--cluster-profile", "local")
	}
	return append(a, extra...)
}

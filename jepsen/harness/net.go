package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is returned when this machine cannot host a run: the
// harness needs root, iproute2 (ip) and iptables, and does nothing without
// them.
var ErrUnsupported = errors.New("jepsen harness unsupported here")

// Prefix starts the name of every network namespace and temporary
// directory the harness creates, followed by the harness's process id; a
// leftover whose process is gone is removed by CleanLeftovers.
const Prefix = "stj-"

// Subnet is the private range used only inside the harness's own
// namespaces: the harness end of the bridge is .1, node i is .(10+i). No
// address is configured in, and no packet sent to, the root namespace.
const Subnet = "10.99.0."

// Prereqs reports why this machine cannot host a run, or nil.
func Prereqs() error {
	var miss []string
	if os.Geteuid() != 0 {
		miss = append(miss, "must run as root (network namespaces, iptables)")
	}
	for _, b := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(b); err != nil {
			miss = append(miss, b+" not found in PATH (install iproute2 and iptables)")
		}
	}
	if len(miss) > 0 {
		return fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(miss, "; "))
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// alive reports whether pid is a live process (a zombie is not: a
// harness killed with SIGKILL may stay one when nobody reaps it).
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

// CleanLeftovers removes the namespaces (with every process in them) and
// temporary directories of harness runs whose process has died.
func CleanLeftovers(ctx context.Context) []string {
	return clean(ctx, func(pid int) bool { return !alive(pid) })
}

// CleanRun removes whatever the run of process pid left behind; tests call
// it from t.Cleanup with os.Getpid() after a run that may have failed.
func CleanRun(ctx context.Context, pid int) []string {
	return clean(ctx, func(p int) bool { return p == pid })
}

func clean(ctx context.Context, match func(pid int) bool) []string {
	var cleaned []string
	out, _ := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], Prefix) {
			continue
		}
		pid, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(f[0], Prefix), "-", 2)[0])
		if !match(pid) {
			continue
		}
		killNS(ctx, f[0])
		_ = run(ctx, "ip", "netns", "del", f[0])
		cleaned = append(cleaned, "netns "+f[0])
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), Prefix+"*"))
	for _, d := range dirs {
		pid, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(d), Prefix), "-", 2)[0])
		if match(pid) {
			os.RemoveAll(d)
			cleaned = append(cleaned, "dir "+d)
		}
	}
	return cleaned
}

// killNS SIGKILLs every process in a namespace.
func killNS(ctx context.Context, ns string) {
	out, _ := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	for _, p := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(p); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Host is one node's network namespace.
type Host struct {
	Name string // n1, n2, …
	NS   string // namespace name
	IP   string
}

// Net is the harness's virtual network: a namespace holding a bridge (and
// the harness's own address, Subnet+"1"), and one namespace per node
// joined to the bridge by a veth pair. Everything lives in namespaces the
// harness created; the root namespace is not touched. Hosts may be added
// while a run goes on (the membership nemesis); Hosts and AddHost are
// safe for concurrent use.
type Net struct {
	ID    string // Prefix + pid
	HubNS string

	mu    sync.Mutex // guards hosts
	hosts []Host
}

// HarnessIP is the address clients use as their source.
const HarnessIP = Subnet + "1"

// OpenNet creates the namespaces, bridge and links for n nodes. On error
// whatever was created is removed.
func OpenNet(ctx context.Context, n int) (nw *Net, err error) {
	if n < 1 || n > maxHosts {
		return nil, fmt.Errorf("nodes: %d out of range 1..%d", n, maxHosts)
	}
	id := fmt.Sprintf("%s%d", Prefix, os.Getpid())
	nw = &Net{ID: id, HubNS: id + "-hub"}
	defer func() {
		if err != nil {
			nw.Close()
			nw = nil
		}
	}()
	hub := nw.HubNS
	steps := [][]string{
		{"netns", "add", hub},
		{"-n", hub, "link", "set", "lo", "up"},
		{"-n", hub, "link", "add", "br0", "type", "bridge"},
		{"-n", hub, "addr", "add", HarnessIP + "/24", "dev", "br0"},
		{"-n", hub, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			return nw, err
		}
	}
	for i := 0; i < n; i++ {
		if _, err := nw.AddHost(ctx); err != nil {
			return nw, err
		}
	}
	return nw, nil
}

// maxHosts bounds the hosts of one run (node i has address Subnet+(10+i)).
const maxHosts = 200

// Hosts returns the hosts created so far, in order.
func (nw *Net) Hosts() []Host {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return slices.Clone(nw.hosts)
}

// AddHost creates the next node namespace (n1, n2, …) and links it to the
// bridge. A host whose creation failed is still recorded, so Close
// removes what was made of it.
func (nw *Net) AddHost(ctx context.Context) (Host, error) {
	nw.mu.Lock()
	i := len(nw.hosts) + 1
	if i > maxHosts {
		nw.mu.Unlock()
		return Host{}, fmt.Errorf("no more than %d hosts", maxHosts)
	}
	h := Host{Name: fmt.Sprintf("n%d", i), NS: fmt.Sprintf("%s-n%d", nw.ID, i), IP: fmt.Sprintf("%s%d", Subnet, 10+i)}
	nw.hosts = append(nw.hosts, h)
	nw.mu.Unlock()
	hub, v := nw.HubNS, fmt.Sprintf("v%d", i)
	for _, s := range [][]string{
		{"netns", "add", h.NS},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", hub, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
		{"-n", hub, "link", "set", v, "master", "br0"},
		{"-n", hub, "link", "set", v, "up"},
		{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
	} {
		if err := run(ctx, "ip", s...); err != nil {
			return h, err
		}
	}
	return h, nil
}

// Close kills every process left in the namespaces and deletes them (the
// veth pairs and the bridge go with them). Safe to call twice.
func (nw *Net) Close() error {
	ctx := context.Background()
	var errs []error
	all := []string{nw.HubNS}
	for _, h := range nw.Hosts() {
		all = append(all, h.NS)
	}
	for _, ns := range all {
		if _, err := os.Stat(filepath.Join("/var/run/netns", ns)); err != nil {
			continue
		}
		killNS(ctx, ns)
		if err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// IPTables runs iptables inside a node's namespace.
func (nw *Net) IPTables(ctx context.Context, h Host, args ...string) error {
	return run(ctx, "ip", append([]string{"netns", "exec", h.NS, "iptables", "-w"}, args...)...)
}

// DialContext dials from inside the hub namespace, so the harness reaches
// the nodes without any address in the root namespace. A socket keeps its
// namespace for life, so the connection is then used from anywhere.
func (nw *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNS(nw.HubNS, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// inNS runs f on a throwaway OS thread switched (setns) into the network
// namespace ns, and waits for it: sockets f makes belong to ns for life.
func inNS(ns string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with this goroutine, so its
		// namespace switch cannot leak into other goroutines.
		nf, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			ch <- err
			return
		}
		defer nf.Close()
		if err := unix.Setns(int(nf.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ch <- f()
	}()
	return <-ch
}

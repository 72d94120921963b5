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
	"strconv"
	"strings"
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
// harness created; the root namespace is not touched.
type Net struct {
	ID    string // Prefix + pid
	HubNS string
	Hosts []Host
}

// HarnessIP is the address clients use as their source.
const HarnessIP = Subnet + "1"

// OpenNet creates the namespaces, bridge and links for n nodes. On error
// whatever was created is removed.
func OpenNet(ctx context.Context, n int) (nw *Net, err error) {
	if n < 1 || n > 200 {
		return nil, fmt.Errorf("nodes: %d out of range 1..200", n)
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
	for i := 1; i <= n; i++ {
		h := Host{Name: fmt.Sprintf("n%d", i), NS: fmt.Sprintf("%s-n%d", id, i), IP: fmt.Sprintf("%s%d", Subnet, 10+i)}
		nw.Hosts = append(nw.Hosts, h)
		v := fmt.Sprintf("v%d", i)
		steps = append(steps,
			[]string{"netns", "add", h.NS},
			[]string{"-n", h.NS, "link", "set", "lo", "up"},
			[]string{"-n", hub, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			[]string{"-n", hub, "link", "set", v, "master", "br0"},
			[]string{"-n", hub, "link", "set", v, "up"},
			[]string{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
			[]string{"-n", h.NS, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			return nw, err
		}
	}
	return nw, nil
}

// Close kills every process left in the namespaces and deletes them (the
// veth pairs and the bridge go with them). Safe to call twice.
func (nw *Net) Close() error {
	ctx := context.Background()
	var errs []error
	all := []string{nw.HubNS}
	for _, h := range nw.Hosts {
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
// the nodes without any address in the root namespace. The socket is made
// on a throwaway OS thread switched into the namespace; a socket keeps its
// namespace for life, so the connection is then used from anywhere.
func (nw *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with this goroutine, so its
		// namespace switch cannot leak into other goroutines.
		f, err := os.Open(filepath.Join("/var/run/netns", nw.HubNS))
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns %s: %w", nw.HubNS, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v2"
)

// The Kubernetes manifests must match what stashnode serves: every flag
// they pass exists and parses, the ports they declare are the ports the
// flags open, the probes hit real admin endpoints, and Kubernetes waits
// longer than a drain may take.
func TestKubernetesManifests(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "stash.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]map[any]any{} // kind/name → document
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var d map[any]any
		if err := dec.Decode(&d); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("stash.yaml does not parse: %v", err)
		}
		if d == nil {
			continue
		}
		docs[str(d, "kind")+"/"+str(d, "metadata", "name")] = d
	}
	sts := docs["StatefulSet/stash"]
	headless := docs["Service/stash-headless"]
	pdb := docs["PodDisruptionBudget/stash"]
	if sts == nil || headless == nil || pdb == nil || docs["Service/stash"] == nil {
		t.Fatalf("want StatefulSet, PodDisruptionBudget and two Services named stash*, got %v", keys(docs))
	}
	if str(headless, "spec", "clusterIP") != "None" || str(sts, "spec", "serviceName") != "stash-headless" {
		t.Error("the StatefulSet must use the headless service (clusterIP None) for --join")
	}
	if v := get(pdb, "spec", "maxUnavailable"); v != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable = %v, want 1", v)
	}

	pod := get(sts, "spec", "template", "spec").(map[any]any)
	c := get(pod, "containers").([]any)[0].(map[any]any)
	var args []string
	for _, a := range c["args"].([]any) {
		// Kubernetes substitutes $(VAR); give them plausible values.
		s := strings.NewReplacer("$(POD_NAME)", "stash-0", "$(POD_IP)", "10.0.0.7", "$(POD_NAMESPACE)", "default").Replace(a.(string))
		args = append(args, s)
	}
	// The secret file comes from the Secret volume: it must be mounted
	// where --secret-file points; the test reads a stand-in.
	standIn := filepath.Join(t.TempDir(), "cluster-secret")
	os.WriteFile(standIn, []byte("from-the-secret-file-0123456789\n"), 0o600)
	for i, a := range args {
		if path, ok := strings.CutPrefix(a, "--secret-file="); ok {
			mounted := false
			for _, m := range c["volumeMounts"].([]any) {
				mounted = mounted || str(m.(map[any]any), "mountPath") == filepath.Dir(path)
			}
			if !mounted {
				t.Errorf("--secret-file %s is not under a volume mount", path)
			}
			args[i] = "--secret-file=" + standIn
		}
	}
	fs, o := flags(io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("stashnode refuses the manifest's args %v: %v", args, err)
	}
	for _, e := range c["env"].([]any) {
		name := str(e.(map[any]any), "name")
		if flagName, ok := strings.CutPrefix(name, "STASH_"); ok {
			if fs.Lookup(strings.ReplaceAll(strings.ToLower(flagName), "_", "-")) == nil {
				t.Errorf("env %s names no stashnode flag", name)
			}
		}
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = "from-the-secret" // STASH_PASSWORD, from the Secret
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the manifest's configuration is invalid: %v", err)
	}
	if !cfg.Clustered() || cfg.BootstrapExpect != intOf(get(sts, "spec", "replicas")) {
		t.Errorf("--bootstrap-expect %d must equal the StatefulSet's replicas %v", cfg.BootstrapExpect, get(sts, "spec", "replicas"))
	}

	ports := map[string]int{}
	for _, p := range c["ports"].([]any) {
		pm := p.(map[any]any)
		ports[str(pm, "name")] = intOf(pm["containerPort"])
	}
	for name, want := range map[string]int{"resp": cfg.Port, "admin": cfg.AdminPort, "gossip": cfg.GossipPort, "gossip-udp": cfg.GossipPort, "cluster": cfg.ClusterPort} {
		if ports[name] != want {
			t.Errorf("container port %q = %d, stashnode listens on %d", name, ports[name], want)
		}
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := str(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %q", probe, got, path)
		}
		if p := get(c, probe, "httpGet", "port"); p != "admin" && intOf(p) != cfg.AdminPort {
			t.Errorf("%s port %v is not the admin port %d", probe, p, cfg.AdminPort)
		}
	}
	// preStop runs this binary's drain command against this pod's admin
	// port, and its flags parse.
	pre, _ := get(c, "lifecycle", "preStop", "exec", "command").([]any)
	var preArgs []string
	for _, a := range pre {
		preArgs = append(preArgs, fmt.Sprint(a))
	}
	if len(preArgs) < 2 || preArgs[0] != "/stashnode" || preArgs[1] != "drain" {
		t.Errorf("preStop command %q does not run `/stashnode drain`", preArgs)
	} else {
		fs, o := drainFlags(io.Discard)
		if err := fs.Parse(preArgs[2:]); err != nil {
			t.Errorf("preStop drain flags: %v", err)
		}
		if _, port, _ := strings.Cut(o.admin, ":"); port != strconv.Itoa(cfg.AdminPort) {
			t.Errorf("preStop drains admin address %q, stashnode serves admin on port %d", o.admin, cfg.AdminPort)
		}
		if g := time.Duration(intOf(pod["terminationGracePeriodSeconds"])) * time.Second; o.timeout >= g {
			t.Errorf("preStop drain follows for %v, not within the grace period %v", o.timeout, g)
		}
	}
	grace := time.Duration(intOf(pod["terminationGracePeriodSeconds"])) * time.Second
	if grace <= cfg.DrainTimeout+cfg.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v must exceed --drain-timeout %v + --shutdown-timeout %v", grace, cfg.DrainTimeout, cfg.ShutdownTimeout)
	}
	if !strings.Contains(cfg.Join[0], "stash-headless.") {
		t.Errorf("--join %v does not name the headless service", cfg.Join)
	}

	df, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "FROM scratch", "./cmd/stashnode", `ENTRYPOINT ["/stashnode"]`} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile lacks %q (a static binary in an image from scratch)", want)
		}
	}
	for _, p := range []int{cfg.Port, cfg.AdminPort, cfg.GossipPort, cfg.ClusterPort} {
		if !bytes.Contains(df, []byte(strconv.Itoa(p))) {
			t.Errorf("Dockerfile does not EXPOSE port %d", p)
		}
	}
}

func get(m any, path ...string) any {
	for _, p := range path {
		mm, ok := m.(map[any]any)
		if !ok {
			return nil
		}
		m = mm[p]
	}
	return m
}

func str(m any, path ...string) string {
	s, _ := get(m, path...).(string)
	return s
}

func intOf(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return -1
}

func keys(m map[string]map[any]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

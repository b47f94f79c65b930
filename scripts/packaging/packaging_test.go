package packaging

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/pinhole-sip/pinhole/internal/config"
)

// TestSystemdUnit runs systemd-analyze verify on the unit, with ExecStart
// pointing at an executable that exists here (the test binary), and checks
// the capabilities are exactly the three XDP needs.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("systemd/pinhole.service")
	if err != nil {
		t.Fatal(err)
	}
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze (package systemd) is needed to check the unit: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pinhole.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/pinhole", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, key := range []string{"AmbientCapabilities=", "CapabilityBoundingSet="} {
		var got []string
		for line := range strings.SplitSeq(string(unit), "\n") {
			if v, ok := strings.CutPrefix(line, key); ok {
				got = strings.Fields(v)
			}
		}
		slices.Sort(got)
		if diff := cmp.Diff([]string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", key, diff)
		}
	}
}

// TestKubernetesManifests parses the manifests, checks the DaemonSet runs
// on the host network with only XDP's capabilities, and validates the
// ConfigMap's pinhole configuration with pinhole's own validator.
func TestKubernetesManifests(t *testing.T) {
	docs := map[string]map[string]any{}
	for _, f := range []string{"kubernetes/configmap.yaml", "kubernetes/daemonset.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		for {
			var d map[string]any
			if err := dec.Decode(&d); err != nil {
				if err.Error() == "EOF" {
					break
				}
				t.Fatalf("%s: %v", f, err)
			}
			docs[d["kind"].(string)] = d
		}
	}
	for _, k := range []string{"Namespace", "ConfigMap", "DaemonSet"} {
		if docs[k] == nil {
			t.Fatalf("no %s in the manifests", k)
		}
	}
	cm := docs["ConfigMap"]["data"].(map[string]any)["pinhole.yaml"].(string)
	cfg, err := config.Parse([]byte(strings.ReplaceAll(cm, "@POD_IP@", "10.0.0.5")), "configmap.yaml")
	if err != nil {
		t.Fatalf("the ConfigMap's configuration is invalid: %v", err)
	}
	if cfg.API.Listen != "127.0.0.1:9061" || cfg.DataDir != "/var/lib/pinhole" {
		t.Errorf("api %q, data_dir %q: want the API on loopback and data on the hostPath volume", cfg.API.Listen, cfg.DataDir)
	}

	spec := dig(t, docs["DaemonSet"], "spec", "template", "spec").(map[string]any)
	if spec["hostNetwork"] != true {
		t.Error("the DaemonSet must use the host network: devices must see the node's address")
	}
	var pinhole map[string]any
	for _, c := range spec["containers"].([]any) {
		if c.(map[string]any)["name"] == "pinhole" {
			pinhole = c.(map[string]any)
		}
	}
	caps := dig(t, pinhole, "securityContext", "capabilities").(map[string]any)
	var add, drop []string
	for _, c := range caps["add"].([]any) {
		add = append(add, c.(string))
	}
	for _, c := range caps["drop"].([]any) {
		drop = append(drop, c.(string))
	}
	slices.Sort(add)
	if diff := cmp.Diff([]string{"BPF", "NET_ADMIN", "PERFMON"}, add); diff != "" {
		t.Errorf("capabilities added (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ALL"}, drop); diff != "" {
		t.Errorf("capabilities dropped (-want +got):\n%s", diff)
	}
}

func dig(t *testing.T, m map[string]any, keys ...string) any {
	t.Helper()
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok || mm[k] == nil {
			t.Fatalf("no %s in %v", k, keys)
		}
		cur = mm[k]
	}
	return cur
}

// metricName finds the metric names a PromQL expression reads.
var metricName = regexp.MustCompile(`\b(?:pinhole|go|process)_[a-z0-9_]+\b`)

// DashboardMetrics returns every metric name the dashboard's queries use.
func DashboardMetrics(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var names []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			found := metricName.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
			}
			names = append(names, found...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// TestDashboardDocumented: the dashboard parses, every panel has a query,
// and every pinhole metric it reads is listed in docs/metrics.md. (That
// each is exported by a running pinhole is TestDashboardMetricsExported in
// internal/e2e.)
func TestDashboardDocumented(t *testing.T) {
	names := DashboardMetrics(t, "grafana/pinhole.json")
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "pinhole_") {
			continue
		}
		base := strings.TrimSuffix(n, "_bucket")
		if !strings.Contains(string(doc), "`"+base+"`") && !strings.Contains(string(doc), "`"+base+"{") {
			t.Errorf("docs/metrics.md does not list %s, which the dashboard reads", base)
		}
	}
}

package packaging

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestKeepalivedConf has keepalived check the pair's configuration as each
// box reads it (its config id picks its @ lines): an unknown keyword or a
// malformed block fails. Each box must advertise from its own address to
// the other's.
func TestKeepalivedConf(t *testing.T) {
	tool, err := exec.LookPath("keepalived")
	if err != nil {
		t.Fatalf("keepalived (package keepalived) is needed to check the configuration: %v", err)
	}
	const conf = "keepalived/keepalived.conf"
	for _, id := range []string{"edge-a", "edge-b"} {
		out, err := exec.Command(tool, "--config-test", "--use-file", conf, "--config-id", id).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("keepalived --config-test as %s: %v\n%s", id, err, out)
		}
	}
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	src := map[string]string{}
	peer := map[string]string{}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 3 && f[1] == "unicast_src_ip" {
			src[f[0]] = f[2]
		}
		if len(f) >= 3 && f[1] == "unicast_peer" && i+1 < len(lines) {
			if g := strings.Fields(lines[i+1]); len(g) == 2 {
				peer[f[0]] = g[1]
			}
		}
	}
	if src["@edge-a"] == "" || src["@edge-a"] != peer["@edge-b"] || src["@edge-b"] != peer["@edge-a"] {
		t.Errorf("unicast addresses do not pair up: sources %v, peers %v", src, peer)
	}
}

// TestNonlocalBindSysctl: the sysctl file sets the one key the fast path
// needs.
func TestNonlocalBindSysctl(t *testing.T) {
	data, err := os.ReadFile("keepalived/60-pinhole-nonlocal-bind.conf")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for l := range strings.SplitSeq(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			keys = append(keys, l)
		}
	}
	if len(keys) != 1 || keys[0] != "net.ipv4.ip_nonlocal_bind = 1" {
		t.Errorf("settings %q, want only net.ipv4.ip_nonlocal_bind = 1", keys)
	}
}

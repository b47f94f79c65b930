package testutil

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// keepalivedBin is where Debian's keepalived package installs the daemon.
const keepalivedBin = "/usr/sbin/keepalived"

// KeepalivedConfig is one box of a VRRP pair, as the tests run it: two
// namespaces on one segment, unicast adverts between their addresses
// (multicast would work on a bridge too; unicast is what a cloud network
// needs and keeps each pair to itself).
type KeepalivedConfig struct {
	NS        *NetNS
	Interface string       // the box's link on the segment, in NS
	Self      netip.Addr   // the box's own address on it
	Peer      netip.Addr   // the other box's
	VIP       netip.Prefix // the address moved, with the segment's length
	Priority  int          // the higher takes the VIP when both are healthy
	// Check is a command keepalived runs every second; when it fails the
	// box enters FAULT and gives the VIP up at once (priority 0 advert).
	Check []string
}

// Keepalived is a keepalived process run by a test.
type Keepalived struct {
	cfg     KeepalivedConfig
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// StartKeepalived writes a configuration for cfg and starts keepalived
// (VRRP only) in cfg.NS. It is stopped when the test ends.
func StartKeepalived(t testing.TB, cfg KeepalivedConfig) *Keepalived {
	t.Helper()
	if _, err := os.Stat(keepalivedBin); err != nil {
		t.Fatalf("keepalived is not installed (make test installs it): %v", err)
	}
	dir := t.TempDir()
	k := &Keepalived{cfg: cfg, logPath: filepath.Join(dir, "keepalived.log"), done: make(chan struct{})}
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(keepalivedConf(cfg)), 0o644); err != nil {
		t.Fatalf("write keepalived.conf: %v", err)
	}
	out := openDaemonLog(t, "keepalived", k.logPath)
	// Each process gets its own pid files: several keepalived run on one
	// host, one per namespace.
	k.cmd = cfg.NS.CommandContext(context.Background(), keepalivedBin,
		"--use-file", conf, "--vrrp", "--dont-fork", "--log-console", "--log-detail", "--no-syslog",
		"--pid", filepath.Join(dir, "keepalived.pid"), "--vrrp_pid", filepath.Join(dir, "vrrp.pid"),
		"--checkers_pid", filepath.Join(dir, "checkers.pid"))
	k.cmd.Stdout, k.cmd.Stderr = out, out
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start keepalived: %v", err)
	}
	go func() {
		_ = k.cmd.Wait()
		out.Close()
		close(k.done)
	}()
	stopAtCleanup(t, "keepalived "+cfg.NS.String(), k.logPath, k.Stop)
	return k
}

// Stop ends keepalived (SIGTERM to its process group: the parent and its
// VRRP child), killing it after 5 s.
func (k *Keepalived) Stop() {
	select {
	case <-k.done:
		return
	default:
	}
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		<-k.done
	}
}

// HoldsVIP reports whether the VIP is on the box's interface now.
func (k *Keepalived) HoldsVIP() bool {
	out, err := k.cfg.NS.Exec("ip", "-4", "-o", "addr", "show", "dev", k.cfg.Interface)
	return err == nil && strings.Contains(out, " "+k.cfg.VIP.Addr().String()+"/")
}

// Log is what keepalived printed so far.
func (k *Keepalived) Log() string { return readOr(k.logPath) }

// keepalivedConf is the configuration of one box. advert_int 0.1 s
// (VRRPv3 counts in centiseconds): a backup declares the master dead after
// three missed adverts plus a skew, about 0.35 s; a failed check is seen
// within its 1 s interval and gives the VIP up at once.
func keepalivedConf(c KeepalivedConfig) string {
	var check strings.Builder
	for i, a := range c.Check {
		if i > 0 {
			check.WriteByte(' ')
		}
		check.WriteString(a)
	}
	return fmt.Sprintf(`global_defs {
    router_id %[1]s
    vrrp_version 3
    # The check runs as root: the test's files are in /tmp.
    script_user root
    # Gratuitous ARP at once on becoming master, and again 1 s later.
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 2
}

vrrp_script check_pinhole {
    script "%[2]s"
    interval 1
    timeout 1
    fall 1
    rise 1
}

vrrp_instance pinhole {
    state BACKUP
    # The box holding the VIP keeps it (scripts/packaging/keepalived).
    nopreempt
    interface %[3]s
    virtual_router_id 51
    priority %[4]d
    advert_int 0.1
    unicast_src_ip %[5]s
    unicast_peer {
        %[6]s
    }
    virtual_ipaddress {
        %[7]s dev %[3]s
    }
    track_script {
        check_pinhole
    }
}
`, c.NS.String(), check.String(), c.Interface, c.Priority, c.Self, c.Peer, c.VIP)
}

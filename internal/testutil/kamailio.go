package testutil

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/kamailiocfg"
)

// Kamailio binaries as Debian's kamailio package installs them.
const (
	kamailioBin = "/usr/sbin/kamailio"
	kamcmdBin   = "/usr/sbin/kamcmd"
)

// KamailioConfig describes a main registrar for a test: Kamailio with
// registrar and usrloc in memory and digest authentication (auth_db over
// db_text files the helper writes), answering on one loopback UDP port.
type KamailioConfig struct {
	// Domain is the realm and the domain served ("localhost").
	Domain string
	// Users maps user names to passwords.
	Users map[string]string
	// Trusted is pinhole's listener, whose own de-registrations pass
	// without a challenge (kamailiocfg.Registrar.Trusted has the rule).
	Trusted netip.AddrPort
	// Port is the UDP port; zero picks a free one.
	Port int
}

// Kamailio is a Kamailio process run by a test.
type Kamailio struct {
	t       testing.TB
	Addr    netip.AddrPort
	cfgPath string
	logPath string
	ctl     string
	runDir  string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
}

// kamailioReady bounds the wait for Kamailio to answer OPTIONS.
const kamailioReady = 15 * time.Second

// StartKamailio writes the configuration and credentials into a fresh
// directory, starts Kamailio and waits until it answers OPTIONS. It is
// stopped when the test ends; when the test failed its log tail is shown.
func StartKamailio(t testing.TB, kc KamailioConfig) *Kamailio {
	t.Helper()
	for _, p := range []string{kamailioBin, kamcmdBin} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("kamailio is not installed (make test installs it): %v", err)
		}
	}
	if kc.Port == 0 {
		kc.Port = FreePort(t, Loopback)
	}
	dir := t.TempDir()
	// A unix socket path is limited to 108 bytes; test temp dirs can be longer.
	run, err := os.MkdirTemp("", "kam")
	if err != nil {
		t.Fatalf("make kamailio runtime dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatalf("make kamailio db dir: %v", err)
	}
	k := &Kamailio{
		t:       t,
		Addr:    netip.AddrPortFrom(Loopback, uint16(kc.Port)),
		cfgPath: filepath.Join(dir, "kamailio.cfg"),
		logPath: filepath.Join(dir, "kamailio.log"),
		ctl:     filepath.Join(run, "ctl.sock"),
		runDir:  run,
	}
	if err := kamailiocfg.WriteSubscribers(db, kc.Domain, kc.Users); err != nil {
		t.Fatal(err)
	}
	modules, err := kamailiocfg.ModulesDir(kamailioBin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(k.cfgPath)
	if err != nil {
		t.Fatalf("write kamailio config: %v", err)
	}
	err = kamailiocfg.Registrar{
		Listen: k.Addr, Domain: kc.Domain, Modules: modules,
		Children: 4, Debug: 2, Ctl: k.ctl,
		MinExpires: 1, MaxExpires: 7200,
		Auth: kamailiocfg.Subscribers, DB: db, Trusted: kc.Trusted,
	}.Write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("write kamailio config: %v", err)
	}
	stopAtCleanup(t, "kamailio", k.logPath, k.Stop)
	k.Start()
	return k
}

// Start starts Kamailio (again, after Stop) and waits until it answers.
func (k *Kamailio) Start() {
	k.t.Helper()
	out := openDaemonLog(k.t, "kamailio", k.logPath)
	// -DD: stay in the foreground with children; -E: log to stderr.
	cmd := exec.Command(kamailioBin, "-DD", "-E", "-f", k.cfgPath, "-Y", k.runDir)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		k.t.Fatalf("start kamailio: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(done) }()
	k.mu.Lock()
	k.cmd, k.done = cmd, done
	k.mu.Unlock()
	deadline := time.Now().Add(kamailioReady)
	for {
		if k.answersOptions() && k.rpcReady() {
			return
		}
		select {
		case <-done:
			k.t.Fatalf("kamailio exited before it was ready; log:\n%s", tail(readOr(k.logPath), 40))
		default:
		}
		if time.Now().After(deadline) {
			k.Stop()
			k.t.Fatalf("kamailio not answering OPTIONS on %s after %s; log:\n%s", k.Addr, kamailioReady, tail(readOr(k.logPath), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends Kamailio with SIGTERM (SIGKILL after 10 s) and waits; its
// in-memory location goes with it, as a real restart without a database
// would lose it. Stopping a stopped Kamailio is a no-op.
func (k *Kamailio) Stop() {
	k.mu.Lock()
	cmd, done := k.cmd, k.done
	k.cmd = nil
	k.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// answersOptions sends one OPTIONS and waits briefly for any response.
func (k *Kamailio) answersOptions() bool {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(k.Addr))
	if err != nil {
		return false
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg := "OPTIONS sip:" + k.Addr.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-ready" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"From: <sip:probe@" + local + ">;tag=ready\r\n" +
		"To: <sip:" + k.Addr.String() + ">\r\n" +
		"Call-ID: ready-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "\r\n" +
		"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	return err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 200")
}

func (k *Kamailio) rpcReady() bool {
	_, err := k.rpc("core.version")
	return err == nil
}

// rpc runs one kamcmd command over the ctl socket.
func (k *Kamailio) rpc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kamcmdBin, append([]string{"-s", "unix:" + k.ctl}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kamcmd %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// RPC runs one kamcmd command and fails the test if it fails.
func (k *Kamailio) RPC(args ...string) string {
	k.t.Helper()
	out, err := k.rpc(args...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// Registers returns how many REGISTER requests Kamailio has received since
// it last started (core statistic rcv_requests_register).
func (k *Kamailio) Registers() int {
	k.t.Helper()
	return k.stat("rcv_requests_register")
}

func (k *Kamailio) stat(name string) int {
	k.t.Helper()
	out := k.RPC("stats.get_statistics", name)
	for _, line := range strings.Split(out, "\n") {
		if _, v, ok := strings.Cut(line, name+" = "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				k.t.Fatalf("kamailio statistic %s: %q", name, line)
			}
			return n
		}
	}
	k.t.Fatalf("kamailio statistic %s missing from:\n%s", name, out)
	return 0
}

// ContactCount returns how many contacts Kamailio's location holds
// (usrloc statistic location_contacts); unlike Location it works for any
// number of AORs (ul.dump's reply is limited in size).
func (k *Kamailio) ContactCount() int {
	k.t.Helper()
	return k.stat("location_contacts")
}

// KamailioContact is one contact in Kamailio's location table.
type KamailioContact struct {
	Address string // the Contact URI as stored
	Path    string // "" when none
	Expires int    // seconds left
}

// Location reads Kamailio's location table (usrloc in memory, ul.dump):
// the user part of each AOR (use_domain is off) to its contacts.
func (k *Kamailio) Location() map[string][]KamailioContact {
	k.t.Helper()
	return parseULDump(k.RPC("ul.dump"))
}

// parseULDump reads kamcmd's ul.dump output: "AoR: user" lines each
// followed by its contacts' "Address:", "Expires:" and "Path:" lines.
func parseULDump(out string) map[string][]KamailioContact {
	loc := map[string][]KamailioContact{}
	var aor string
	var cur *KamailioContact
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), ": ")
		if !ok {
			continue
		}
		switch key {
		case "AoR":
			aor, cur = val, nil
		case "Address":
			loc[aor] = append(loc[aor], KamailioContact{Address: val})
			cur = &loc[aor][len(loc[aor])-1]
		case "Expires":
			if cur != nil {
				cur.Expires, _ = strconv.Atoi(val)
			}
		case "Path":
			if cur != nil && val != "[not set]" {
				cur.Path = val
			}
		}
	}
	return loc
}

//go:build integration

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/kamailiocfg"
	"github.com/pinhole-sip/pinhole/internal/testutil"
)

// certLife is how long the test certificates live: the expiry gauge must
// read close to it.
const certLife = 30 * 24 * time.Hour

// tlsServer is a pinhole with a TLS listener and three certificates from
// a test CA: the default for sip.example.net, one for *.edge.example.net
// and one with a list of SANs.
type tlsServer struct {
	*testutil.Pinhole
	ca      *testutil.CA
	tlsAddr string
	metrics string
	files   map[string][2]string // common name → cert, key
	udp     *server              // the same pinhole, over UDP, for sipp
}

func startTLSServer(t *testing.T, edit func(*testutil.Config)) *tlsServer {
	t.Helper()
	s := &tlsServer{ca: testutil.NewCA(t, "pinhole test CA"), files: map[string][2]string{}}
	issue := func(cn string, names ...string) config.Certificate {
		c, k := s.ca.Issue(t, cn, certLife, names...)
		s.files[cn] = [2]string{c, k}
		return config.Certificate{Cert: c, Key: k}
	}
	cfg := testutil.DefaultConfig(t)
	s.tlsAddr = fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	s.metrics = fmt.Sprintf("%s:%d", testutil.Loopback, testutil.FreePort(t, testutil.Loopback))
	cfg.Listen.TLS = []string{s.tlsAddr}
	cfg.Metrics.Listen = s.metrics
	cfg.TLS.Certificates = []config.Certificate{
		issue("pinhole-default", "sip.example.net"),
		issue("pinhole-edge", "*.edge.example.net"),
		issue("pinhole-san", "a.example.org", "b.example.org", "sip.example.org"),
	}
	if edit != nil {
		edit(&cfg)
	}
	s.Pinhole = testutil.StartPinhole(t, nil, cfg)
	s.udp = &server{Pinhole: s.Pinhole, Addr: cfg.Listen.UDP[0]}
	return s
}

// sClient is one `openssl s_client` handshake with pinhole. sni "" sends
// no server name. It returns the served certificate's subject line and
// the whole output; a refused handshake has no subject.
func (s *tlsServer) sClient(t *testing.T, sni string, extra ...string) (subject, out string) {
	t.Helper()
	args := []string{"s_client", "-connect", s.tlsAddr, "-CAfile", s.ca.File, "-verify_return_error"}
	if sni == "" {
		args = append(args, "-noservername")
	} else {
		args = append(args, "-servername", sni, "-verify_hostname", sni)
	}
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.Stdin = strings.NewReader("") // EOF at once: s_client closes after the handshake
	b, _ := cmd.CombinedOutput()      // a refused handshake exits 1; the output says why
	out = string(b)
	if m := regexp.MustCompile(`(?m)^subject=(.*)$`).FindStringSubmatch(out); m != nil {
		subject = m[1]
	}
	return subject, out
}

// TestTLSCertificateBySNI: openssl s_client, verifying the chain against
// the test CA and the host name it asked for, gets the certificate made
// for that name: exact names, a wildcard one label deep, any SAN, and the
// default for no SNI or a name no certificate holds. TLS 1.1 is refused
// (min_version 1.2) and counted; the expiry gauge reads the certificates'
// life.
func TestTLSCertificateBySNI(t *testing.T) {
	s := startTLSServer(t, nil)
	for _, tt := range []struct{ sni, want string }{
		{"", "pinhole-default"},
		{"sip.example.net", "pinhole-default"},
		{"a.edge.example.net", "pinhole-edge"},
		{"b.example.org", "pinhole-san"},
		{"sip.example.org", "pinhole-san"},
	} {
		subject, out := s.sClient(t, tt.sni)
		if !strings.Contains(subject, "CN = "+tt.want) || !strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Errorf("SNI %q: subject %q, want CN %s verified; s_client said:\n%s", tt.sni, subject, tt.want, out)
		}
	}
	// Names no certificate holds get the default, which then fails the
	// client's host name check: the handshake is refused by the client.
	for _, sni := range []string{"x.a.edge.example.net", "unknown.example.com"} {
		subject, out := s.sClient(t, sni, "-showcerts")
		if !strings.Contains(out, "CN = pinhole-default") || subject != "" && strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Errorf("SNI %q: want the default certificate, failing the host name check; s_client said:\n%s", sni, out)
		}
	}

	// TLS 1.1: OpenSSL's own security level would refuse it first, so it
	// is lowered to 0 to let the client offer it; pinhole must say no.
	if subject, out := s.sClient(t, "sip.example.net", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"); subject != "" || !strings.Contains(out, "alert") {
		t.Errorf("a TLS 1.1 handshake succeeded or failed for another reason than an alert:\n%s", out)
	}
	if subject, out := s.sClient(t, "sip.example.net", "-tls1_2"); !strings.Contains(subject, "pinhole-default") {
		t.Errorf("a TLS 1.2 handshake failed:\n%s", out)
	}
	m := testutil.Metrics(t, nil, s.metrics)
	if got := m[`pinhole_tls_handshake_errors_total{reason="version"}`]; got != 1 {
		t.Errorf("version handshake errors = %v, want 1 (the TLS 1.1 client)", got)
	}
	if got := m[`pinhole_tls_handshakes_total{result="ok"}`]; got < 6 {
		t.Errorf("successful handshakes = %v, want at least 6", got)
	}
	exp := m["pinhole_tls_certificate_expiry_seconds"]
	if exp > certLife.Seconds() || exp < certLife.Seconds()-600 {
		t.Errorf("certificate expiry gauge = %v s, want about %v s", exp, certLife.Seconds())
	}
	if got := m["pinhole_tls_certificates"]; got != 3 {
		t.Errorf("certificates served = %v, want 3", got)
	}
}

// sipConn is a SIP over TLS connection from a Go client, which keeps it
// open across pinhole's reload.
type sipConn struct {
	*tls.Conn
	r    *bufio.Reader
	user string
	n    int
}

func dialSIP(t *testing.T, addr, local, user string, roots *x509.CertPool, certs []tls.Certificate) (*sipConn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: "sip.example.net", RootCAs: roots, Certificates: certs})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &sipConn{Conn: c, r: bufio.NewReader(c), user: user}, nil
}

// register sends a REGISTER and returns the final status code, or an
// error when the connection ends first.
func (c *sipConn) register() (int, error) {
	c.n++
	local := c.LocalAddr().String()
	fmt.Fprintf(c, "REGISTER sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS %s;branch=z9hG4bK-tls-%s-%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=t%d\r\nTo: <sip:%s@%s>\r\n"+
		"Call-ID: tls-%s@e2e\r\nCSeq: %d REGISTER\r\n"+
		"Contact: <sip:%s@%s;transport=tls>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
		domain, local, c.user, c.n, c.user, domain, c.n, c.user, domain, c.user, c.n, c.user, local)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		code := 0
		if rest, ok := strings.CutPrefix(line, "SIP/2.0 "); ok && len(rest) >= 3 {
			code, _ = strconv.Atoi(rest[:3])
		}
		length := 0
		for { // the rest of the header section
			h, err := c.r.ReadString('\n')
			if err != nil {
				return 0, err
			}
			if v, ok := strings.CutPrefix(strings.ToLower(h), "content-length:"); ok {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if h == "\r\n" {
				break
			}
		}
		if _, err := io.CopyN(io.Discard, c.r, int64(length)); err != nil {
			return 0, err
		}
		if code >= 200 {
			return code, nil
		}
	}
}

// TestTLSReload: the certificate files are renewed in place and pinhole
// gets SIGHUP. A new s_client sees the renewed certificate, while a
// connection opened before keeps registering over its session. Then a
// broken file: the reload is refused and counted, the renewed certificate
// stays, and the old connection still works.
func TestTLSReload(t *testing.T) {
	s := startTLSServer(t, nil)
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(s.ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(pem)
	old, err := dialSIP(t, s.tlsAddr, "", "carol", roots, nil)
	if err != nil {
		t.Fatalf("TLS connection before the reload: %v", err)
	}
	if code, err := old.register(); code != 200 {
		t.Fatalf("REGISTER over TLS before the reload: %d, %v", code, err)
	}
	loads := func(result string) float64 {
		return testutil.Metrics(t, nil, s.metrics)[`pinhole_tls_certificate_loads_total{result="`+result+`"}`]
	}
	okBefore := loads("ok")

	// Renew: the same files, a new certificate (and key) with another
	// serial; its subject names it so s_client shows which one it got.
	f := s.files["pinhole-default"]
	c, k := s.ca.Issue(t, "pinhole-default-renewed", 2*certLife, "sip.example.net")
	copyFile(t, c, f[0])
	copyFile(t, k, f[1])
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return loads("ok") > okBefore }) {
		t.Fatalf("no %s within 5s", "a TLS certificate load after SIGHUP")
	}
	if subject, out := s.sClient(t, "sip.example.net"); !strings.Contains(subject, "pinhole-default-renewed") {
		t.Errorf("after SIGHUP s_client got %q, want the renewed certificate:\n%s", subject, out)
	}
	if code, err := old.register(); code != 200 {
		t.Errorf("REGISTER on the connection opened before the reload: %d, %v", code, err)
	}
	if exp := testutil.Metrics(t, nil, s.metrics)["pinhole_tls_certificate_expiry_seconds"]; exp > certLife.Seconds() {
		// The edge and SAN certificates still expire first.
		t.Errorf("expiry gauge = %v after renewing one of three, want the soonest (%v)", exp, certLife.Seconds())
	}

	// Broken: half a PEM file.
	if err := os.WriteFile(f[0], []byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	failedBefore := loads("failed")
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return loads("failed") > failedBefore }) {
		t.Fatalf("no %s within 5s", "a failed TLS certificate load after SIGHUP")
	}
	if subject, out := s.sClient(t, "sip.example.net"); !strings.Contains(subject, "pinhole-default-renewed") {
		t.Errorf("after a broken reload s_client got %q, want the renewed certificate still:\n%s", subject, out)
	}
	if code, err := old.register(); code != 200 {
		t.Errorf("REGISTER on the old connection after a broken reload: %d, %v", code, err)
	}
	if !strings.Contains(s.Output(), "reload TLS certificates (the previous ones stay)") {
		t.Error("the failed reload was not logged")
	}
}

// TestTLSVerifyPeers: with verify_peers, a trusted peer's address (here
// 127.0.0.1, where openssl s_client connects from) must present a
// certificate from the peer CA: with one its REGISTER is answered, without
// one the connection is closed after the handshake and counted. A phone
// (127.0.0.2, not a peer) needs no certificate though it is asked for one.
func TestTLSVerifyPeers(t *testing.T) {
	peerCA := testutil.NewCA(t, "pinhole peer CA")
	s := startTLSServer(t, func(c *testutil.Config) {
		c.Trust.Peers = []string{"127.0.0.1"}
		c.TLS.VerifyPeers.CAFile = peerCA.File
	})
	peerCert, peerKey := peerCA.Issue(t, "farm1", certLife, "farm1.example.net")
	otherCert, otherKey := s.ca.Issue(t, "not-a-peer", certLife, "farm1.example.net") // right server CA, wrong peer CA

	for _, tt := range []struct {
		name string
		args []string
		want bool
	}{
		{"peer certificate", []string{"-cert", peerCert, "-key", peerKey}, true},
		{"no certificate", nil, false},
		{"another CA's certificate", []string{"-cert", otherCert, "-key", otherKey}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := s.sClientSIP(t, strings.ReplaceAll(tt.name, " ", "-"), tt.args...)
			// Refused: no answer at all, not merely another one.
			if got := strings.Contains(out, "SIP/2.0 200"); got != tt.want || !tt.want && strings.Contains(out, "SIP/2.0") {
				t.Errorf("answered = %v, want %v; s_client said:\n%s", got, tt.want, out)
			}
		})
	}
	m := testutil.Metrics(t, nil, s.metrics)
	if got := m[`pinhole_tls_handshakes_total{result="peer_verified"}`]; got != 1 {
		t.Errorf("verified peers = %v, want 1", got)
	}
	if got := m[`pinhole_tls_handshakes_total{result="peer_refused"}`]; got != 2 {
		t.Errorf("refused peers = %v, want 2", got)
	}
	if got := m[`pinhole_stream_closed_total{reason="tls_refused"}`]; got != 2 {
		t.Errorf("connections closed as tls_refused = %v, want 2", got)
	}

	roots := x509.NewCertPool()
	pem, err := os.ReadFile(s.ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(pem)
	phone, err := dialSIP(t, s.tlsAddr, "127.0.0.2", "dave", roots, nil)
	if err != nil {
		t.Fatalf("a phone's TLS connection: %v", err)
	}
	if code, err := phone.register(); code != 200 {
		t.Errorf("a phone without a certificate: REGISTER got %d, %v; want 200", code, err)
	}
}

// sClientSIP sends one REGISTER (its own Call-ID) through `openssl s_client` and returns what
// came back: s_client runs until pinhole answers and closes, or closes at
// once, or 5 s pass.
func (s *tlsServer) sClientSIP(t *testing.T, callID string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	args := append([]string{"s_client", "-connect", s.tlsAddr, "-servername", "sip.example.net", "-CAfile", s.ca.File, "-quiet", "-ign_eof", "-crlf"}, extra...)
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.Stdin = strings.NewReader("REGISTER sip:localhost SIP/2.0\n" +
		"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-" + callID + ";rport\n" +
		"Max-Forwards: 70\nFrom: <sip:farm@localhost>;tag=p1\nTo: <sip:farm@localhost>\n" +
		"Call-ID: " + callID + "@e2e\nCSeq: 1 REGISTER\nContact: <sip:farm@127.0.0.1:5999;transport=tls>\n" +
		"Expires: 600\nContent-Length: 0\n\n")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openssl s_client: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// -ign_eof keeps the session after stdin ends: it is cut once the
	// answer is in; a refused one ends by itself when pinhole closes.
	for !strings.Contains(out.String(), "SIP/2.0 200") {
		select {
		case <-done:
			return out.String()
		case <-ctx.Done():
			<-done
			return out.String()
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	<-done
	return out.String()
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

// kamailioTLSRelay is a Kamailio that relays every request it gets over
// UDP to pinhole over TLS, with the given client certificate, verifying
// pinhole's certificate against the test CA and the name sip.example.net:
// a trusted peer (a main registrar, a farm node) talking TLS to pinhole.
// It returns Kamailio's UDP address.
func kamailioTLSRelay(t *testing.T, pinholeTLS, serverCA, cert, key string) string {
	t.Helper()
	modules, err := kamailiocfg.ModulesDir("/usr/sbin/kamailio")
	if err != nil {
		t.Fatal(err)
	}
	// A unix socket path is limited to 108 bytes; t.TempDir may be longer.
	run, err := os.MkdirTemp("", "kamtls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	udpPort, tlsPort := testutil.FreePort(t, testutil.Loopback), testutil.FreePort(t, testutil.Loopback)
	tlsCfg := filepath.Join(run, "tls.cfg")
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tlsCfg, fmt.Sprintf(`[server:default]
method = TLSv1.2+
private_key = %[1]s
certificate = %[2]s

[client:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
private_key = %[1]s
certificate = %[2]s
ca_list = %[3]s
server_name = sip.example.net
`, key, cert, serverCA))
	cfg := filepath.Join(run, "kamailio.cfg")
	write(cfg, fmt.Sprintf(`#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
enable_tls=yes
listen=udp:127.0.0.1:%[1]d
listen=tls:127.0.0.1:%[2]d
mpath="%[3]s"
loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "pv.so"
modparam("tls", "config", "%[4]s")
request_route {
	$du = "sip:%[5]s;transport=tls";
	if (!t_relay()) { sl_reply_error(); }
}
`, udpPort, tlsPort, modules, tlsCfg, pinholeTLS))
	logPath := filepath.Join(t.TempDir(), "kamailio.log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/kamailio", "-DD", "-E", "-f", cfg, "-Y", run)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kamailio: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("kamailio log:\n%s", b)
		}
	})
	// Ready when its UDP port is taken.
	udp := fmt.Sprintf("127.0.0.1:%d", udpPort)
	if !waitFor(10*time.Second, func() bool {
		c, err := net.ListenPacket("udp", udp)
		if err == nil {
			c.Close()
		}
		return err != nil
	}) {
		t.Fatal("kamailio did not bind its UDP port within 10s")
	}
	return udp
}

// TestTLSRegisterThroughKamailio: sipp's REGISTER reaches pinhole over TLS
// through Kamailio, the real SIP stack of a trusted peer (Debian's sipp is
// built without TLS, so it cannot speak TLS itself). With verify_peers on,
// Kamailio presenting a certificate from the peer CA gets its 200; with a
// certificate from another CA its connection is closed after the
// handshake and the REGISTER gets no 200.
func TestTLSRegisterThroughKamailio(t *testing.T) {
	peerCA := testutil.NewCA(t, "pinhole peer CA")
	s := startTLSServer(t, func(c *testutil.Config) {
		c.Trust.Peers = []string{"127.0.0.1"}
		c.TLS.VerifyPeers.CAFile = peerCA.File
	})
	register := func(kam, user string, within time.Duration) *testutil.SippResult {
		return testutil.Sipp{
			Scenario: scenario(t, "register.xml"),
			Remote:   kam,
			LocalIP:  testutil.Loopback,
			Users:    []testutil.User{{Name: user, Password: "x", Expires: 600}},
			Vars:     map[string]string{"domain": domain},
			Timeout:  within,
		}.Run(t)
	}

	cert, key := peerCA.Issue(t, "kamailio-peer", certLife, "registrar.example.net")
	kam := kamailioTLSRelay(t, s.tlsAddr, s.ca.File, cert, key)
	if r := register(kam, "erin", 8*time.Second); r.ExitCode != testutil.SippExitOK {
		t.Errorf("REGISTER through Kamailio with a peer certificate:\n%s", r.Report())
	}

	cert, key = s.ca.Issue(t, "kamailio-stranger", certLife, "registrar.example.net")
	kam = kamailioTLSRelay(t, s.tlsAddr, s.ca.File, cert, key)
	// No answer comes, so a short wait.
	if r := register(kam, "frank", 3*time.Second); r.ExitCode == testutil.SippExitOK {
		t.Errorf("REGISTER through Kamailio with another CA's certificate succeeded:\n%s", r.Report())
	}
	m := testutil.Metrics(t, nil, s.metrics)
	if m[`pinhole_tls_handshakes_total{result="peer_verified"}`] < 1 || m[`pinhole_tls_handshakes_total{result="peer_refused"}`] < 1 {
		t.Errorf("handshakes: verified %v, refused %v; want at least one of each",
			m[`pinhole_tls_handshakes_total{result="peer_verified"}`], m[`pinhole_tls_handshakes_total{result="peer_refused"}`])
	}
	if got := s.udp.query(t, "erin"); got.Code != "200" || len(got.Contacts) != 1 {
		t.Errorf("erin's bindings after the TLS REGISTER: %+v, want one", got)
	}
}

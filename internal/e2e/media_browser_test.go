//go:build integration

package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-sip/pinhole/internal/testutil"
	"github.com/pinhole-sip/pinhole/slowpath/media/ng"
)

// Versions of the browser-side SIP stack the test installs from the npm
// registry: JsSIP, and esbuild to bundle its CommonJS modules for a page.
const (
	jssipVersion   = "3.13.8"
	esbuildVersion = "0.28.2"
)

// jssipBundle installs JsSIP into a directory of the test and bundles it as
// one script that defines the global JsSIP.
func jssipBundle(t *testing.T) []byte {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatalf("npm not found (make test installs it): %v", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error",
		"jssip@"+jssipVersion, "esbuild@"+esbuildVersion)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm install jssip esbuild: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "jssip.js")
	bundle := exec.CommandContext(ctx, filepath.Join(dir, "node_modules", ".bin", "esbuild"),
		filepath.Join(dir, "node_modules", "jssip", "lib", "JsSIP.js"),
		"--bundle", "--format=iife", "--global-name=JsSIP", "--log-level=warning", "--outfile="+out)
	if b, err := bundle.CombinedOutput(); err != nil {
		t.Fatalf("bundle JsSIP: %v\n%s", err, b)
	}
	js, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// browserPage is a page whose JsSIP registers as alice over WebSocket
// (with a password when the test gives one: digest auth for REGISTER and
// INVITE), calls bob with the fake microphone and reports what happens to
// /event. Once ICE and DTLS are through it reports "connected" and
// waits on /hangup, which the test answers when it has counted the media
// at rtpengine; then it reports its own receive counters (getStats) as
// "stats" and hangs up. %s is the JSON of browserParams.
const browserPage = `<!doctype html>
<script src="/jssip.js"></script>
<script>
const p = %s;
const report = (k, v) => fetch('/event?k=' + k + '&v=' + encodeURIComponent(v || ''));
const cfg = {
  sockets: [new JsSIP.WebSocketInterface(p.socket)],
  uri: p.uri, register: true, session_timers: false,
};
if (p.password) { cfg.password = p.password; }
const ua = new JsSIP.UA(cfg);
ua.on('registrationFailed', e => report('failed', 'register: ' + e.cause));
// A WebSocket that cannot connect (an untrusted certificate among other
// things) would otherwise only show as a missing "confirmed".
ua.on('disconnected', e => report('failed', 'websocket to ' + p.socket + ' closed: code ' + e.code + ' ' + (e.reason || '')));
ua.on('registered', () => {
  const s = ua.call(p.target, {
    mediaConstraints: {audio: true, video: false},
    pcConfig: {iceServers: []},
    eventHandlers: {
      confirmed: () => {
        // One report: fetches run concurrently and may arrive in any
        // order. The session id is the Call-ID followed by our From tag.
        const callid = s._request.call_id;
        report('confirmed', JSON.stringify({
          callid: callid, fromtag: s.id.substring(callid.length),
          answer: s.connection.remoteDescription.sdp,
        }));
        const pc = s.connection;
        let once = false;
        // ICE, then DTLS: 'connected' once SRTP keys exist.
        const connected = async () => {
          if (once) { return; }
          once = true;
          // Its own key: the state reports below may arrive after it.
          report('connected', '1');
          await fetch('/hangup');
          // inbound-rtp counts SRTP packets that were decrypted and
          // accepted for the remote track; outbound-rtp what was sent.
          const got = {};
          (await pc.getStats()).forEach(r => {
            if (r.type === 'inbound-rtp' && r.kind === 'audio') { got.received = r.packetsReceived; }
            if (r.type === 'outbound-rtp' && r.kind === 'audio') { got.sent = r.packetsSent; }
          });
          await report('stats', JSON.stringify(got));
          s.terminate();
        };
        pc.addEventListener('connectionstatechange', () => {
          if (pc.connectionState === 'connected') { connected(); } else { report('conn', pc.connectionState); }
        });
        if (pc.connectionState === 'connected') { connected(); }
      },
      failed: e => report('failed', 'call: ' + e.cause),
      ended: e => report('ended', e.cause),
    },
  });
});
ua.start();
</script>`

// browserParams is what browserPage's JsSIP is told.
type browserParams struct {
	Socket   string `json:"socket"` // ws://… or wss://…
	URI      string `json:"uri"`    // its AOR
	Password string `json:"password,omitempty"`
	Target   string `json:"target"` // whom it calls
}

// browserEvents collects what the page reports.
type browserEvents struct {
	mu     sync.Mutex
	values map[string]string
	seen   chan string
}

func (b *browserEvents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k, v := r.URL.Query().Get("k"), r.URL.Query().Get("v")
	b.mu.Lock()
	b.values[k] = v
	b.mu.Unlock()
	select {
	case b.seen <- k:
	default:
	}
}

func (b *browserEvents) get(k string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.values[k]
}

// wait waits for event k; a "failed" event ends the wait with an error.
func (b *browserEvents) wait(t *testing.T, k string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case got := <-b.seen:
			if got == "failed" {
				t.Fatalf("browser: %s", b.get("failed"))
			}
			if got == k {
				return
			}
		case <-timeout:
			t.Fatalf("browser reported no %q within %s", k, d)
		}
	}
}

// TestMediaBrowserCallsPhone: headless Chromium with JsSIP registers and
// calls a plain RTP/AVP phone (sipp standing in for FreeSWITCH), over
// plain WebSocket without authentication and over WSS with digest auth
// (REGISTER challenged with 401, the INVITE with 407). pinhole relays the
// call for the webrtc rule: the phone gets rtpengine's plain RTP/AVP
// offer, the browser rtpengine's DTLS-SRTP answer with ICE. The phone
// echoes the RTP it receives (sipp -rtp_echo), so media is counted at
// both ends: rtpengine counts packets from the phone's leg (the phone got
// the browser's RTP, decrypted by rtpengine, and sent it back) and the
// browser's own receive counter (getStats inbound-rtp) counts SRTP that
// it decrypted. The browser's BYE deletes the call.
func TestMediaBrowserCallsPhone(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (make test installs it): %v", err)
	}
	js := jssipBundle(t)
	for _, tc := range []struct {
		name string
		wss  bool // else ws
		auth bool
	}{
		{name: "ws", wss: false, auth: false},
		{name: "wss_digest", wss: true, auth: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			browserCall(t, chromium, js, tc.wss, tc.auth)
		})
	}
}

// browserMinPackets is how many packets each end must have received: the
// fake microphone sends 50 a second and the test talks for
// browserTalk, so a relay that forwards at all is far above it, and one
// that drops one direction is at zero.
const (
	browserMinPackets = 25
	browserTalk       = 1500 * time.Millisecond
)

func browserCall(t *testing.T, chromium string, js []byte, wss, auth bool) {
	const password = "wonderland"
	var (
		socket string
		spki   string // the WSS certificate's key, for Chromium's trust
	)
	opts := relayedOpts{bob: true, bobArgs: []string{"-rtp_echo", "-mp", "6000"}}
	if auth {
		opts.bobPassword = password
	}
	opts.edit = func(c *testutil.Config) {
		core := netip.MustParseAddr(strings.Split(c.Listen.UDP[0], ":")[0])
		c.Media.Rules.WebRTC = true
		if wss {
			addr := netip.AddrPortFrom(core, 8443).String()
			c.Listen.WSS = []string{addr}
			ca := testutil.NewCA(t, "pinhole-e2e-ca")
			c.TLS.Cert, c.TLS.Key = ca.Issue(t, "pinhole-wss", time.Hour, core.String())
			spki = spkiHash(t, c.TLS.Cert)
			socket = "wss://" + addr
		} else {
			addr := netip.AddrPortFrom(core, 8080).String()
			c.Listen.WS = []string{addr}
			socket = "ws://" + addr
		}
		if auth {
			c.Auth.Credentials = testutil.WriteCredentials(t, c.Auth.Realm, map[string]string{"alice": password, "bob": password})
		}
	}
	n := startRelayedNetOpts(t, opts)
	params := browserParams{Socket: socket, URI: "sip:alice@" + domain, Target: "sip:bob@" + domain}
	if auth {
		params.Password = password
	}
	pageParams, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}

	events := &browserEvents{values: map[string]string{}, seen: make(chan string, 16)}
	hangup := make(chan struct{})
	var hangupOnce sync.Once
	release := func() { hangupOnce.Do(func() { close(hangup) }) }
	t.Cleanup(release)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, browserPage, pageParams)
	})
	mux.HandleFunc("/jssip.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write(js)
	})
	mux.Handle("/event", events)
	mux.HandleFunc("/hangup", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hangup:
		case <-r.Context().Done():
		}
	})
	var ln net.Listener
	// 127.0.0.1 is a secure context: the page may use the microphone.
	if err := n.core.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	args := []string{
		"--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir=" + t.TempDir(),
		// A fake microphone that needs no permission prompt.
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
		// Host candidates as addresses, not mDNS names nobody resolves here.
		"--disable-features=WebRtcHideLocalIpsWithMdns",
	}
	if spki != "" {
		// Chromium trusts the WSS certificate by its public key: a
		// certificate whose SubjectPublicKeyInfo hashes to this value is
		// accepted (the flag works only with --user-data-dir). Narrower
		// than --ignore-certificate-errors, which would accept any
		// certificate, and simpler than an NSS database in the profile.
		args = append(args, "--ignore-certificate-errors-spki-list="+spki)
	}
	ctx, cancel := context.WithCancel(context.Background())
	browser := n.core.CommandContext(ctx, chromium, append(args, "http://"+ln.Addr().String()+"/")...)
	logPath := filepath.Join(t.TempDir(), "chromium.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	browser.Stdout, browser.Stderr = logFile, logFile
	started := time.Now()
	if err := browser.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		release()
		cancel()
		_ = browser.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("chromium output:\n%s", tailLines(string(b), 30))
		}
	})

	events.wait(t, "confirmed", 20*time.Second)
	t.Logf("call confirmed after %s", time.Since(started))
	var confirmed struct{ CallID, FromTag, Answer string }
	if err := json.Unmarshal([]byte(events.get("confirmed")), &confirmed); err != nil {
		t.Fatalf("browser's confirmed report %q: %v", events.get("confirmed"), err)
	}
	callID, browserTag := confirmed.CallID, confirmed.FromTag
	// Digest was really asked for (and answered, or nothing was
	// confirmed): the REGISTERs of the browser and bob with 401, the
	// browser's INVITE with 407.
	challenges := map[string]float64{
		`pinhole_registrar_replies_total{code="401"}`:     n.metric(t, `pinhole_registrar_replies_total{code="401"}`),
		`pinhole_proxy_local_replies_total{status="407"}`: n.metric(t, `pinhole_proxy_local_replies_total{status="407"}`),
	}
	for name, got := range challenges {
		if auth && got < 1 || !auth && got != 0 {
			t.Errorf("%s = %v with auth %v", name, got, auth)
		}
	}
	offers := n.bob.LogValues("offer_media")
	if len(offers) != 1 || mustAddrPort(t, "offer to bob", offers[0]).Addr() != n.rtp.Interface {
		t.Errorf("bob got offers %q, want one pointing at rtpengine %s", offers, n.rtp.Interface)
	}
	if p := n.bob.LogValues("offer_proto"); len(p) != 1 || p[0] != "RTP/AVP" {
		t.Errorf("bob's offer has profile %q, want plain RTP/AVP", p)
	}

	// The fake microphone's audio flows once DTLS is done.
	deadline := time.Now().Add(8 * time.Second)
	for events.get("connected") == "" {
		if time.Now().After(deadline) {
			var dtls []string
			for _, l := range strings.Split(n.rtp.Log(), "\n") {
				if ll := strings.ToLower(l); !strings.Contains(ll, "ping") && !strings.Contains(ll, "control") {
					dtls = append(dtls, l)
				}
			}
			t.Logf("rtpengine on the call:\n%s", tailLines(strings.Join(dtls, "\n"), 40))
			t.Fatalf("browser's ICE/DTLS state %q, want connected; the browser got:\n%s", events.get("conn"), confirmed.Answer)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(browserTalk)

	// rtpengine's counters: packets it received from each leg.
	qctx, qcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer qcancel()
	q, err := n.client.Query(qctx, callID)
	if err != nil {
		t.Fatalf("query %s: %v", callID, err)
	}
	legs := legPackets(q)
	if _, ok := legs[browserTag]; len(legs) != 2 || !ok {
		t.Fatalf("rtpengine knows legs %v, want the browser's (%s) and bob's", legs, browserTag)
	}
	for tag, got := range legs {
		who := "bob (his echo of the browser's audio: RTP reached him)"
		if tag == browserTag {
			who = "the browser (its fake microphone, after ICE and DTLS)"
		}
		if got < browserMinPackets {
			t.Errorf("rtpengine counted %d packets from %s, want at least %d; the browser got:\n%s",
				got, who, browserMinPackets, confirmed.Answer)
		}
	}

	release()
	events.wait(t, "stats", 10*time.Second)
	var stats struct{ Received, Sent int64 }
	if err := json.Unmarshal([]byte(events.get("stats")), &stats); err != nil {
		t.Fatalf("browser's stats %q: %v", events.get("stats"), err)
	}
	t.Logf("browser sent %d and received %d RTP packets; rtpengine counted %v", stats.Sent, stats.Received, legs)
	if stats.Received < browserMinPackets {
		t.Errorf("browser decrypted %d SRTP packets (getStats inbound-rtp packetsReceived), want at least %d: bob's echo did not come back through rtpengine",
			stats.Received, browserMinPackets)
	}

	events.wait(t, "ended", 10*time.Second)
	var ce *ng.CommandError
	deadline = time.Now().Add(3 * time.Second)
	for {
		_, err := n.client.Query(qctx, callID)
		if errors.As(err, &ce) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("query after the browser's BYE: %v, want rtpengine to have deleted the call", err)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// spkiHash is what Chromium's --ignore-certificate-errors-spki-list takes:
// base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo.
func spkiHash(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", certFile, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

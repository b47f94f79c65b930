//go:build integration

package e2e

import (
	"context"
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

// browserPage is a page whose JsSIP registers as alice over WebSocket,
// calls bob with the fake microphone, reports what happens to /event and
// hangs up talk milliseconds after ICE and DTLS are through.
const browserPage = `<!doctype html>
<script src="/jssip.js"></script>
<script>
const report = (k, v) => fetch('/event?k=' + k + '&v=' + encodeURIComponent(v || ''));
const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface('ws://%[1]s')],
  uri: 'sip:alice@%[2]s', register: true, session_timers: false,
});
ua.on('newRTCSession', e => report('callid', e.request.call_id));
ua.on('registrationFailed', e => report('failed', 'register: ' + e.cause));
ua.on('registered', () => {
  const s = ua.call('sip:bob@%[2]s', {
    mediaConstraints: {audio: true, video: false},
    pcConfig: {iceServers: []},
    eventHandlers: {
      confirmed: () => {
        report('answer', s.connection.remoteDescription.sdp);
        report('confirmed');
        // ICE, then DTLS: 'connected' once SRTP keys exist.
        const pc = s.connection;
        const connected = () => {
          report('conn', 'connected');
          setTimeout(() => s.terminate(), %[3]d);
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

// TestMediaBrowserCallsPhone: headless Chromium with JsSIP registers over
// WebSocket and calls a plain RTP/AVP phone (sipp). pinhole relays the
// call for the webrtc rule: the phone gets rtpengine's plain RTP/AVP
// offer, the browser rtpengine's DTLS-SRTP answer with ICE, and once ICE
// and DTLS are through, rtpengine counts the browser's media (the fake
// microphone's) on its leg. The browser's BYE deletes the call.
func TestMediaBrowserCallsPhone(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (make test installs it): %v", err)
	}
	js := jssipBundle(t)
	var ws string
	n := startRelayedNetWith(t, func(c *testutil.Config) {
		ws = netip.AddrPortFrom(netip.MustParseAddr(strings.Split(c.Listen.UDP[0], ":")[0]), 8080).String()
		c.Listen.WS = []string{ws}
		c.Media.Rules.WebRTC = true
	})

	events := &browserEvents{values: map[string]string{}, seen: make(chan string, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, browserPage, ws, domain, 2000)
	})
	mux.HandleFunc("/jssip.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write(js)
	})
	mux.Handle("/event", events)
	var ln net.Listener
	// 127.0.0.1 is a secure context: the page may use the microphone.
	if err := n.core.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	browser := n.core.CommandContext(ctx, chromium,
		"--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(),
		// A fake microphone that needs no permission prompt.
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
		// Host candidates as addresses, not mDNS names nobody resolves here.
		"--disable-features=WebRtcHideLocalIpsWithMdns",
		"http://"+ln.Addr().String()+"/")
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
	callID := events.get("callid")
	offers := n.bob.LogValues("offer_media")
	if len(offers) != 1 || mustAddrPort(t, "offer to bob", offers[0]).Addr() != n.rtp.Interface {
		t.Errorf("bob got offers %q, want one pointing at rtpengine %s", offers, n.rtp.Interface)
	}
	if p := n.bob.LogValues("offer_proto"); len(p) != 1 || p[0] != "RTP/AVP" {
		t.Errorf("bob's offer has profile %q, want plain RTP/AVP", p)
	}

	// The fake microphone's audio flows once DTLS is done; count after
	// most of a second of it (the page hangs up 2 s after).
	deadline := time.Now().Add(8 * time.Second)
	for events.get("conn") != "connected" {
		if time.Now().After(deadline) {
			var dtls []string
			for _, l := range strings.Split(n.rtp.Log(), "\n") {
				if ll := strings.ToLower(l); !strings.Contains(ll, "ping") && !strings.Contains(ll, "control") {
					dtls = append(dtls, l)
				}
			}
			t.Logf("rtpengine on the call:\n%s", tailLines(strings.Join(dtls, "\n"), 40))
			t.Fatalf("browser's ICE/DTLS state %q, want connected; the browser got:\n%s", events.get("conn"), events.get("answer"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(800 * time.Millisecond)
	qctx, qcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer qcancel()
	q, err := n.client.Query(qctx, callID)
	if err != nil {
		t.Fatalf("query %s: %v", callID, err)
	}
	legs := legPackets(q)
	// The phone (sipp) sends nothing; the browser's leg is the one that
	// counted packets.
	var browserLeg int64
	for _, p := range legs {
		browserLeg = max(browserLeg, p)
	}
	if browserLeg < 10 {
		t.Errorf("rtpengine counted %v packets per leg, want the browser's audio (at least 10) after ICE and DTLS; the browser got:\n%s",
			legs, events.get("answer"))
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

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

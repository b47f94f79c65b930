package resolve

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// zone is an in-test name server whose records a test changes while it
// runs: records by question name and type, in zone-file syntax.
type zone struct {
	mu      sync.Mutex
	records map[string][]string // "name TYPE" → RR texts
	fail    atomic.Bool         // answer SERVFAIL to everything
	asked   []string            // "name TYPE" of every question, in order
	addr    string
}

func newZone(t testing.TB) *zone {
	t.Helper()
	z := &zone{records: map[string][]string{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(z.serve)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return z
}

// set replaces the records of one name and type; each text is a whole RR
// ("_sip._udp.a.test. 1 IN SRV 0 90 5060 n1.a.test.").
func (z *zone) set(name, typ string, rrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.records[dns.Fqdn(name)+" "+typ] = rrs
}

func (z *zone) questions() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]string(nil), z.asked...)
}

func (z *zone) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	if z.fail.Load() {
		m.Rcode = dns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	key := strings.ToLower(q.Name) + " " + dns.TypeToString[q.Qtype]
	z.mu.Lock()
	z.asked = append(z.asked, key)
	rrs, ok := z.records[key]
	known := ok
	for k := range z.records {
		if strings.HasPrefix(k, strings.ToLower(q.Name)+" ") {
			known = true
		}
	}
	z.mu.Unlock()
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	if !known {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

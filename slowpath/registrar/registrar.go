package registrar

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/nat"
	"github.com/pinhole-sip/pinhole/slowpath/trust"
)

// Config holds the registrar's rules.
type Config struct {
	Domains        []string // served domains, lowercase
	MinExpires     int      // seconds; shorter requests get 423 (RFC 3261 §10.3 step 7)
	MaxExpires     int      // seconds; longer requests are shortened
	DefaultExpires int      // seconds; used when the request names none
	MaxContacts    int      // per address-of-record
	Now            func() time.Time
	// Committed, when set, is told of every 200 sent to a REGISTER, after
	// it was sent: the fast path prepares the answer to the next refresh
	// from it (docs/fastpath.md). It must not keep req or res.
	Committed Committed
	// Settle, when set, is called with the AOR before the registrar reads
	// or changes its bindings for a 200: the fast path writes to the store
	// the refreshes it absorbed and has not handed over yet, so that the
	// 200 lists another phone of the AOR with the expiry its last refresh
	// gave it (docs/fastpath.md, "AORs with several registrations").
	Settle func(aor string)
	// Trusted are the proxies whose Path headers are stored (RFC 3327 §5:
	// a registrar uses Path only from proxies it trusts). A device's own
	// Path would make pinhole send a callee's INVITE wherever the device
	// chose — back to pinhole in a loop, or at a third party. nil: none.
	Trusted *trust.List
	// Edge is recorded in every binding written as the edge that holds
	// its flow (cluster.edge_id, docs/cluster.md); a refresh through
	// another edge moves the binding to it. "": a box alone.
	Edge string
}

// Committed is told of a 200 the registrar (or the mid-registrar) sent
// to req over flow.
type Committed func(req *sip.Request, res *sip.Response, flow location.Flow)

// Authorizer decides whether a REGISTER may change the bindings of aor.
// It returns nil to allow it, or the response that refuses it (a 401
// challenge, a 403). nil Authorizer: no authentication.
type Authorizer interface {
	Authorize(req *sip.Request, aor string) *sip.Response
}

// Registrar answers REGISTER requests from the location store.
type Registrar struct {
	cfg     Config
	store   location.Store
	authz   Authorizer
	domains map[string]bool
}

// New builds a registrar over store. authz may be nil.
func New(cfg Config, store location.Store, authz Authorizer) (*Registrar, error) {
	if cfg.MinExpires < 1 || cfg.MaxExpires < cfg.MinExpires || cfg.DefaultExpires < cfg.MinExpires ||
		cfg.DefaultExpires > cfg.MaxExpires || cfg.MaxContacts < 1 || len(cfg.Domains) == 0 {
		return nil, fmt.Errorf("registrar: inconsistent configuration %+v", cfg)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Registrar{cfg: cfg, store: store, authz: authz, domains: map[string]bool{}}
	for _, d := range cfg.Domains {
		r.domains[domainKey(d)] = true
	}
	return r, nil
}

// Serves reports whether host is one of the registrar's domains.
func (r *Registrar) Serves(host string) bool { return r.domains[domainKey(host)] }

// domainKey is a domain as pinhole compares and stores it: in lower case
// (RFC 3261 §19.1.4) and without the trailing dot of a fully qualified
// name, which names the same domain (RFC 1034 §3.1): "example.test." must
// neither escape the served-domain match nor make an AOR of its own.
func domainKey(host string) string {
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// Handle is the sipgo request handler for REGISTER.
func (r *Registrar) Handle(req *sip.Request, tx sip.ServerTransaction) {
	flow, ok := FlowOf(req, tx)
	var res *sip.Response
	if !ok {
		// Without the source we could not reach the device again.
		res = reply(req, 500, "Unknown Source Address")
	} else {
		res = r.Process(req, flow)
	}
	observe(res.StatusCode)
	_ = tx.Respond(res) // the transaction layer retransmits; nothing to do on a send error
	if ok && res.StatusCode == 200 && r.cfg.Committed != nil {
		r.cfg.Committed(req, res, flow)
	}
}

// connectioner is what *sip.ServerTx offers beyond sip.ServerTransaction.
type connectioner interface{ Connection() sip.Connection }

// FlowOf returns the flow a request arrived on: its transport, the
// address it really came from and the local socket that received it.
func FlowOf(req *sip.Request, tx sip.ServerTransaction) (location.Flow, bool) {
	tr, err := location.ParseTransport(req.Transport())
	if err != nil {
		return location.Flow{}, false
	}
	remote, ok := nat.ParseAddrPort(req.Source())
	if !ok {
		return location.Flow{}, false
	}
	f := location.Flow{Transport: tr, Remote: remote}
	if c, ok := tx.(connectioner); ok && c.Connection() != nil {
		if local, ok := nat.ParseAddrPort(c.Connection().LocalAddr().String()); ok {
			f.Local = local
		}
	}
	return f, true
}

// rejection is a REGISTER refused with a status code.
type rejection struct {
	code    int
	reason  string
	headers []sip.Header
}

func (e *rejection) Error() string { return strconv.Itoa(e.code) + " " + e.reason }

func reject(code int, reason string, hdrs ...sip.Header) error {
	return &rejection{code: code, reason: reason, headers: hdrs}
}

// supported lists the option tags pinhole's registrar understands (RFC 3261 §8.2.2.3).
var supported = map[string]bool{"path": true, "outbound": true}

// Process applies one REGISTER that arrived on flow and returns the
// response, once a change it made is on disk.
func (r *Registrar) Process(req *sip.Request, flow location.Flow) *sip.Response {
	res, c := r.apply(req, flow)
	if err := c.Wait(); err != nil {
		return ErrorResponse(req, err)
	}
	return res
}

// Respond answers a REGISTER that arrived on flow without a server
// transaction (the stateless UDP path, slowpath/stateless.go): it applies
// it and calls send with the response once a change it made is durable —
// at once, or from the location store's committer, which send must not
// block — then tells Committed of a 200. Nothing waits meanwhile, so a
// few workers keep many registrations in one fsync (location.Commit).
func (r *Registrar) Respond(req *sip.Request, flow location.Flow, send func(*sip.Response)) {
	res, c := r.apply(req, flow)
	c.Then(func(err error) {
		if err != nil {
			res = ErrorResponse(req, err)
		}
		observe(res.StatusCode)
		send(res)
		if res.StatusCode == 200 && r.cfg.Committed != nil {
			r.cfg.Committed(req, res, flow)
		}
	})
}

// apply processes req and returns its response with the durability of
// the change it made (nil: none to wait for).
func (r *Registrar) apply(req *sip.Request, flow location.Flow) (*sip.Response, *location.Commit) {
	res, c, err := r.process(req, flow)
	if err != nil {
		return ErrorResponse(req, err), nil
	}
	return res, c
}

// applier is a store that can make a change now and its write-through
// later (*location.Memory); with any other store the registrar waits in
// Update.
type applier interface {
	Apply(aor string, fn func(cur []location.Binding) ([]location.Binding, error)) ([]location.Binding, *location.Commit, error)
}

// update applies fn to aor's bindings through Apply when the store has it.
func (r *Registrar) update(aor string, fn func(cur []location.Binding) ([]location.Binding, error)) ([]location.Binding, *location.Commit, error) {
	if a, ok := r.store.(applier); ok {
		return a.Apply(aor, fn)
	}
	stored, err := r.store.Update(aor, fn)
	return stored, nil, err
}

// requestAOR applies RFC 3261 §10.3 steps 1, 2 and 5 and returns the AOR.
func (r *Registrar) requestAOR(req *sip.Request) (string, error) {
	// Step 1: the request-URI names the domain whose registrar is asked.
	if !r.Serves(req.Recipient.Host) {
		return "", reject(403, "Domain Not Served")
	}
	// Step 2: extensions we do not know make the request fail.
	if unknown := unsupportedTags(req); len(unknown) > 0 {
		return "", reject(420, "Bad Extension", sip.NewHeader("Unsupported", strings.Join(unknown, ", ")))
	}
	to := req.To()
	if to == nil || req.CallID() == nil || req.CSeq() == nil {
		return "", reject(400, "Missing To, Call-ID or CSeq")
	}
	// Step 5: the address-of-record comes from To and must belong to a served domain.
	aor, err := AOR(&to.Address)
	if err != nil || !r.Serves(to.Address.Host) {
		return "", reject(404, "Not Found")
	}
	return aor, nil
}

func (r *Registrar) process(req *sip.Request, flow location.Flow) (*sip.Response, *location.Commit, error) {
	aor, err := r.requestAOR(req)
	if err != nil {
		return nil, nil, err
	}
	// Steps 3 and 4: authenticate, and check the user may register this AOR.
	if r.authz != nil {
		if res := r.authz.Authorize(req, aor); res != nil {
			return res, nil, nil
		}
	}

	f, err := fieldsOf(req)
	if err != nil {
		return nil, nil, err
	}
	a, err := r.Register(aor, &f, flow, nil)
	if err != nil {
		return nil, nil, err
	}
	return r.ok(req, &f, a.Stored, a.Now, a.PathOK), a.Commit, nil
}

// pending is one Contact of the request, validated.
type pending struct {
	b       location.Binding
	key     string // URI identity, RFC 3261 §19.1.4 (approximated in uriKey)
	expires int    // seconds; 0 removes
}

func (r *Registrar) parseContacts(f *Fields, flow location.Flow, now time.Time, pathOK bool) ([]pending, bool, error) {
	var out []pending
	wildcard := false
	regIDs := 0
	ua := f.UserAgent
	if len(ua) > 128 {
		ua = ua[:128] // operators want it; the store should not pay for a novel
	}
	var path string
	if len(f.Path) > 0 {
		if pathOK {
			path = strings.Join(f.Path, ", ")
		} else {
			mPathIgnored.Inc()
		}
	}
	for i := range f.Contacts {
		ch := &f.Contacts[i]
		if ch.Malformed {
			return nil, false, reject(400, "Malformed Contact")
		}
		if ch.Address.Wildcard {
			wildcard = true
			continue
		}
		if ch.Address.Scheme != "sip" && ch.Address.Scheme != "sips" {
			return nil, false, reject(400, "Unsupported Contact Scheme")
		}
		exp := r.cfg.DefaultExpires
		if f.HasExpires {
			exp = f.Expires
		}
		if v, ok := ch.Params.Get("expires"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return nil, false, reject(400, "Invalid Contact Expires")
			}
			exp = int(min(n, 1<<31-1))
		}
		if exp > 0 && exp < r.cfg.MinExpires {
			// Step 7: ask for a longer interval.
			return nil, false, reject(423, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(r.cfg.MinExpires)))
		}
		exp = min(exp, r.cfg.MaxExpires)

		q := uint16(1000)
		if v, ok := ch.Params.Get("q"); ok {
			qv, err := parseQ(v)
			if err != nil {
				return nil, false, reject(400, "Invalid Contact q-value")
			}
			q = qv
		}
		instance := ""
		if v, ok := ch.Params.Get("+sip.instance"); ok {
			instance = strings.Trim(v, "\"<>")
		}
		var regID uint32
		if v, ok := ch.Params.Get("reg-id"); ok {
			n, err := strconv.ParseUint(v, 10, 31)
			if err != nil || n == 0 {
				return nil, false, reject(400, "Invalid reg-id")
			}
			regID = uint32(n)
			regIDs++
		}
		reason := f.SentBy.Detect(flow.Remote, &ch.Address)
		out = append(out, pending{
			b: location.Binding{
				Contact:   ch.printed(),
				Instance:  instance,
				RegID:     regID,
				Q:         q,
				Expires:   now.Add(time.Duration(exp) * time.Second),
				Updated:   now,
				Flow:      flow,
				NAT:       reason != nat.NotNATed,
				Path:      path,
				UserAgent: ua,
				Edge:      r.cfg.Edge,
			},
			key:     uriKey(&ch.Address),
			expires: exp,
		})
	}
	if wildcard {
		// Step 6: "*" only alone and only with Expires: 0.
		if len(f.Contacts) != 1 || !f.HasExpires || f.Expires != 0 {
			return nil, false, reject(400, "Wildcard Contact Needs Expires 0 And No Other Contact")
		}
		return nil, true, nil
	}
	// RFC 5626 §6: one flow per REGISTER when reg-id is used.
	if regIDs > 0 && len(out) > 1 {
		return nil, false, reject(400, "Only One Contact Allowed With reg-id")
	}
	return out, false, nil
}

// merge applies the request's contacts to the current bindings (RFC 3261
// §10.3 step 7, RFC 5626 §6) and returns the new set.
func (r *Registrar) merge(cur []location.Binding, add []pending, aor, callID string, cseq uint32, now time.Time) ([]location.Binding, error) {
	next := make([]location.Binding, 0, len(cur)+len(add))
	next = append(next, cur...)
	for _, p := range add {
		i := findBinding(next, p)
		if i >= 0 {
			old := next[i]
			// Same Call-ID: only a higher CSeq may change the binding.
			if old.CallID == callID && cseq <= old.CSeq {
				return nil, reject(400, "Out Of Order CSeq")
			}
			next = append(next[:i], next[i+1:]...)
		}
		if p.expires == 0 {
			continue
		}
		b := p.b
		b.AOR = aor
		b.CallID = callID
		b.CSeq = cseq
		next = append(next, b)
	}
	if len(next) > r.cfg.MaxContacts {
		// Kamailio and OpenSIPS answer the same (their max_contacts).
		return nil, reject(503, "Too Many Registered Contacts")
	}
	return next, nil
}

// findBinding finds the binding that p replaces: same instance and reg-id
// (RFC 5626 §6), same instance alone (RFC 5627 §4.2 identity), or the
// same Contact URI.
func findBinding(bs []location.Binding, p pending) int {
	if p.b.Instance != "" {
		// RFC 5626 §6: with an instance, the Contact URI says nothing about
		// identity — a phone that moves networks keeps its instance.
		for i, b := range bs {
			if b.Instance == p.b.Instance && (p.b.RegID == 0 || b.RegID == p.b.RegID) {
				return i
			}
		}
		return -1
	}
	for i, b := range bs {
		if b.Instance != "" {
			continue // an outbound flow is replaced only by its own instance
		}
		u := sip.Uri{}
		if err := sip.ParseUri(b.Contact, &u); err == nil && uriKey(&u) == p.key {
			return i
		}
	}
	return -1
}

// ok builds the 200 listing every current binding with its remaining
// expiry (RFC 3261 §10.3 step 8).
// pathOK: the Path came from a trusted proxy and was stored; only then is
// it echoed (its absence tells the sender it was not used).
func (r *Registrar) ok(req *sip.Request, f *Fields, bs []location.Binding, now time.Time, pathOK bool) *sip.Response {
	res := reply(req, 200, "OK")
	// Highest q first, then by Contact: an order the fast path can
	// reproduce (location.SortByQContact).
	location.SortByQContact(bs)
	outbound := false
	for _, b := range bs {
		left := int(b.Expires.Sub(now) / time.Second)
		if left <= 0 {
			continue
		}
		ch := &sip.ContactHeader{}
		if err := sip.ParseUri(b.Contact, &ch.Address); err != nil {
			continue // stored by us from a parsed URI; cannot happen, but never send garbage
		}
		ch.Params = sip.NewParams()
		ch.Params.Add("expires", strconv.Itoa(left))
		if b.Q != 1000 {
			ch.Params.Add("q", FormatQ(b.Q))
		}
		if b.Instance != "" {
			ch.Params.Add("+sip.instance", "\"<"+b.Instance+">\"")
		}
		if b.RegID != 0 {
			ch.Params.Add("reg-id", strconv.FormatUint(uint64(b.RegID), 10))
			outbound = true
		}
		res.AppendHeader(ch)
	}
	// RFC 5626 §6: tell the device its flow is supported for outbound.
	if outbound && f.SupportsOutbound {
		res.AppendHeader(sip.NewHeader("Require", "outbound"))
	}
	// RFC 3327 §5.3: echo Path to a UA that said it supports it.
	if pathOK && len(f.Path) > 0 && f.SupportsPath {
		for _, p := range f.Path {
			res.AppendHeader(sip.NewHeader("Path", p))
		}
	}
	res.AppendHeader(sip.NewHeader("Date", httpDate(now)))
	return res
}

// dateCache is the Date value of the last second a 200 was built in:
// formatting it is one of the larger costs of a 200 that pinhole's own
// code adds, and at thousands of registrations a second it is the same
// string for all of them.
type dateCache struct {
	sec int64
	s   string
}

var lastDate atomic.Pointer[dateCache]

// httpDate returns now as RFC 1123 in UTC (RFC 3261 §20.17), formatted at
// most once per second.
func httpDate(now time.Time) string {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return d.s
	}
	d := &dateCache{sec: sec, s: now.UTC().Format(time.RFC1123)}
	lastDate.Store(d)
	return d.s
}

// reply builds a response with pinhole's fixed headers.
func reply(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	addReceived(req, res)
	return res
}

// addReceived adds received= to the top Via when the sent-by host differs
// from the source address (RFC 3261 §18.2.1); sipgo only does it with rport.
func addReceived(req *sip.Request, res *sip.Response) {
	via := res.Via()
	if via == nil || via.Params.Has("received") {
		return
	}
	src, ok := nat.ParseAddrPort(req.Source())
	if !ok {
		return
	}
	if a, err := netip.ParseAddr(strings.Trim(via.Host, "[]")); err == nil && a.Unmap() == src.Addr() {
		return
	}
	via.Params.Add("received", src.Addr().String())
}

// AOR returns the canonical address-of-record "user@host" of a To URI:
// the user part as sent (it is case-sensitive, RFC 3261 §19.1.4), the
// host lowercased, no port or parameters (§10.3 step 5).
func AOR(u *sip.Uri) (string, error) {
	if u.Scheme != "sip" && u.Scheme != "sips" {
		return "", fmt.Errorf("scheme %q is not sip or sips", u.Scheme)
	}
	if u.User == "" || u.Host == "" {
		return "", errors.New("address-of-record needs a user and a host")
	}
	return u.User + "@" + domainKey(u.Host), nil
}

// uriKey approximates RFC 3261 §19.1.4 URI equality as a string: scheme,
// user (case-sensitive), host (not), port, and the parameters that must
// match when present on either side.
func uriKey(u *sip.Uri) string {
	var b strings.Builder
	b.Grow(len(u.Scheme) + len(u.User) + len(u.Host) + 16) // one allocation in the usual case
	b.WriteString(u.Scheme)
	b.WriteByte(':')
	b.WriteString(u.User)
	b.WriteByte('@')
	b.WriteString(strings.ToLower(u.Host))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(u.Port))
	for _, k := range []string{"transport", "user", "maddr", "ttl", "method"} {
		if v, ok := u.UriParams.Get(k); ok {
			b.WriteByte(';')
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(strings.ToLower(v))
		}
	}
	return b.String()
}

// headerExpires reads the Expires header (RFC 3261 §20.19).
func headerExpires(req *sip.Request) (int, bool, error) {
	h := req.GetHeader("Expires")
	if h == nil {
		return 0, false, nil
	}
	return ParseExpires(h.Value())
}

// ParseExpires reads an Expires value as the registrar does (RFC 3261
// §20.19), capped at 2^31-1.
func ParseExpires(v string) (int, bool, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0, false, reject(400, "Invalid Expires")
	}
	return int(min(n, 1<<31-1)), true, nil
}

// parseQ parses a q-value (RFC 3261 §20.10: 0 to 1, three decimals).
func parseQ(s string) (uint16, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || f > 1 {
		return 0, fmt.Errorf("q-value %q out of range", s)
	}
	return uint16(f*1000 + 0.5), nil
}

// FormatQ writes a q-value (RFC 3261 §20.10) from its value × 1000, the
// inverse of parseQ; exported so the mid-registrar's upstream REGISTER
// carries q in the same form the registrar answers with.
func FormatQ(q uint16) string {
	s := strconv.FormatFloat(float64(q)/1000, 'f', 3, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "" {
		return "0"
	}
	return s
}

// unsupportedTags returns the Require option tags pinhole does not know.
func unsupportedTags(req *sip.Request) []string {
	var out []string
	for _, h := range req.GetHeaders("Require") {
		for _, t := range strings.Split(h.Value(), ",") {
			t = strings.ToLower(strings.TrimSpace(t))
			if t != "" && !supported[t] {
				out = append(out, t)
			}
		}
	}
	return out
}

func hasTag(req *sip.Request, header, tag string) bool {
	for _, h := range req.GetHeaders(header) {
		if HasOptionTag(h.Value(), tag) {
			return true
		}
	}
	return false
}

// HasOptionTag reports whether the comma-separated option tags in v
// (a Supported value, RFC 3261 §20.37) hold tag, in any case.
func HasOptionTag(v, tag string) bool {
	for v != "" {
		t, rest, _ := strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(t), tag) {
			return true
		}
		v = rest
	}
	return false
}

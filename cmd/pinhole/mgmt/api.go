// Package mgmt is pinhole's management API: JSON over HTTP to look up,
// list and remove bindings, see and force dispatcher destinations, edit
// the XDP blocklist, read statistics and reload the configuration — what
// an operator does with OpenSIPS MI or Kamailio RPC commands. `pinhole
// ctl` is its client (Client). docs/operations.md lists every call.
//
// It listens on loopback by default; with a token configured, every call
// must carry it as a bearer token (RFC 6750).
package mgmt

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pinhole-sip/pinhole/bpf"
	"github.com/pinhole-sip/pinhole/internal/config"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/internal/promtext"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
)

// Bindings is the location store as the API reads it.
type Bindings interface {
	Lookup(aor string) []location.Binding
	Range(fn func(location.Binding) bool)
	Len() (aors, bindings int)
}

// Dispatcher is the farm dispatcher as the API reads and changes it.
type Dispatcher interface {
	Destinations() []dispatch.Status
	SetState(set, uri string, st dispatch.State) error
}

// Blocklist is the XDP program's blocklist (bpf.Blocklist).
type Blocklist interface {
	Add(prefix netip.Prefix, until time.Time) error
	Remove(prefix netip.Prefix) error
	List() ([]bpf.BlockEntry, error)
}

// Config wires the API to the daemon. Nil functions and interfaces answer
// their calls with 409 and a message saying what is not running.
type Config struct {
	// Token is the bearer token every call must carry; "" takes none
	// (configuration allows that on loopback only).
	Token string
	Store Bindings
	// Remove removes the bindings of aor (all, or the one Contact) the
	// way a lapse does, and returns them; slowpath.ErrNoBinding-like
	// errors for nothing found must wrap ErrNotFound.
	Remove func(aor, contact string) ([]location.Binding, error)
	// Dispatcher returns the current dispatcher (a reload replaces it);
	// nil when dispatch has no sets.
	Dispatcher func() Dispatcher
	Blocklist  Blocklist // nil: the XDP program is not running
	// Reload reads the configuration file again and applies it.
	Reload func() (ReloadResult, error)
	// RotateKey makes a new route signing key current; the previous one
	// keeps verifying for a grace period (docs/security.md).
	RotateKey func() error
	Log       *slog.Logger
	Now       func() time.Time // default time.Now
}

// ErrNotFound is what Remove wraps when nothing matched.
var ErrNotFound = errors.New("not found")

// Page sizes of GET /api/v1/bindings.
const (
	DefaultPage = 100
	MaxPage     = 1000
)

// paths are the API's fixed paths, for telling 405 from 404.
var paths = []string{"/api/v1/bindings", "/api/v1/dispatch", "/api/v1/dispatch/state", "/api/v1/blocklist", "/api/v1/stats", "/api/v1/reload"}

// maxBody bounds a request body: every body here is a few fields.
const maxBody = 64 << 10

// API serves the management calls.
type API struct {
	cfg     Config
	mux     *http.ServeMux
	started time.Time
}

// New builds the API's handler.
func New(cfg Config) *API {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, mux: http.NewServeMux(), started: cfg.Now()}
	a.mux.HandleFunc("GET /api/v1/bindings", a.listBindings)
	a.mux.HandleFunc("GET /api/v1/bindings/{aor}", a.getBindings)
	a.mux.HandleFunc("DELETE /api/v1/bindings/{aor}", a.deleteBindings)
	a.mux.HandleFunc("GET /api/v1/dispatch", a.listDestinations)
	a.mux.HandleFunc("POST /api/v1/dispatch/state", a.setState)
	a.mux.HandleFunc("GET /api/v1/blocklist", a.listBlocks)
	a.mux.HandleFunc("POST /api/v1/blocklist", a.addBlock)
	a.mux.HandleFunc("DELETE /api/v1/blocklist", a.removeBlock)
	a.mux.HandleFunc("GET /api/v1/stats", a.stats)
	a.mux.HandleFunc("POST /api/v1/reload", a.reload)
	a.mux.HandleFunc("POST /api/v1/keys/rotate", a.rotateKey)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The catch-all takes every method, so ServeMux's own 405 never
		// comes: tell a wrong method from an unknown path here.
		switch p := r.URL.Path; {
		case slices.Contains(paths, p), strings.HasPrefix(p, "/api/v1/bindings/") && len(p) > len("/api/v1/bindings/"):
			fail(w, http.StatusMethodNotAllowed, "%s is not a call on %s (see docs/operations.md)", r.Method, p)
		default:
			fail(w, http.StatusNotFound, "no such call: %s %s (see docs/operations.md)", r.Method, p)
		}
	})
	return a
}

// ServeHTTP checks the token, then serves the call.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Constant time: the comparison must not tell how much of a
		// guess was right.
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.Token)) != 1 {
			mUnauthorized.Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="pinhole"`)
			fail(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
	}
	mCalls.Inc()
	a.mux.ServeHTTP(w, r)
}

var (
	mCalls        = metrics.NewCounter(`pinhole_api_requests_total`)
	mUnauthorized = metrics.NewCounter(`pinhole_api_unauthorized_total`)
)

func reply(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		b.Reset()
		fmt.Fprintf(&b, "{\"error\": %q}\n", "encode answer: "+err.Error())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func fail(w http.ResponseWriter, status int, format string, args ...any) {
	reply(w, status, Error{Error: fmt.Sprintf(format, args...)})
}

// decode reads a JSON body into v, refusing unknown fields and trailing data.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "request body: %v", err)
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		fail(w, http.StatusBadRequest, "request body: one JSON object expected")
		return false
	}
	return true
}

// validAOR checks the user@domain form the registrar stores AORs in.
func validAOR(aor string) error {
	user, domain, ok := strings.Cut(aor, "@")
	if !ok || user == "" || domain == "" || strings.ContainsAny(aor, " \t<>;\"") {
		return fmt.Errorf("aor %q: want user@domain", aor)
	}
	return nil
}

func (a *API) listBindings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := DefaultPage
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPage {
			fail(w, http.StatusBadRequest, "limit %q: want a number from 1 to %d", s, MaxPage)
			return
		}
		limit = n
	}
	after, prefix := q.Get("after"), q.Get("prefix")
	aors := pageAORs(a.cfg.Store, after, prefix, limit)
	page := BindingPage{Bindings: []Binding{}}
	if len(aors) > limit {
		aors = aors[:limit]
		page.Next = aors[limit-1]
	}
	now := a.cfg.Now()
	for _, aor := range aors {
		for _, b := range a.cfg.Store.Lookup(aor) {
			page.Bindings = append(page.Bindings, fromBinding(b, now))
		}
	}
	page.AORs, page.Total = a.cfg.Store.Len()
	reply(w, http.StatusOK, page)
}

// pageAORs returns, in order, up to limit+1 of the AORs after `after` that
// start with prefix. It walks the whole store once (a page costs O(n log
// limit), like Kamailio's ul.dump) and keeps only a sorted window, so a
// million bindings need no million-entry list.
func pageAORs(st Bindings, after, prefix string, limit int) []string {
	win := make([]string, 0, limit+1)
	st.Range(func(b location.Binding) bool {
		aor := b.AOR
		if aor <= after || !strings.HasPrefix(aor, prefix) {
			return true
		}
		if len(win) == limit+1 && aor >= win[limit] {
			return true
		}
		i, found := slices.BinarySearch(win, aor)
		if found {
			return true
		}
		if len(win) == limit+1 {
			win = win[:limit]
		}
		win = slices.Insert(win, i, aor)
		return true
	})
	return win
}

func (a *API) getBindings(w http.ResponseWriter, r *http.Request) {
	aor := r.PathValue("aor")
	if err := validAOR(aor); err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	bs := a.cfg.Store.Lookup(aor)
	if len(bs) == 0 {
		fail(w, http.StatusNotFound, "no bindings for %s", aor)
		return
	}
	now := a.cfg.Now()
	out := make([]Binding, 0, len(bs))
	for _, b := range bs {
		out = append(out, fromBinding(b, now))
	}
	reply(w, http.StatusOK, out)
}

func (a *API) deleteBindings(w http.ResponseWriter, r *http.Request) {
	aor := r.PathValue("aor")
	if err := validAOR(aor); err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	contact := r.URL.Query().Get("contact")
	removed, err := a.cfg.Remove(aor, contact)
	switch {
	case errors.Is(err, ErrNotFound) && contact != "":
		fail(w, http.StatusNotFound, "no binding of %s with contact %s", aor, contact)
		return
	case errors.Is(err, ErrNotFound):
		fail(w, http.StatusNotFound, "no bindings for %s", aor)
		return
	case err != nil:
		fail(w, http.StatusInternalServerError, "%v", err)
		return
	}
	a.cfg.Log.Info("bindings removed by the API", "aor", aor, "contact", contact, "count", len(removed))
	now := a.cfg.Now()
	out := Removed{Removed: make([]Binding, 0, len(removed))}
	for _, b := range removed {
		out.Removed = append(out.Removed, fromBinding(b, now))
	}
	reply(w, http.StatusOK, out)
}

func (a *API) dispatcher(w http.ResponseWriter) Dispatcher {
	var d Dispatcher
	if a.cfg.Dispatcher != nil {
		d = a.cfg.Dispatcher()
	}
	if d == nil {
		fail(w, http.StatusConflict, "dispatch is not configured (dispatch.sets is empty)")
	}
	return d
}

func (a *API) listDestinations(w http.ResponseWriter, _ *http.Request) {
	d := a.dispatcher(w)
	if d == nil {
		return
	}
	out := []Destination{}
	for _, s := range d.Destinations() {
		out = append(out, fromStatus(s))
	}
	reply(w, http.StatusOK, out)
}

func (a *API) setState(w http.ResponseWriter, r *http.Request) {
	var req StateChange
	if !decode(w, r, &req) {
		return
	}
	st, err := dispatch.ParseState(req.State)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	if req.Set == "" || req.URI == "" {
		fail(w, http.StatusBadRequest, "set and uri are required")
		return
	}
	d := a.dispatcher(w)
	if d == nil {
		return
	}
	if err := d.SetState(req.Set, req.URI, st); err != nil {
		if errors.Is(err, dispatch.ErrNotFound) {
			fail(w, http.StatusNotFound, "no destination %s in set %s", req.URI, req.Set)
			return
		}
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	a.cfg.Log.Info("destination state set by the API", "set", req.Set, "uri", req.URI, "state", st.String())
	for _, s := range d.Destinations() {
		if s.Set == req.Set && (s.URI == req.URI || sameURI(s.URI, req.URI)) {
			reply(w, http.StatusOK, fromStatus(s))
			return
		}
	}
	reply(w, http.StatusOK, req)
}

// sameURI compares destination URIs as the dispatcher does (canonical form).
func sameURI(canonical, given string) bool {
	t, err := dispatch.ParseURI(given)
	return err == nil && t.String() == canonical
}

func (a *API) blocklist(w http.ResponseWriter) Blocklist {
	if a.cfg.Blocklist == nil {
		fail(w, http.StatusConflict, "the XDP program is not running (xdp.interfaces empty, mode off, or it could not load): there is no kernel blocklist")
	}
	return a.cfg.Blocklist
}

// entries lists the blocklist, or answers why it cannot (ok false).
func (a *API) entries(w http.ResponseWriter) (bl Blocklist, es []bpf.BlockEntry, ok bool) {
	if bl = a.blocklist(w); bl == nil {
		return nil, nil, false
	}
	es, err := bl.List()
	if err != nil {
		fail(w, http.StatusInternalServerError, "%v", err)
		return nil, nil, false
	}
	return bl, es, true
}

func (a *API) listBlocks(w http.ResponseWriter, _ *http.Request) {
	_, es, ok := a.entries(w)
	if !ok {
		return
	}
	now := a.cfg.Now()
	out := make([]Block, 0, len(es))
	for _, e := range es {
		out = append(out, fromBlockEntry(e, now))
	}
	slices.SortFunc(out, func(x, y Block) int { return strings.Compare(x.Prefix, y.Prefix) })
	reply(w, http.StatusOK, out)
}

// parsePrefix reads a CIDR prefix or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("prefix is required, e.g. 192.0.2.0/24")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("prefix %q: want a CIDR prefix or an address", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("prefix %q: write IPv4 in its IPv4 form, without a zone", s)
	}
	return p.Masked(), nil
}

func (a *API) addBlock(w http.ResponseWriter, r *http.Request) {
	var req BlockAdd
	if !decode(w, r, &req) {
		return
	}
	p, err := parsePrefix(req.Prefix)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	var until time.Time
	if req.Duration != "" {
		d, err := time.ParseDuration(req.Duration)
		if err != nil || d < time.Second || d > 365*24*time.Hour {
			fail(w, http.StatusBadRequest, "duration %q: want a Go duration from 1s to 8760h, e.g. 15m", req.Duration)
			return
		}
		until = a.cfg.Now().Add(d)
	}
	bl := a.blocklist(w)
	if bl == nil {
		return
	}
	if err := bl.Add(p, until); err != nil {
		fail(w, http.StatusInternalServerError, "%v", err)
		return
	}
	a.cfg.Log.Info("blocked by the API", "prefix", p, "duration", req.Duration)
	reply(w, http.StatusCreated, fromBlockEntry(bpf.BlockEntry{Prefix: p, Until: until}, a.cfg.Now()))
}

func (a *API) removeBlock(w http.ResponseWriter, r *http.Request) {
	p, err := parsePrefix(r.URL.Query().Get("prefix"))
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	bl, es, ok := a.entries(w)
	if !ok {
		return
	}
	if !slices.ContainsFunc(es, func(e bpf.BlockEntry) bool { return e.Prefix.Masked() == p }) {
		fail(w, http.StatusNotFound, "%s is not on the blocklist", p)
		return
	}
	if err := bl.Remove(p); err != nil {
		fail(w, http.StatusInternalServerError, "%v", err)
		return
	}
	a.cfg.Log.Info("unblocked by the API", "prefix", p)
	reply(w, http.StatusOK, Block{Prefix: p.String()})
}

func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	out := Stats{Uptime: a.cfg.Now().Sub(a.started).Seconds(), Metrics: map[string]float64{}}
	for name, v := range promtext.Parse(b.String()) {
		if strings.HasPrefix(name, "pinhole_") && strings.HasPrefix(name, prefix) {
			out.Metrics[name] = v
		}
	}
	reply(w, http.StatusOK, out)
}

func (a *API) rotateKey(w http.ResponseWriter, _ *http.Request) {
	if a.cfg.RotateKey == nil {
		fail(w, http.StatusConflict, "key rotation is not available")
		return
	}
	if err := a.cfg.RotateKey(); err != nil {
		fail(w, http.StatusInternalServerError, "rotate route key: %v", err)
		return
	}
	a.cfg.Log.Info("route signing key rotated by the API")
	reply(w, http.StatusOK, KeyRotation{Rotated: true})
}

func (a *API) reload(w http.ResponseWriter, _ *http.Request) {
	if a.cfg.Reload == nil {
		fail(w, http.StatusConflict, "reload is not available")
		return
	}
	res, err := a.cfg.Reload()
	switch {
	case errors.Is(err, config.ErrInvalid):
		// The file is the input of a reload: an invalid one is the
		// operator's to fix, and the running configuration stays.
		fail(w, http.StatusBadRequest, "reload refused, nothing changed: %v", err)
		return
	case err != nil:
		fail(w, http.StatusInternalServerError, "reload: %v", err)
		return
	}
	reply(w, http.StatusOK, res)
}

package midreg

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/internal/resolve"
	"github.com/pinhole-sip/pinhole/slowpath/registrar"
)

// Mode is how much pinhole takes over from the main registrar.
type Mode uint8

const (
	// ModeMirror relays every REGISTER as it is and keeps a copy of the
	// bindings for look-ups.
	ModeMirror Mode = iota
	// ModeContact keeps one upstream binding per device contact, asked
	// with OutgoingExpires, and absorbs refreshes.
	ModeContact
	// ModeAOR registers one contact per AOR upstream, pointing at pinhole,
	// absorbs refreshes, and forks calls to the devices itself.
	ModeAOR
)

var modeNames = [...]string{ModeMirror: "mirror", ModeContact: "contact", ModeAOR: "aor"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode reads "mirror", "contact" or "aor".
func ParseMode(s string) (Mode, error) {
	for m, n := range modeNames {
		if strings.EqualFold(s, n) {
			return Mode(m), nil
		}
	}
	return 0, fmt.Errorf("mode %q: want mirror, contact or aor", s)
}

// Insertion is how pinhole puts itself on the way of requests from the
// main side to a device.
type Insertion uint8

const (
	// InsertContact rewrites each Contact to sip:<token>@<pinhole>.
	InsertContact Insertion = iota
	// InsertPath keeps the device's Contact and adds
	// Path: <sip:<token>@<pinhole>;lr> (RFC 3327).
	InsertPath
)

func (i Insertion) String() string {
	if i == InsertPath {
		return "path"
	}
	return "contact"
}

// ParseInsertion reads "contact" or "path".
func ParseInsertion(s string) (Insertion, error) {
	switch strings.ToLower(s) {
	case "contact":
		return InsertContact, nil
	case "path":
		return InsertPath, nil
	}
	return 0, fmt.Errorf("insertion %q: want contact or path", s)
}

// Upstream is one main registrar, or a cluster of them behind a name.
type Upstream struct {
	// Addr is the registrar's address; invalid when Name is set.
	Addr netip.AddrPort
	// Name is resolved by RFC 3263 for Transport (SRV, then A) through
	// Config.DNS; each REGISTER picks a target of its answer (dns.go).
	Name      resolve.Dest
	Transport string // "UDP" or "TCP", as sipgo names networks
}

// String names the upstream for messages.
func (u Upstream) String() string {
	if u.Addr.IsValid() {
		return u.Addr.String()
	}
	return u.Name.String()
}

// Listener is a pinhole socket requests to an upstream leave from.
type Listener struct {
	Transport string         // "UDP", "TCP"
	Local     netip.AddrPort // bound address; UDP requests leave from it
	Host      string         // advertised in Via, Contact and Path
	Port      int
}

// Config configures a MidRegistrar.
type Config struct {
	Upstreams       []Upstream // tried in order; at most 255
	Mode            Mode
	Insertion       Insertion
	OutgoingExpires int           // seconds asked upstream (contact, aor)
	RenewalMargin   int           // seconds; see Relay rules in docs/midregistrar.md
	Timeout         time.Duration // one attempt at one upstream
	RetryAfter      int           // seconds, in the 503 when no upstream answers
	Listeners       []Listener    // one per transport at least for every upstream's
	// Registrar holds the domains and the expiry bounds granted to devices.
	Registrar registrar.Config
	// Lapsers is how many de-registrations may be in flight at once;
	// zero means DefaultLapsers.
	Lapsers int
	// MaxChallenges bounds the Call-IDs whose challenging upstream is
	// remembered; zero means DefaultMaxChallenges.
	MaxChallenges int
	// DNS resolves upstreams given by name; nil refuses names.
	DNS Resolver
}

// DefaultLapsers bounds concurrent upstream de-registrations: enough to
// clear a burst of lapses (a cell tower losing power) in seconds, few
// enough not to flood the main registrar.
const DefaultLapsers = 16

func (c *Config) validate() error {
	if len(c.Upstreams) == 0 || len(c.Upstreams) > 255 {
		return fmt.Errorf("midregistrar: %d upstreams, want 1..255", len(c.Upstreams))
	}
	if c.Mode > ModeAOR || c.Insertion > InsertPath {
		return fmt.Errorf("midregistrar: mode %d insertion %d unknown", c.Mode, c.Insertion)
	}
	if c.Mode == ModeAOR && c.Insertion != InsertContact {
		return errors.New("midregistrar: mode aor needs contact insertion")
	}
	if c.Mode != ModeMirror && (c.OutgoingExpires < 1 || c.RenewalMargin < 0 || c.RenewalMargin >= c.OutgoingExpires) {
		return fmt.Errorf("midregistrar: outgoing_expires %d, renewal_margin %d", c.OutgoingExpires, c.RenewalMargin)
	}
	if c.Timeout <= 0 || c.RetryAfter < 1 {
		return fmt.Errorf("midregistrar: timeout %s, retry_after %d", c.Timeout, c.RetryAfter)
	}
	for i, u := range c.Upstreams {
		if !u.Addr.IsValid() && (u.Name.Host == "" || c.DNS == nil) {
			return fmt.Errorf("midregistrar: upstream %d (%s %s): neither an address nor a name with a resolver", i, u.Transport, u)
		}
		if c.listener(u.Transport) == nil {
			return fmt.Errorf("midregistrar: upstream %d (%s %s): no listener of that transport", i, u.Transport, u)
		}
	}
	if c.Lapsers == 0 {
		c.Lapsers = DefaultLapsers
	}
	return nil
}

func (c *Config) listener(transport string) *Listener {
	for i := range c.Listeners {
		if strings.EqualFold(c.Listeners[i].Transport, transport) {
			return &c.Listeners[i]
		}
	}
	return nil
}

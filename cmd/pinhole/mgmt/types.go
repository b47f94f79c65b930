package mgmt

import (
	"time"

	"github.com/pinhole-sip/pinhole/bpf"
	"github.com/pinhole-sip/pinhole/internal/location"
	"github.com/pinhole-sip/pinhole/slowpath/dispatch"
)

// The JSON the API speaks; `pinhole ctl` decodes the same types.

// Binding is one registered contact.
type Binding struct {
	AOR       string    `json:"aor"`
	Contact   string    `json:"contact"`
	Instance  string    `json:"instance,omitempty"`
	RegID     uint32    `json:"reg_id,omitempty"`
	CallID    string    `json:"call_id"`
	CSeq      uint32    `json:"cseq"`
	Q         float64   `json:"q"`
	Expires   time.Time `json:"expires"`
	ExpiresIn int64     `json:"expires_in"` // seconds from the answer
	Updated   time.Time `json:"updated"`
	Transport string    `json:"transport"`
	Remote    string    `json:"remote"` // where packets really come from
	Local     string    `json:"local"`  // pinhole's socket it registered to
	NAT       bool      `json:"nat"`
	Path      string    `json:"path,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	// UpExpires is when the mid-registrar's upstream registration ends.
	UpExpires *time.Time `json:"upstream_expires,omitempty"`
}

func fromBinding(b location.Binding, now time.Time) Binding {
	out := Binding{
		AOR: b.AOR, Contact: b.Contact, Instance: b.Instance, RegID: b.RegID,
		CallID: b.CallID, CSeq: b.CSeq, Q: float64(b.Q) / 1000,
		Expires: b.Expires.UTC(), ExpiresIn: int64(b.Expires.Sub(now).Round(time.Second) / time.Second),
		Updated: b.Updated.UTC(), Transport: b.Flow.Transport.String(),
		Remote: b.Flow.Remote.String(), Local: b.Flow.Local.String(),
		NAT: b.NAT, Path: b.Path, UserAgent: b.UserAgent,
	}
	if !b.UpExpires.IsZero() {
		t := b.UpExpires.UTC()
		out.UpExpires = &t
	}
	return out
}

// BindingPage is one page of the binding list, ordered by AOR. Next is
// the AOR to pass as `after` for the following page; empty on the last.
type BindingPage struct {
	Bindings []Binding `json:"bindings"`
	Next     string    `json:"next,omitempty"`
	// AORs and Total are what the store holds in all.
	AORs  int `json:"aors"`
	Total int `json:"total"`
}

// Removed lists the bindings a DELETE removed.
type Removed struct {
	Removed []Binding `json:"removed"`
}

// Destination is one dispatcher destination.
type Destination struct {
	Set         string            `json:"set"`
	URI         string            `json:"uri"`
	From        string            `json:"from,omitempty"` // the DNS name it was resolved from (docs/dns.md)
	ID          string            `json:"id"`
	State       string            `json:"state"` // up, probing, disabled
	Weight      int               `json:"weight"`
	Priority    int               `json:"priority"`
	Attrs       map[string]string `json:"attrs,omitempty"`
	ActiveCalls int64             `json:"active_calls"`
	LastProbe   *time.Time        `json:"last_probe,omitempty"`
	LastCode    int               `json:"last_code,omitempty"`
}

func fromStatus(s dispatch.Status) Destination {
	d := Destination{
		Set: s.Set, URI: s.URI, From: s.From, ID: s.ID, State: s.State.String(), Weight: s.Weight, Priority: s.Priority,
		Attrs: s.Attrs, ActiveCalls: s.ActiveCalls, LastCode: s.LastCode,
	}
	if !s.LastProbe.IsZero() {
		t := s.LastProbe.UTC()
		d.LastProbe = &t
	}
	return d
}

// StateChange sets a destination's state: "up", "disabled" (out until set
// up again) or "probing" (out until probes bring it back).
type StateChange struct {
	Set   string `json:"set"`
	URI   string `json:"uri"`
	State string `json:"state"`
}

// Block is one blocklist entry. Until is absent for an entry without end.
type Block struct {
	Prefix    string     `json:"prefix"`
	Until     *time.Time `json:"until,omitempty"`
	ExpiresIn int64      `json:"expires_in,omitempty"` // seconds; 0 with Until absent: forever
	Expired   bool       `json:"expired,omitempty"`    // still in the map, no longer applied
}

func fromBlockEntry(e bpf.BlockEntry, now time.Time) Block {
	b := Block{Prefix: e.Prefix.String()}
	if !e.Until.IsZero() {
		t := e.Until.UTC().Truncate(time.Second)
		b.Until = &t
		b.ExpiresIn = int64(e.Until.Sub(now).Round(time.Second) / time.Second)
		b.Expired = !e.Until.After(now)
	}
	return b
}

// BlockAdd blocks a prefix for Duration (a Go duration, "10m"); an empty
// Duration blocks it until it is removed.
type BlockAdd struct {
	Prefix   string `json:"prefix"`
	Duration string `json:"duration,omitempty"`
}

// ReloadResult says what a reload applied and which changed keys only a
// restart applies.
type ReloadResult struct {
	Applied []string `json:"applied"`
	Restart []string `json:"restart_needed"`
}

// Stats are the process's metrics by name with labels, as on /metrics.
type Stats struct {
	Uptime  float64            `json:"uptime_seconds"`
	Metrics map[string]float64 `json:"metrics"`
}

// Error is the body of every answer that is not 2xx.
type Error struct {
	Error string `json:"error"`
}

// KeyRotation answers POST /api/v1/keys/rotate.
type KeyRotation struct {
	Rotated bool `json:"rotated"`
}

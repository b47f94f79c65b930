package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/pinhole-sip/pinhole/bench/digest"
)

// Scenarios. Each is one stream of actions at the offered rate; all but
// register first register every device (the preparation, not measured).
const (
	// ScenarioRegister: first registrations with digest auth. Each action
	// is a device's first contact: a new Call-ID, CSeq 1, no credentials,
	// so REGISTER → 401 → REGISTER with credentials → 200. Devices are
	// taken in turn and start over (as after a reboot) when all have had
	// one, so any duration works with any number of devices.
	ScenarioRegister = "register"
	// ScenarioRefresh: steady state after every device registered; each
	// action is a refresh with the same Call-ID, the next CSeq and the
	// cached credentials with the next nonce count, the refreshes an edge
	// absorbs. A stale or refused nonce costs one more round trip.
	ScenarioRefresh = "refresh"
	// ScenarioKeepalive: each action is a keepalive (CRLF or STUN).
	ScenarioKeepalive = "keepalive"
	// ScenarioFlood: refreshes at the offered rate while hostile sources
	// send scanner traffic at the flood rate; the legitimate refreshes are
	// what is measured.
	ScenarioFlood = "flood"
	// ScenarioCalls: each action is a call from one device to another
	// through the server: INVITE (answering a 407 if challenged), 200 from
	// the callee device, ACK, a hold time, BYE.
	ScenarioCalls = "calls"
	// ScenarioIdle: registers every device and then only answers what the
	// server sends (NAT pings) for the duration; used to measure memory
	// per binding.
	ScenarioIdle = "idle"
	// ScenarioMix: every device refreshes on its cadence, sends keepalives
	// on theirs and makes calls at the call rate, all at once.
	ScenarioMix = "mix"
	// ScenarioAvalanche: every device registers once from scratch (first
	// contact, digest), arriving at the offered rate, as the devices of a
	// site do when the edge comes back after a restart; a device whose
	// registration fails starts over after RetryAfter. The run ends when
	// every device holds a 200 of this run (or at Duration): the figure is
	// the time from the first REGISTER until the last device's 200. No
	// warm-up: everything counts; no preparation either, unless
	// Reregister asks for the avalanche after a restart of a server that
	// had every device registered.
	ScenarioAvalanche = "avalanche"
)

// IO modes (Config.IO).
const (
	IOBatch  = "batch"
	IOSocket = "socket"
)

// Scenarios lists every scenario, in the order the comparison runs them.
var Scenarios = []string{ScenarioRegister, ScenarioRefresh, ScenarioKeepalive, ScenarioFlood, ScenarioCalls, ScenarioIdle, ScenarioMix, ScenarioAvalanche}

// Config is one run of the generator.
type Config struct {
	Server netip.AddrPort // the SIP server (UDP)
	Domain string         // domain of AORs and Request-URIs; default the server's address
	// AllowNonLoopback lets the generator target an address outside
	// 127.0.0.0/8. Off by default: pointing a million devices at a
	// production address by mistake is not a benchmark.
	AllowNonLoopback bool

	// Devices are numbered 0…Devices-1. Device i sends from address
	// Sources.Addr()+1+i/PortsPerAddr, port PortBase+i%PortsPerAddr, each
	// from its own socket, so the server sees as many flows as devices.
	Devices int
	// DevicesPerSocket > 1 puts several devices behind one socket, as
	// several phones behind one NAT binding would look: they share the
	// source address and port and differ by user. It is how one process
	// reaches a million devices under an open-file limit lower than that;
	// replies are told apart by the Via branch and requests by the
	// Request-URI user.
	DevicesPerSocket int
	Sources          netip.Prefix
	PortBase         int
	PortsPerAddr     int

	// IO is how datagrams cross the kernel. IOBatch (the default): Sockets
	// unconnected sockets bound to the wildcard address on ports
	// PortBase…PortBase+Sockets-1, each carrying many devices; a device's
	// source address is chosen per datagram with IP_PKTINFO, and datagrams
	// move 64 to a sendmmsg/recvmmsg. Device endpoint s (device i/
	// DevicesPerSocket) sends from port PortBase+s%Sockets and address
	// Sources.Addr()+1+s/Sockets, so the server still sees one flow per
	// device. IOSocket: one socket per endpoint, connected to the server,
	// one system call per datagram (for servers that key state on connected
	// sockets, and as the reference the batched mode is checked against).
	IO      string
	Sockets int // IOBatch: sockets (ports) the devices are spread over

	// ContactHost, when set, is the address devices write in Via and
	// Contact instead of their socket's: a private address makes them
	// look NAT'd to the server (RFC 3581 received/rport), so it NAT-pings
	// them, as a carrier's edge does most of its devices.
	ContactHost netip.Addr

	UserPrefix string // users are UserPrefix + 7-digit index; password "pw-" + user
	Algorithm  digest.Algorithm
	Expires    int // Expires of every REGISTER, seconds

	Scenario    string
	Rate        float64       // actions per second of the scenario's stream (mix: derived from Refresh)
	Duration    time.Duration // measured run, warm-up included
	Warmup      time.Duration // the first part of Duration, shown in the series but not summarized
	PrepareRate float64       // registrations per second of the preparation

	Refresh       time.Duration // mix: refresh cadence of each device
	Keepalive     time.Duration // mix: keepalive cadence of each device; 0: none
	KeepaliveSTUN bool          // STUN Binding requests instead of CRLF CRLF
	CallRate      float64       // mix: calls per second
	// RegisterRate is the mix's first registrations per second, devices
	// that rebooted: a new Call-ID, a challenge, credentials.
	RegisterRate float64
	CallHold     time.Duration // time between the ACK and the BYE
	FloodRate    float64       // flood: hostile messages per second
	FloodSources int           // flood: hostile source addresses
	// Reregister makes the avalanche the one after a restart of a server
	// that keeps its bindings: every device first registers at
	// PrepareRate (the preparation, not measured), then Restart runs (the
	// caller restarts the server there), then every device registers
	// again at Rate as a phone does when a refresh failed because its
	// server was down: the same Call-ID, the next CSeq and the cached
	// credentials with the next nonce count (a refresh). The figure is
	// the same: the time until every device holds a 200 of this run.
	Reregister bool
	// FreshCallID, with Reregister, makes the devices come back as after
	// a reboot instead: a new Call-ID, CSeq 1, no credentials.
	FreshCallID bool
	// Restart, with Reregister, runs between the preparation and the
	// avalanche, on the generator's goroutine; while it runs nothing is
	// sent or read. An error ends the run.
	Restart func(context.Context) error

	// RetryAfter is how long a device of the avalanche waits, jittered by
	// ±50 %, before it starts over after a failed registration (a refusal
	// or Timer F), so that devices do not retry in lockstep.
	RetryAfter time.Duration

	T1, T2 time.Duration // RFC 3261 timers

	// Deadline is how long after its request an answer may arrive and still
	// count: an action that started in the measured window and is not done
	// within Deadline (per transaction: a call's hold time is not charged)
	// is failed, as a late answer is to a device that gave up.
	Deadline time.Duration

	// ServerMetrics, when set, is the URL of the server's Prometheus text
	// (pinhole's /metrics), read before and after the run: the result then
	// carries the server's own counts and the run fails when they disagree
	// with the generator's beyond retransmissions.
	ServerMetrics string
	// ServerPID, when set, is the server's process: the UDP counters of its
	// network namespace (/proc/PID/net/snmp) are read before and after, so
	// that datagrams the kernel dropped at the server are counted.
	ServerPID int

	// Labels are copied into the result's metadata: the server's name,
	// version and settings, the network mode, what the caller knows.
	Labels map[string]string

	Progress io.Writer // one line a second; nil: silent

	// OKLog, when set, gets one line per 200 to a refresh (scenarios with
	// refreshes, preparation excluded): the device's user and the wall
	// clock in Unix milliseconds, "u0000042 1765101234567". It is how a
	// failover test finds the longest time no refresh succeeded and which
	// devices refreshed after it. Written from the engine's goroutine, so
	// it should be buffered; a write error is the writer's to keep.
	OKLog io.Writer
}

// Defaults returns a configuration with every optional field set.
func Defaults() Config {
	return Config{
		Server:           netip.MustParseAddrPort("127.0.0.1:5060"),
		Devices:          10000,
		DevicesPerSocket: 1,
		Sources:          netip.MustParsePrefix("127.77.0.0/16"),
		PortBase:         10000,
		PortsPerAddr:     20000,
		IO:               IOBatch,
		Sockets:          8,
		Deadline:         2 * time.Second,
		UserPrefix:       "u",
		Algorithm:        digest.MD5,
		Expires:          3600,
		Scenario:         ScenarioRefresh,
		Rate:             5000,
		Duration:         20 * time.Second,
		Warmup:           3 * time.Second,
		PrepareRate:      5000,
		Refresh:          60 * time.Second,
		Keepalive:        25 * time.Second,
		CallRate:         10,
		CallHold:         time.Second,
		FloodRate:        20000,
		FloodSources:     16,
		RetryAfter:       2 * time.Second,
		T1:               DefaultT1,
		T2:               DefaultT2,
	}
}

// User is the user name of device i.
func (c *Config) User(i int) string { return fmt.Sprintf("%s%07d", c.UserPrefix, i) }

// Password is the password of user u: derived from the name so that any
// server can be given the same credentials without a table (see bench/README).
func Password(user string) string { return "pw-" + user }

// DeviceAddr is the source address and port of device i.
func (c *Config) DeviceAddr(i int) netip.AddrPort {
	return c.endpointAddr(i / max(c.DevicesPerSocket, 1))
}

// endpoints is how many source address and port pairs the devices use.
func (c *Config) endpoints() int {
	per := max(c.DevicesPerSocket, 1)
	return (c.Devices + per - 1) / per
}

// endpointAddr is the source of device endpoint s (see Config.IO).
func (c *Config) endpointAddr(s int) netip.AddrPort {
	if c.IO == IOBatch {
		k := max(c.Sockets, 1)
		return netip.AddrPortFrom(c.nthAddr(1+s/k), uint16(c.PortBase+s%k))
	}
	return netip.AddrPortFrom(c.nthAddr(1+s/c.PortsPerAddr), uint16(c.PortBase+s%c.PortsPerAddr))
}

// deviceAddrs is how many source addresses the devices use.
func (c *Config) deviceAddrs() int {
	per := c.PortsPerAddr
	if c.IO == IOBatch {
		per = max(c.Sockets, 1)
	}
	return (c.endpoints() + per - 1) / per
}

// floodAddr is the source of flood source k: an address of its own after
// the devices' (in batch mode sent from the first socket's port).
func (c *Config) floodAddr(k int) netip.AddrPort {
	return netip.AddrPortFrom(c.nthAddr(1+c.deviceAddrs()+k), uint16(c.PortBase))
}

// nthAddr is the n-th address after the start of Sources.
func (c *Config) nthAddr(n int) netip.Addr {
	b := c.Sources.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(n)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func (c *Config) domain() string {
	if c.Domain != "" {
		return c.Domain
	}
	return c.Server.Addr().String()
}

func (c *Config) needsPrepare() bool {
	if c.Scenario == ScenarioAvalanche {
		return c.Reregister
	}
	return c.Scenario != ScenarioRegister
}

// avalancheAction is what each device of the avalanche does: a first
// registration, or a refresh of the registration it had before the restart.
func (c *Config) avalancheAction() actionKind {
	if c.Reregister && !c.FreshCallID {
		return aRefresh
	}
	return aRegister
}

// avalancheMode names the avalanche's kind in the results (Avalanche.Mode).
func (c *Config) avalancheMode() string {
	switch {
	case !c.Reregister:
		return "first"
	case c.FreshCallID:
		return "reregister-fresh"
	}
	return "reregister"
}

// Validate checks c and names the first wrong field.
func (c *Config) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if !c.Server.IsValid() || !c.Server.Addr().Is4() {
		bad("server: %v is not an IPv4 address and port (IPv6 is not supported yet)", c.Server)
	} else if !c.Server.Addr().IsLoopback() && !c.AllowNonLoopback {
		bad("server: %v is outside 127.0.0.0/8; pass -allow-non-loopback to target it", c.Server)
	}
	if c.Devices < 1 {
		bad("devices: %d, want at least 1", c.Devices)
	}
	if c.DevicesPerSocket < 1 {
		bad("devices-per-socket: %d, want at least 1", c.DevicesPerSocket)
	}
	if !c.Sources.IsValid() || !c.Sources.Addr().Is4() {
		bad("sources: %v is not an IPv4 prefix", c.Sources)
	}
	switch c.IO {
	case IOSocket:
		if c.PortsPerAddr < 1 || c.PortBase < 1 || c.PortBase+c.PortsPerAddr > 65536 {
			bad("ports: base %d with %d per address leaves 1…65535", c.PortBase, c.PortsPerAddr)
		}
	case IOBatch:
		if c.Sockets < 1 || c.PortBase < 1 || c.PortBase+c.Sockets > 65536 {
			bad("ports: base %d with %d sockets leaves 1…65535", c.PortBase, c.Sockets)
		}
	default:
		bad("io: %q, want %s or %s", c.IO, IOBatch, IOSocket)
	}
	if c.Sources.IsValid() && c.PortsPerAddr > 0 && c.Sockets > 0 && c.Devices > 0 {
		addrs := c.deviceAddrs() + 1 + c.FloodSources
		if bits := 32 - c.Sources.Bits(); bits < 31 && addrs >= 1<<bits {
			bad("sources: %v holds fewer than the %d addresses that %d devices (%s io) and %d flood sources need",
				c.Sources, addrs, c.Devices, c.IO, c.FloodSources)
		}
	}
	if c.Deadline <= 0 {
		bad("deadline: %v, want > 0", c.Deadline)
	}
	known := false
	for _, s := range Scenarios {
		known = known || s == c.Scenario
	}
	if !known {
		bad("scenario: %q, want one of %s", c.Scenario, strings.Join(Scenarios, ", "))
	}
	if c.Scenario != ScenarioIdle && c.Scenario != ScenarioMix && c.Rate <= 0 {
		bad("rate: %v, want > 0", c.Rate)
	}
	if c.Scenario == ScenarioMix && c.Refresh <= 0 {
		bad("refresh: %v, want > 0 for the mix", c.Refresh)
	}
	if c.Scenario == ScenarioFlood && (c.FloodRate <= 0 || c.FloodSources < 1) {
		bad("flood: rate %v from %d sources, want both > 0", c.FloodRate, c.FloodSources)
	}
	if (c.Scenario == ScenarioCalls || c.Scenario == ScenarioMix && c.CallRate > 0) && c.Devices < 2 {
		bad("devices: calls need at least 2")
	}
	if c.Scenario == ScenarioAvalanche && c.RetryAfter <= 0 {
		bad("retry-after: %v, want > 0 for the avalanche", c.RetryAfter)
	}
	if (c.Reregister || c.FreshCallID) && c.Scenario != ScenarioAvalanche {
		bad("reregister: only the avalanche re-registers after a restart, not %s", c.Scenario)
	}
	if c.FreshCallID && !c.Reregister {
		bad("fresh-call-id: only with reregister (the plain avalanche always uses a new Call-ID)")
	}
	if c.Duration <= 0 || c.Warmup < 0 || c.Warmup >= c.Duration {
		bad("duration %v and warmup %v: want 0 ≤ warmup < duration", c.Duration, c.Warmup)
	}
	if c.needsPrepare() && c.PrepareRate <= 0 {
		bad("prepare-rate: %v, want > 0", c.PrepareRate)
	}
	if c.T1 <= 0 || c.T2 < c.T1 {
		bad("timers: T1 %v, T2 %v: want 0 < T1 ≤ T2", c.T1, c.T2)
	}
	if c.Expires < 1 {
		bad("expires: %d, want ≥ 1", c.Expires)
	}
	if len(errs) > 0 {
		return errors.New("load: " + strings.Join(errs, "; "))
	}
	return nil
}

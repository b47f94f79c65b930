package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pinhole-sip/pinhole/cmd/pinhole/mgmt"
	"github.com/pinhole-sip/pinhole/internal/config"
)

// ctlUsage is `pinhole ctl -h`; docs/operations.md has the same list.
const ctlUsage = `usage: pinhole ctl [flags] COMMAND [ARGS]

Commands (the management API, docs/operations.md):
  bindings list [-prefix P] [-limit N] [-after AOR] [-all]
                                   registered contacts, by AOR
  bindings show AOR                one AOR's contacts
  bindings rm AOR [CONTACT]        remove an AOR's contacts, or one
  dispatch list                    farm destinations and their state
  dispatch up|down|probe SET URI   force a destination up, out (until up),
                                   or out until probes bring it back
  blocklist list                   the kernel blocklist
  blocklist add PREFIX [DURATION]  block an address or prefix (e.g. 15m;
                                   without a duration until removed)
  blocklist rm PREFIX              unblock
  stats [PREFIX]                   metrics, e.g. stats pinhole_location_
  reload                           read the configuration file again
  key rotate                       make a new route signing key current (the
                                   previous one verifies for 24 h more)

Flags:
`

// ctlClient is the API to talk to: -api and -token, or what -config names.
type ctlClient struct {
	c    *mgmt.Client
	json bool
	out  io.Writer
}

// ctl runs one command and returns the exit status: 0 done, 1 the call
// failed, 2 a usage error.
func ctl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pinhole ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage); fs.PrintDefaults() }
	api := fs.String("api", envOr("PINHOLE_API", "http://127.0.0.1:9061"), "management API `URL` (env PINHOLE_API)")
	token := fs.String("token", os.Getenv("PINHOLE_TOKEN"), "bearer `token` (env PINHOLE_TOKEN); prefer -token-file")
	tokenFile := fs.String("token-file", "", "`file` holding the bearer token")
	cfgPath := fs.String("config", "", "take the API address and token from pinhole's configuration `file`")
	asJSON := fs.Bool("json", false, "print the API's JSON instead of tables")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on a call after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	c := &mgmt.Client{Base: strings.TrimRight(*api, "/"), Token: *token}
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "pinhole ctl:", err)
			return 2
		}
		if cfg.API.Listen == "" {
			fmt.Fprintf(stderr, "pinhole ctl: %s: api.listen is empty: the API is off\n", *cfgPath)
			return 2
		}
		c.Base = "http://" + cfg.API.Listen
		if cfg.API.TLS() {
			tc, err := mgmt.PinnedTLS(cfg.API.TLSCert)
			if err != nil {
				fmt.Fprintln(stderr, "pinhole ctl:", err)
				return 2
			}
			c.Base = "https://" + cfg.API.Listen
			c.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		}
		if c.Token, err = cfg.API.ResolveToken(); err != nil {
			fmt.Fprintln(stderr, "pinhole ctl:", err)
			return 2
		}
	}
	if *tokenFile != "" {
		tok, err := config.API{TokenFile: *tokenFile}.ResolveToken()
		if err != nil {
			fmt.Fprintln(stderr, "pinhole ctl:", err)
			return 2
		}
		c.Token = tok
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cl := ctlClient{c: c, json: *asJSON, out: stdout}
	err := cl.run(ctx, fs.Args(), stderr)
	var usage usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "pinhole ctl: %v\n\n", err)
		fs.Usage()
		return 2
	default:
		fmt.Fprintln(stderr, "pinhole ctl:", err)
		return 1
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type usageError string

func (e usageError) Error() string { return string(e) }

func (cl ctlClient) run(ctx context.Context, args []string, stderr io.Writer) error {
	cmd := strings.Join(args[:min(2, len(args))], " ")
	rest := args[min(2, len(args)):]
	switch cmd {
	case "bindings list":
		return cl.bindingsList(ctx, rest, stderr)
	case "bindings show":
		if len(rest) != 1 {
			return usageError("bindings show takes one AOR, e.g. alice@example.com")
		}
		return cl.call(ctx, http.MethodGet, "/api/v1/bindings/"+url.PathEscape(rest[0]), nil, nil, printBindings)
	case "bindings rm":
		if len(rest) < 1 || len(rest) > 2 {
			return usageError("bindings rm takes an AOR and optionally one contact URI")
		}
		q := map[string][]string{}
		if len(rest) == 2 {
			q["contact"] = []string{rest[1]}
		}
		return cl.call(ctx, http.MethodDelete, "/api/v1/bindings/"+url.PathEscape(rest[0]), q, nil, func(w io.Writer, raw []byte) error {
			var r mgmt.Removed
			if err := json.Unmarshal(raw, &r); err != nil {
				return err
			}
			fmt.Fprintf(w, "removed %d binding(s)\n", len(r.Removed))
			b, _ := json.Marshal(r.Removed)
			return printBindings(w, b)
		})
	case "dispatch list":
		if len(rest) != 0 {
			return usageError("dispatch list takes no arguments")
		}
		return cl.call(ctx, http.MethodGet, "/api/v1/dispatch", nil, nil, printDestinations)
	case "dispatch up", "dispatch down", "dispatch probe":
		if len(rest) != 2 {
			return usageError(cmd + " takes a set name and a destination URI")
		}
		state := map[string]string{"up": "up", "down": "disabled", "probe": "probing"}[args[1]]
		return cl.call(ctx, http.MethodPost, "/api/v1/dispatch/state", nil, mgmt.StateChange{Set: rest[0], URI: rest[1], State: state}, func(w io.Writer, raw []byte) error {
			return printDestinations(w, []byte("["+string(raw)+"]"))
		})
	case "blocklist list":
		if len(rest) != 0 {
			return usageError("blocklist list takes no arguments")
		}
		return cl.call(ctx, http.MethodGet, "/api/v1/blocklist", nil, nil, printBlocks)
	case "blocklist add":
		if len(rest) < 1 || len(rest) > 2 {
			return usageError("blocklist add takes a prefix and optionally a duration, e.g. 192.0.2.0/24 15m")
		}
		req := mgmt.BlockAdd{Prefix: rest[0]}
		if len(rest) == 2 {
			req.Duration = rest[1]
		}
		return cl.call(ctx, http.MethodPost, "/api/v1/blocklist", nil, req, func(w io.Writer, raw []byte) error {
			return printBlocks(w, []byte("["+string(raw)+"]"))
		})
	case "blocklist rm":
		if len(rest) != 1 {
			return usageError("blocklist rm takes one prefix")
		}
		return cl.call(ctx, http.MethodDelete, "/api/v1/blocklist", map[string][]string{"prefix": {rest[0]}}, nil, func(w io.Writer, raw []byte) error {
			var b mgmt.Block
			if err := json.Unmarshal(raw, &b); err != nil {
				return err
			}
			fmt.Fprintf(w, "unblocked %s\n", b.Prefix)
			return nil
		})
	case "key rotate":
		if len(rest) != 0 {
			return usageError("key rotate takes no arguments")
		}
		return cl.call(ctx, http.MethodPost, "/api/v1/keys/rotate", nil, nil, func(w io.Writer, raw []byte) error {
			fmt.Fprintln(w, "route signing key rotated")
			return nil
		})
	case "reload":
		return cl.call(ctx, http.MethodPost, "/api/v1/reload", nil, nil, func(w io.Writer, raw []byte) error {
			var r mgmt.ReloadResult
			if err := json.Unmarshal(raw, &r); err != nil {
				return err
			}
			fmt.Fprintf(w, "applied:        %s\n", listOrNone(r.Applied))
			fmt.Fprintf(w, "restart needed: %s\n", listOrNone(r.Restart))
			return nil
		})
	}
	if args[0] == "stats" && len(args) <= 2 {
		q := map[string][]string{}
		if len(args) == 2 {
			q["prefix"] = []string{args[1]}
		}
		return cl.call(ctx, http.MethodGet, "/api/v1/stats", q, nil, printStats)
	}
	return usageError(fmt.Sprintf("unknown command %q", strings.Join(args, " ")))
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	return strings.Join(l, ", ")
}

// call makes one call and prints its answer: the JSON as it came with
// -json, else through print.
func (cl ctlClient) call(ctx context.Context, method, path string, q map[string][]string, body any, print func(io.Writer, []byte) error) error {
	raw, err := cl.c.Do(ctx, method, path, q, body, nil)
	if err != nil {
		return err
	}
	if cl.json {
		_, err := cl.out.Write(raw)
		return err
	}
	return print(cl.out, raw)
}

func (cl ctlClient) bindingsList(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bindings list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	prefix := fs.String("prefix", "", "only AORs starting with this")
	limit := fs.Int("limit", mgmt.DefaultPage, "AORs per page (at most 1000)")
	after := fs.String("after", "", "start after this AOR (the previous page's next)")
	all := fs.Bool("all", false, "follow every page")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() != 0 {
		return usageError("bindings list takes flags only")
	}
	var bs []mgmt.Binding
	var page mgmt.BindingPage
	for {
		var err error
		if page, err = cl.c.Bindings(ctx, *after, *prefix, *limit); err != nil {
			return err
		}
		bs = append(bs, page.Bindings...)
		if !*all || page.Next == "" {
			break
		}
		*after = page.Next
	}
	if cl.json {
		page.Bindings = bs
		return writeJSON(cl.out, page)
	}
	raw, _ := json.Marshal(bs)
	if err := printBindings(cl.out, raw); err != nil {
		return err
	}
	fmt.Fprintf(cl.out, "%d binding(s) shown; %d AOR(s), %d binding(s) held\n", len(bs), page.AORs, page.Total)
	if page.Next != "" {
		fmt.Fprintf(cl.out, "more: pinhole ctl bindings list -after %s (or -all)\n", page.Next)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 2, 8, 2, ' ', 0) }

func printBindings(w io.Writer, raw []byte) error {
	var bs []mgmt.Binding
	if err := json.Unmarshal(raw, &bs); err != nil {
		return err
	}
	t := table(w)
	fmt.Fprintln(t, "AOR\tCONTACT\tTRANSPORT\tREMOTE\tNAT\tEXPIRES\tUSER-AGENT")
	for _, b := range bs {
		nat := "no"
		if b.NAT {
			nat = "yes"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%ds\t%s\n", b.AOR, b.Contact, b.Transport, b.Remote, nat, b.ExpiresIn, b.UserAgent)
	}
	return t.Flush()
}

func printDestinations(w io.Writer, raw []byte) error {
	var ds []mgmt.Destination
	if err := json.Unmarshal(raw, &ds); err != nil {
		return err
	}
	t := table(w)
	fmt.Fprintln(t, "SET\tURI\tSTATE\tWEIGHT\tPRIORITY\tCALLS\tLAST PROBE")
	for _, d := range ds {
		probe := "never"
		if d.LastProbe != nil {
			probe = fmt.Sprintf("%s ago", time.Since(*d.LastProbe).Round(time.Second))
			if d.LastCode != 0 {
				probe += " (" + strconv.Itoa(d.LastCode) + ")"
			} else {
				probe += " (no answer)"
			}
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", d.Set, d.URI, d.State, d.Weight, d.Priority, d.ActiveCalls, probe)
	}
	return t.Flush()
}

func printBlocks(w io.Writer, raw []byte) error {
	var bs []mgmt.Block
	if err := json.Unmarshal(raw, &bs); err != nil {
		return err
	}
	t := table(w)
	fmt.Fprintln(t, "PREFIX\tEXPIRES")
	for _, b := range bs {
		exp := "never"
		switch {
		case b.Expired:
			exp = "expired"
		case b.Until != nil:
			exp = fmt.Sprintf("in %ds", b.ExpiresIn)
		}
		fmt.Fprintf(t, "%s\t%s\n", b.Prefix, exp)
	}
	return t.Flush()
}

func printStats(w io.Writer, raw []byte) error {
	var s mgmt.Stats
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&s); err != nil {
		return err
	}
	names := make([]string, 0, len(s.Metrics))
	for n := range s.Metrics {
		names = append(names, n)
	}
	slices.Sort(names)
	t := table(w)
	fmt.Fprintf(t, "uptime\t%s\n", time.Duration(s.Uptime*float64(time.Second)).Round(time.Second))
	for _, n := range names {
		fmt.Fprintf(t, "%s\t%s\n", n, strconv.FormatFloat(s.Metrics[n], 'f', -1, 64))
	}
	return t.Flush()
}

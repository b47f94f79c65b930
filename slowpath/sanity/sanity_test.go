package sanity

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"
)

// testLimits are the limits of the table below unless a case sets its own.
var testLimits = Limits{MaxMessageBytes: 1500, MaxHeaders: 40}

func TestCheck(t *testing.T) {
	tests := []struct {
		file   string
		lim    *Limits
		action Action
		reason Reason
		status string // first line of the reply, for Action == Reply
	}{
		{file: "valid_register.sip", action: Pass, reason: ReasonOK},
		{file: "valid_invite.sip", action: Pass, reason: ReasonOK},
		{file: "valid_options.sip", action: Pass, reason: ReasonOK},
		{file: "valid_ack.sip", action: Pass, reason: ReasonOK},
		{file: "valid_response_200.sip", action: Pass, reason: ReasonOK},
		{file: "valid_response_180_empty_reason.sip", action: Pass, reason: ReasonOK},
		{file: "valid_compact.sip", action: Pass, reason: ReasonOK},
		{file: "valid_folded.sip", action: Pass, reason: ReasonOK},
		{file: "valid_ipv6.sip", action: Pass, reason: ReasonOK},
		{file: "valid_content_length_smaller.sip", action: Pass, reason: ReasonOK},
		{file: "valid_no_content_length.sip", action: Pass, reason: ReasonOK},
		{file: "valid_lowercase_version.sip", action: Pass, reason: ReasonOK},
		{file: "valid_max_cseq.sip", action: Pass, reason: ReasonOK},
		{file: "valid_register.sip", lim: &Limits{}, action: Pass, reason: ReasonOK},

		{file: "keepalive_double_crlf.bin", action: Drop, reason: ReasonKeepalive},
		{file: "keepalive_crlf.bin", action: Drop, reason: ReasonKeepalive},

		{file: "not_sip_five_crlf_bytes.bin", action: Drop, reason: ReasonNotSIP},
		{file: "not_sip_http.txt", action: Drop, reason: ReasonNotSIP},
		{file: "not_sip_binary.bin", action: Drop, reason: ReasonNotSIP},
		{file: "not_sip_no_version.sip", action: Drop, reason: ReasonNotSIP},
		{file: "not_sip_leading_crlf.sip", action: Drop, reason: ReasonNotSIP},
		{file: "not_sip_bad_method.sip", action: Drop, reason: ReasonNotSIP},

		{file: "bad_start_line_double_space.sip", action: Reply, reason: ReasonBadStartLine, status: "SIP/2.0 400 Bad Request Line"},
		{file: "bad_start_line_ruri_angle.sip", action: Reply, reason: ReasonBadStartLine, status: "SIP/2.0 400 Bad Request Line"},
		{file: "bad_start_line_trailing_space.sip", action: Reply, reason: ReasonBadStartLine, status: "SIP/2.0 400 Bad Request Line"},
		{file: "bad_start_line_ack.sip", action: Drop, reason: ReasonBadStartLine},
		{file: "bad_start_line_lf_only.sip", action: Drop, reason: ReasonBadStartLine},
		{file: "bad_version.sip", action: Reply, reason: ReasonBadVersion, status: "SIP/2.0 505 Version Not Supported"},
		{file: "bad_version_ack.sip", action: Drop, reason: ReasonBadVersion},

		{file: "response_bad_version.sip", action: Drop, reason: ReasonBadVersion},
		{file: "response_bad_code.sip", action: Drop, reason: ReasonBadStartLine},
		{file: "response_missing_via.sip", action: Drop, reason: ReasonMissingHeader},
		{file: "response_bad_content_length.sip", action: Drop, reason: ReasonBadContentLength},

		{file: "truncated_no_empty_line.sip", action: Reply, reason: ReasonTruncated, status: "SIP/2.0 400 Truncated Message"},
		{file: "truncated_start_line_only.sip", action: Drop, reason: ReasonTruncated},

		{file: "missing_via.sip", action: Drop, reason: ReasonMissingHeader},
		{file: "missing_from.sip", action: Reply, reason: ReasonMissingHeader, status: "SIP/2.0 400 Missing From Header"},
		{file: "missing_to.sip", action: Reply, reason: ReasonMissingHeader, status: "SIP/2.0 400 Missing To Header"},
		{file: "missing_call_id.sip", action: Reply, reason: ReasonMissingHeader, status: "SIP/2.0 400 Missing Call-ID Header"},
		{file: "missing_cseq.sip", action: Reply, reason: ReasonMissingHeader, status: "SIP/2.0 400 Missing CSeq Header"},
		{file: "missing_from_and_cseq.sip", action: Reply, reason: ReasonMissingHeader, status: "SIP/2.0 400 Missing From Header"},
		{file: "missing_from_ack.sip", action: Drop, reason: ReasonMissingHeader},

		{file: "malformed_no_colon.sip", action: Reply, reason: ReasonBadHeader, status: "SIP/2.0 400 Malformed Header Line"},
		{file: "malformed_orphan_continuation.sip", action: Reply, reason: ReasonBadHeader, status: "SIP/2.0 400 Malformed Header Line"},
		{file: "malformed_bare_cr.sip", action: Reply, reason: ReasonBadHeader, status: "SIP/2.0 400 Malformed Header Line"},
		{file: "malformed_name_with_space.sip", action: Reply, reason: ReasonBadHeader, status: "SIP/2.0 400 Malformed Header Line"},

		{file: "too_many_headers.sip", action: Reply, reason: ReasonTooManyHeaders, status: "SIP/2.0 400 Too Many Headers"},
		{file: "too_many_headers.sip", lim: &Limits{MaxHeaders: 52}, action: Pass, reason: ReasonOK},
		{file: "too_many_headers.sip", lim: &Limits{MaxHeaders: 51}, action: Reply, reason: ReasonTooManyHeaders, status: "SIP/2.0 400 Too Many Headers"},
		{file: "valid_folded.sip", lim: &Limits{MaxHeaders: 7}, action: Pass, reason: ReasonOK},
		{file: "valid_folded.sip", lim: &Limits{MaxHeaders: 6}, action: Reply, reason: ReasonTooManyHeaders, status: "SIP/2.0 400 Too Many Headers"},

		{file: "too_large.sip", action: Reply, reason: ReasonTooLarge, status: "SIP/2.0 513 Message Too Large"},
		{file: "too_large.sip", lim: &Limits{MaxMessageBytes: 4096}, action: Pass, reason: ReasonOK},
		{file: "too_large_via_late.sip", action: Drop, reason: ReasonTooLarge},
		{file: "too_large_ack.sip", action: Drop, reason: ReasonTooLarge},

		{file: "cseq_mismatch.sip", action: Reply, reason: ReasonCSeqMismatch, status: "SIP/2.0 400 CSeq Mismatch"},
		{file: "cseq_mismatch_case.sip", action: Reply, reason: ReasonCSeqMismatch, status: "SIP/2.0 400 CSeq Mismatch"},
		{file: "cseq_mismatch_ack.sip", action: Drop, reason: ReasonCSeqMismatch},
		{file: "cseq_mismatch_cancel.sip", action: Reply, reason: ReasonCSeqMismatch, status: "SIP/2.0 400 CSeq Mismatch"},
		{file: "bad_cseq_too_big.sip", action: Reply, reason: ReasonBadCSeq, status: "SIP/2.0 400 Bad CSeq"},
		{file: "bad_cseq_no_method.sip", action: Reply, reason: ReasonBadCSeq, status: "SIP/2.0 400 Bad CSeq"},
		{file: "bad_cseq_not_number.sip", action: Reply, reason: ReasonBadCSeq, status: "SIP/2.0 400 Bad CSeq"},

		{file: "bad_content_length_too_big.sip", action: Reply, reason: ReasonBadContentLength, status: "SIP/2.0 400 Bad Content-Length"},
		{file: "bad_content_length_not_number.sip", action: Reply, reason: ReasonBadContentLength, status: "SIP/2.0 400 Bad Content-Length"},
		{file: "bad_content_length_second.sip", action: Reply, reason: ReasonBadContentLength, status: "SIP/2.0 400 Bad Content-Length"},
	}
	for _, tt := range tests {
		lim := testLimits
		if tt.lim != nil {
			lim = *tt.lim
		}
		t.Run(tt.file, func(t *testing.T) {
			data := readTestdata(t, tt.file)
			v := Check(nil, data, lim)
			got := summary{v.Action, v.Reason, statusLine(v.Reply)}
			want := summary{tt.action, tt.reason, tt.status}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("Check(%s) (-want +got):\n%s", tt.file, diff)
			}
			if v.Action == Reply {
				checkReply(t, data, v.Reply, lim)
			}
		})
	}
}

type summary struct {
	Action Action
	Reason Reason
	Status string
}

// TestTortureValid checks that every RFC 4475 message sipgo ships as valid
// passes.
func TestTortureValid(t *testing.T) {
	files := tortureFiles(t, "valid")
	lim := Limits{MaxMessageBytes: 65507, MaxHeaders: 100}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			v := Check(nil, data, lim)
			if diff := cmp.Diff(summary{Pass, ReasonOK, ""}, summary{v.Action, v.Reason, statusLine(v.Reply)}); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTortureInvalid pins the verdicts on sipgo's invalid RFC 4475
// messages that these checks catch; the others (bad URIs, dates, quoting)
// are left to the parser.
func TestTortureInvalid(t *testing.T) {
	want := map[string]summary{
		"badvers.dat":    {Reply, ReasonBadVersion, "SIP/2.0 505 Version Not Supported"},
		"bigcode.dat":    {Drop, ReasonBadStartLine, ""},
		"clerr.dat":      {Reply, ReasonBadContentLength, "SIP/2.0 400 Bad Content-Length"},
		"insuf.dat":      {Reply, ReasonMissingHeader, "SIP/2.0 400 Missing From Header"},
		"ltgtruri.dat":   {Reply, ReasonBadStartLine, "SIP/2.0 400 Bad Request Line"},
		"lwsruri.dat":    {Reply, ReasonBadStartLine, "SIP/2.0 400 Bad Request Line"},
		"lwsstart.dat":   {Reply, ReasonBadStartLine, "SIP/2.0 400 Bad Request Line"},
		"mismatch01.dat": {Reply, ReasonCSeqMismatch, "SIP/2.0 400 CSeq Mismatch"},
		"mismatch02.dat": {Reply, ReasonCSeqMismatch, "SIP/2.0 400 CSeq Mismatch"},
		"ncl.dat":        {Reply, ReasonBadContentLength, "SIP/2.0 400 Bad Content-Length"},
		"scalar02.dat":   {Reply, ReasonBadCSeq, "SIP/2.0 400 Bad CSeq"},
		"scalarlg.dat":   {Drop, ReasonBadCSeq, ""},
		"test.dat":       {Drop, ReasonNotSIP, ""},
		"trws.dat":       {Reply, ReasonBadStartLine, "SIP/2.0 400 Bad Request Line"},
		// The file lacks the empty line that ends the header section.
		"baddn.dat": {Reply, ReasonTruncated, "SIP/2.0 400 Truncated Message"},
	}
	files := tortureFiles(t, "invalid")
	seen := 0
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			v := Check(nil, data, testLimits)
			if v.Action == Reply {
				checkReply(t, data, v.Reply, testLimits)
			}
			w, ok := want[name]
			if !ok {
				return
			}
			seen++
			if diff := cmp.Diff(w, summary{v.Action, v.Reason, statusLine(v.Reply)}); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
		})
	}
	if seen != len(want) {
		t.Errorf("found %d of the %d expected torture files", seen, len(want))
	}
}

func TestCheckAppendsToDst(t *testing.T) {
	data := readTestdata(t, "missing_from.sip")
	dst := append(make([]byte, 0, 2048), "prefix"...)
	v := Check(dst, data, testLimits)
	if !bytes.HasPrefix(v.Reply, []byte("prefixSIP/2.0 400 ")) {
		t.Fatalf("reply does not extend dst: %q", v.Reply)
	}
	if &v.Reply[0] != &dst[:1][0] {
		t.Error("reply was not built in dst's backing array")
	}
}

// TestReplyToTag checks that the added To tag is stable for a Call-ID and
// that an existing tag is kept.
func TestReplyToTag(t *testing.T) {
	tests := []struct {
		file string
		want string // To header value of the reply
	}{
		{file: "missing_from.sip", want: "<sip:bob@example.com>;tag=" + tagFor("a84b4c76e66710@pc33.example.com")},
		{file: "missing_from_and_cseq.sip", want: "<sip:bob@example.com>;tag=keep-me"},
		{file: "cseq_mismatch.sip", want: "<sip:bob@example.com>;tag=already"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			v := Check(nil, readTestdata(t, tt.file), testLimits)
			got := headerValues(v.Reply)["to"]
			if diff := cmp.Diff([]string{tt.want}, got); diff != "" {
				t.Errorf("To (-want +got):\n%s", diff)
			}
		})
	}
}

func tagFor(callID string) string {
	return string(appendTag(nil, []byte(callID)))[len(";tag="):]
}

func TestHasTag(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		{"<sip:bob@example.com>", false},
		{"<sip:bob@example.com>;tag=1", true},
		{"<sip:bob@example.com;tag=uri-param>", false},
		{"sip:bob@example.com;tag=1", true},
		{"sip:bob@example.com ; TAG = 1", true},
		{"sip:bob@example.com;tagx=1", false},
		{"\"a;tag=1 <x>\" <sip:bob@example.com>", false},
		{"\"a\\\" <\" <sip:bob@example.com>;\r\n tag=2", true},
		{"sip:bob@example.com;tag", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := hasTag([]byte(tt.value)); got != tt.want {
			t.Errorf("hasTag(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]bool{}
	for r := range Reason(NumReasons) {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("Reason(%d).String() = %q: empty, unknown or duplicate", r, s)
		}
		seen[s] = true
	}
	if got := Reason(NumReasons).String(); got != "unknown" {
		t.Errorf("out of range reason: %q", got)
	}
}

// checkReply proves a reply is a well-formed response to req: sipgo parses
// it, and it carries the request's Via fields in order, its From, Call-ID
// and CSeq, and its To with a tag.
func checkReply(t *testing.T, req, reply []byte, lim Limits) {
	t.Helper()
	msg, err := sip.ParseMessage(reply)
	if err != nil {
		t.Fatalf("sipgo cannot parse the reply: %v\n%s", err, reply)
	}
	res, ok := msg.(*sip.Response)
	if !ok {
		t.Fatalf("reply is a %T, not a response", msg)
	}
	if !strings.HasPrefix(string(reply), "SIP/2.0 "+res.StartLine()[len("SIP/2.0 "):]) {
		t.Errorf("status line %q does not start the reply", res.StartLine())
	}
	if lim.MaxMessageBytes > 0 && len(req) > lim.MaxMessageBytes {
		req = req[:lim.MaxMessageBytes]
	}
	in, out := headerValues(req), headerValues(reply)
	for _, name := range []string{"via", "from", "call-id", "cseq"} {
		if name == "cseq" && len(out[name]) == 0 {
			continue // a CSeq that does not parse is not echoed
		}
		w := in[name]
		if name != "via" && len(w) > 1 {
			w = w[:1]
		}
		if diff := cmp.Diff(w, out[name]); diff != "" {
			t.Errorf("%s of the reply (-request +reply):\n%s", name, diff)
		}
	}
	if len(in["to"]) > 0 {
		if to := out["to"]; len(to) != 1 || !strings.HasPrefix(to[0], in["to"][0]) || !hasTag([]byte(to[0])) {
			t.Errorf("To of the reply %q, of the request %q", to, in["to"])
		}
	}
	if id := res.CallID(); id != nil && len(in["call-id"]) > 0 && id.Value() != in["call-id"][0] {
		t.Errorf("sipgo reads Call-ID %q, request has %q", id.Value(), in["call-id"][0])
	}
	if got := out["server"]; len(got) != 1 || got[0] != "pinhole" {
		t.Errorf("Server = %q", got)
	}
}

// headerValues splits the header section of a message into trimmed values
// by canonical lower-case name, unfolding continuation lines. It is a naive
// reading independent of the scanner under test; lines without a colon are
// skipped and so is an incomplete last line.
func headerValues(msg []byte) map[string][]string {
	s := string(msg)
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		s = s[:i+2]
	} else if i := strings.LastIndex(s, "\r\n"); i >= 0 {
		s = s[:i+2]
	}
	lines := strings.Split(s, "\r\n")
	if len(lines) > 0 {
		lines = lines[1:] // start line
	}
	var fields []string
	for _, l := range lines {
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += " " + strings.TrimSpace(l)
			continue
		}
		fields = append(fields, l)
	}
	compact := map[string]string{"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length"}
	out := map[string][]string{}
	for _, f := range fields {
		name, value, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if c, ok := compact[name]; ok {
			name = c
		}
		out[name] = append(out[name], strings.TrimSpace(value))
	}
	return out
}

func statusLine(reply []byte) string {
	if reply == nil {
		return ""
	}
	line, _, _ := strings.Cut(string(reply), "\r\n")
	return line
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// tortureFiles lists sipgo's RFC 4475 torture messages of one kind, found
// through the go tool so that nothing is copied into this repository.
func tortureFiles(t testing.TB, kind string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH: cannot locate sipgo's torture messages")
	}
	dir := filepath.Join(sipgoDir(t, goTool), "sip", "testdata", "torture", kind)
	files, err := filepath.Glob(filepath.Join(dir, "*.dat"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no torture messages in %s (err %v)", dir, err)
	}
	return files
}

func sipgoDir(t testing.TB, goTool string) string {
	t.Helper()
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{.Dir}}", "github.com/emiago/sipgo").Output()
	if err != nil {
		t.Fatalf("locate sipgo: %v", err)
	}
	return strings.TrimSpace(string(out))
}

package mgmt

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzCalls sends arbitrary bodies and queries to every call that parses
// input: each must answer with a JSON status the API documents, never
// panic or hang.
func FuzzCalls(f *testing.F) {
	f.Add("POST", "/api/v1/blocklist", `{"prefix":"192.0.2.1","duration":"1m"}`)
	f.Add("POST", "/api/v1/dispatch/state", `{"set":"fs","uri":"sip:10.1.0.1:5080","state":"up"}`)
	f.Add("DELETE", "/api/v1/blocklist?prefix=10.0.0.0/8", "")
	f.Add("GET", "/api/v1/bindings?limit=3&after=b&prefix=a", "")
	f.Add("DELETE", "/api/v1/bindings/a@b?contact=sip:x", "")
	f.Fuzz(func(t *testing.T, method, target, body string) {
		switch method {
		case "GET", "POST", "DELETE":
		default:
			return
		}
		if !strings.HasPrefix(target, "/api/v1/") || strings.ContainsAny(target, " \r\n\t#") {
			return
		}
		fx := newFixture(t, "")
		req, err := http.NewRequest(method, "http://pinhole"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		fx.api.ServeHTTP(w, req)
		switch w.Code {
		// 301 and 307: ServeMux redirects unclean paths ("/api/v1/.").
		case 200, 201, 301, 307, 400, 404, 405, 409:
		default:
			t.Fatalf("%s %s %q: status %d %s", method, target, body, w.Code, w.Body)
		}
	})
}

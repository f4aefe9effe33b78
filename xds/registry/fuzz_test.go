package registry_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/xds/registry"
)

// FuzzHandler feeds arbitrary registration bodies, ids and list queries to
// the registry's HTTP API: every answer is JSON with a 2xx or 4xx status,
// never a panic or a 5xx.
func FuzzHandler(f *testing.F) {
	f.Add("a1", `{"appID":"orders","namespace":"default","host":"127.0.0.1","port":50002,"ttlSeconds":15}`, "appID=orders")
	f.Add("x", `{"appID":"","port":-1}`, "index=abc")
	f.Add("y", `{"appID":"a","port":70000,"ttlSeconds":1e308}`, "epoch=e&index=1&wait=-1s")
	f.Add("z", `{} {}`, "namespace=%zz")
	f.Fuzz(func(t *testing.T, id, body, query string) {
		reg := registry.New(registry.Options{})
		h := reg.Handler()
		for _, req := range []*http.Request{
			httptest.NewRequest(http.MethodPut, "/registry/v1/instances/"+pathSafe(id), strings.NewReader(body)),
			httptest.NewRequest(http.MethodGet, "/registry/v1/instances?"+querySafe(query)+"&wait=0s", nil),
			httptest.NewRequest(http.MethodDelete, "/registry/v1/instances/"+pathSafe(id), nil),
		} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s: status %d: %s", req.Method, req.URL, rec.Code, rec.Body)
			}
			if rec.Code != http.StatusNoContent && rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %s: answer is not JSON: %q", req.Method, req.URL, rec.Body)
			}
		}
	})
}

// pathSafe and querySafe keep the fuzzer's strings to what a client can
// put in a request line, so httptest.NewRequest accepts them.
func pathSafe(s string) string {
	if s == "" || strings.ContainsAny(s, " /?#%\x7f") || strings.IndexFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
		return "id"
	}
	return s
}

func querySafe(s string) string {
	if strings.ContainsAny(s, " #\x7f") || strings.IndexFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
		return ""
	}
	return s
}

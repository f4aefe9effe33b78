package state_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/inmemory"
)

func newAPI(t *testing.T, meta map[string]string) (*state.API, *state.Component) {
	t.Helper()
	c, unknown, err := state.NewComponent(meta, nil, inmemory.New)
	if err != nil || len(unknown) != 0 {
		t.Fatal(err, unknown)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &state.API{
		Lookup:     func(name string) (*state.Component, bool) { return c, name == "store" },
		Configured: func() bool { return true },
		AppID:      "app",
		Namespace:  "ns",
	}, c
}

func do(api *state.API, method, path, body string, hdr http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	api.ServeHTTP(w, r)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		ErrorCode string `json:"errorCode"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("not an error body: %q", w.Body.String())
	}
	return e.ErrorCode
}

func TestKeyPrefixes(t *testing.T) {
	for _, c := range []struct{ prefix, want string }{
		{"", "app||k"}, {"appid", "app||k"}, {"name", "store||k"}, {"namespace", "ns.app||k"}, {"none", "k"}, {"Custom", "Custom||k"},
	} {
		meta := map[string]string{}
		if c.prefix != "" {
			meta["keyPrefix"] = c.prefix
		}
		api, comp := newAPI(t, meta)
		if w := do(api, http.MethodPost, "/v1.0/state/store", `[{"key":"k","value":1}]`, nil); w.Code != http.StatusNoContent {
			t.Fatalf("%s: save %d %s", c.prefix, w.Code, w.Body)
		}
		if _, found, _ := comp.Store.Get(context.Background(), state.GetRequest{Key: c.want}); !found {
			t.Errorf("keyPrefix %q: the store does not hold %q", c.prefix, c.want)
		}
		if got := state.AppKey(c.want); got != "k" {
			t.Errorf("AppKey(%q) = %q", c.want, got)
		}
	}
	if _, _, err := state.NewComponent(map[string]string{"keyPrefix": "a||b"}, nil, inmemory.New); err == nil {
		t.Error("a keyPrefix with || must be refused")
	}
	if _, _, err := state.NewComponent(map[string]string{"primaryEncryptionKey": strings.Repeat("ab", 16)}, nil, inmemory.New); err == nil {
		t.Error("an encryption key given as a plain value has no name to store with the values and must be refused")
	}
}

func TestHTTPErrors(t *testing.T) {
	api, _ := newAPI(t, nil)
	notConfigured := &state.API{Configured: func() bool { return false }, Lookup: api.Lookup}
	for _, c := range []struct {
		api          *state.API
		method, path string
		body         string
		status       int
		code         string
	}{
		{notConfigured, http.MethodGet, "/v1.0/state/store/k", "", 500, "ERR_STATE_STORE_NOT_CONFIGURED"},
		{api, http.MethodGet, "/v1.0/state/other/k", "", 400, "ERR_STATE_STORE_NOT_FOUND"},
		{api, http.MethodPost, "/v1.0/state/store", `{"key":"k"}`, 400, "ERR_MALFORMED_REQUEST"},
		{api, http.MethodPost, "/v1.0/state/store", `[{"key":"k","value":1,"metadata":{"ttlInSeconds":"soon"}}]`, 400, "ERR_STATE_SAVE"},
		{api, http.MethodPost, "/v1.0/state/store", `[{"key":"a||b","value":1}]`, 400, "ERR_MALFORMED_REQUEST"},
		{api, http.MethodPost, "/v1.0/state/store/bulk", `{"keys":"a"}`, 400, "ERR_MALFORMED_REQUEST"},
		{api, http.MethodPost, "/v1.0/state/store/transaction", `{"operations":[{"operation":"upsert","request":{"value":1}}]}`, 400, "ERR_MALFORMED_REQUEST"},
		{api, http.MethodPatch, "/v1.0/state/store/k", "", 405, "ERR_MALFORMED_REQUEST"},
	} {
		w := do(c.api, c.method, c.path, c.body, nil)
		if w.Code != c.status || errorCode(t, w) != c.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.path, c.body, w.Code, w.Body, c.status, c.code)
		}
	}
}

func TestGRPCCodes(t *testing.T) {
	api, _ := newAPI(t, nil)
	ctx := context.Background()
	if _, err := api.GetState(ctx, &runtimev1pb.GetStateRequest{StoreName: "other", Key: "k"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown store: %v", err)
	}
	if _, err := api.SaveState(ctx, &runtimev1pb.SaveStateRequest{StoreName: "store", States: []*commonv1pb.StateItem{{Key: "k", Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	got, err := api.GetState(ctx, &runtimev1pb.GetStateRequest{StoreName: "store", Key: "k"})
	if err != nil || string(got.GetData()) != "v" || got.GetEtag() == "" {
		t.Fatalf("GetState: %v %v", got, err)
	}
	_, err = api.SaveState(ctx, &runtimev1pb.SaveStateRequest{StoreName: "store", States: []*commonv1pb.StateItem{{Key: "k", Value: []byte("w"), Etag: &commonv1pb.Etag{Value: "stale"}}}})
	if status.Code(err) != codes.Aborted {
		t.Errorf("a stale ETag over gRPC: %v, want ABORTED as daprd", err)
	}
	_, err = api.SaveState(ctx, &runtimev1pb.SaveStateRequest{StoreName: "store", States: []*commonv1pb.StateItem{{Value: []byte("w")}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("an empty key: %v", err)
	}
	_, err = api.ExecuteStateTransaction(ctx, &runtimev1pb.ExecuteStateTransactionRequest{StoreName: "store", Operations: []*runtimev1pb.TransactionalStateOperation{{OperationType: "merge", Request: &commonv1pb.StateItem{Key: "k"}}}})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("an unknown operation: %v", err)
	}
	_, err = api.QueryStateAlpha1(ctx, &runtimev1pb.QueryStateRequest{StoreName: "store", Query: "{}"})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "does not support querying") {
		t.Errorf("query on a store without it: %v", err)
	}
}

func TestParseQuery(t *testing.T) {
	q, err := state.ParseQuery([]byte(`{"filter":{"AND":[{"EQ":{"a.b":"x"}},{"IN":{"n":[1,2]}}]},"sort":[{"key":"n","order":"DESC"}],"page":{"limit":5,"token":"t"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if q.Filter.Op != "AND" || len(q.Filter.Filters) != 2 || q.Filter.Filters[1].Values[1] != 2.0 || !q.Sort[0].Descending || q.Limit != 5 || q.Token != "t" {
		t.Errorf("parsed %+v", q)
	}
	for _, bad := range []string{
		`{"filter":{"EQ":{"a":1},"NEQ":{"b":2}}}`, `{"filter":{"AND":[{"EQ":{"a":1}}]}}`, `{"filter":{"LIKE":{"a":1}}}`,
		`{"filter":{"IN":{"a":[]}}}`, `{"filter":{"EQ":{"a":[1]}}}`, `{"sort":[{"key":"a","order":"UP"}]}`, `{"page":{"limit":-1}}`,
		`{"unknown":1}`, `[`,
	} {
		if _, err := state.ParseQuery([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func FuzzParseQuery(f *testing.F) {
	f.Add([]byte(`{"filter":{"OR":[{"EQ":{"a":1}},{"GT":{"b":2}}]},"sort":[{"key":"a"}],"page":{"limit":1}}`))
	f.Add([]byte(`{"filter":{"IN":{"k":["x",1,null,true]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := state.ParseQuery(b)
		if err != nil {
			return
		}
		var walk func(*state.Filter, int)
		walk = func(f *state.Filter, depth int) {
			if f == nil {
				return
			}
			if depth > 40 {
				t.Fatalf("a filter nested %d deep was accepted", depth)
			}
			for _, c := range f.Filters {
				walk(c, depth+1)
			}
		}
		walk(q.Filter, 0)
	})
}

func FuzzHTTPSave(f *testing.F) {
	f.Add(`[{"key":"k","value":{"a":1},"etag":"1","options":{"concurrency":"first-write"}}]`)
	f.Add(`[{"key":"k","metadata":{"ttlInSeconds":"-1"}}]`)
	f.Fuzz(func(t *testing.T, body string) {
		api, _ := newAPI(t, nil)
		w := do(api, http.MethodPost, "/v1.0/state/store", body, nil)
		if w.Code != http.StatusNoContent {
			errorCode(t, w) // every failure is a Dapr error body
		}
	})
}

func FuzzHTTPTransactionAndBulk(f *testing.F) {
	f.Add(`{"operations":[{"operation":"upsert","request":{"key":"a","value":1,"etag":"x"}},{"operation":"delete","request":{"key":"b"}}]}`, `{"keys":["a","b"],"parallelism":1}`)
	f.Add(`{"operations":[{"operation":"merge"}]}`, `{"keys":[]}`)
	f.Fuzz(func(t *testing.T, tx, bulk string) {
		api, _ := newAPI(t, nil)
		if w := do(api, http.MethodPost, "/v1.0/state/store/transaction", tx, nil); w.Code != http.StatusNoContent {
			errorCode(t, w)
		}
		w := do(api, http.MethodPost, "/v1.0/state/store/bulk", bulk, nil)
		if w.Code == http.StatusOK {
			var items []map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &items); err != nil {
				t.Fatalf("a bulk answer that is not JSON: %q", w.Body)
			}
			return
		}
		errorCode(t, w)
	})
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/outrigger/outrigger/e2e/framework"
)

// stateStores writes a folder of state store components and returns it.
func stateStores(t *testing.T, docs ...string) string {
	t.Helper()
	dir := framework.ShortTempDir(t)
	for i, d := range docs {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("store%d.yaml", i)), d)
	}
	return dir
}

func inMemoryStore(name string, extra ...string) string {
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name + "\nspec:\n  type: state.in-memory\n  version: v1\n"
	if len(extra) > 0 {
		doc += "  metadata:\n"
		for i := 0; i+1 < len(extra); i += 2 {
			doc += "  - name: " + extra[i] + "\n    value: \"" + extra[i+1] + "\"\n"
		}
	}
	return doc
}

// TestStateGoSDK drives the state API with the official Dapr Go SDK:
// SaveState, GetState with ETags, ExecuteStateTransaction, GetBulkState,
// DeleteState.
func TestStateGoSDK(t *testing.T) {
	t.Parallel()
	dir := stateStores(t, inMemoryStore("statestore"))
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "state-app", Args: []string{"--resources-path", dir}})
	client, err := dapr.NewClientWithPort(strconv.Itoa(sc.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	ctx := callCtx(t)

	if err := client.SaveState(ctx, "statestore", "order-1", []byte(`{"qty":1}`), nil); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	item, err := client.GetState(ctx, "statestore", "order-1", nil)
	if err != nil || string(item.Value) != `{"qty":1}` || item.Etag == "" {
		t.Fatalf("GetState: %+v %v", item, err)
	}
	// A write with the current ETag passes; one with a stale ETag is refused.
	if err := client.SaveStateWithETag(ctx, "statestore", "order-1", []byte(`{"qty":2}`), item.Etag, nil); err != nil {
		t.Fatalf("SaveStateWithETag (current): %v", err)
	}
	if err := client.SaveStateWithETag(ctx, "statestore", "order-1", []byte(`{"qty":3}`), item.Etag, nil); err == nil {
		t.Fatal("SaveStateWithETag with a stale ETag succeeded")
	}
	// First-write concurrency without an ETag only creates.
	fw := &dapr.StateOptions{Concurrency: dapr.StateConcurrencyFirstWrite}
	if err := client.SaveBulkState(ctx, "statestore", &dapr.SetStateItem{Key: "order-1", Value: []byte("x"), Options: fw}); err == nil {
		t.Error("first-write over an existing key succeeded")
	}

	ops := []*dapr.StateOperation{
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: "order-2", Value: []byte("two")}},
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: "order-3", Value: []byte("three")}},
		{Type: dapr.StateOperationTypeDelete, Item: &dapr.SetStateItem{Key: "order-1"}},
	}
	if err := client.ExecuteStateTransaction(ctx, "statestore", nil, ops); err != nil {
		t.Fatalf("ExecuteStateTransaction: %v", err)
	}
	items, err := client.GetBulkState(ctx, "statestore", []string{"order-1", "order-2", "order-3"}, nil, 2)
	if err != nil {
		t.Fatalf("GetBulkState: %v", err)
	}
	got := map[string]string{}
	for _, it := range items {
		got[it.Key] = string(it.Value)
	}
	if got["order-1"] != "" || got["order-2"] != "two" || got["order-3"] != "three" || len(items) != 3 {
		t.Errorf("GetBulkState: %v", got)
	}
	// A transaction with a stale ETag applies nothing.
	stale := &dapr.ETag{Value: "stale"}
	bad := []*dapr.StateOperation{
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: "order-4", Value: []byte("four")}},
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: "order-2", Value: []byte("changed"), Etag: stale}},
	}
	if err := client.ExecuteStateTransaction(ctx, "statestore", nil, bad); err == nil {
		t.Error("a transaction with a stale ETag succeeded")
	}
	if it, err := client.GetState(ctx, "statestore", "order-4", nil); err != nil || len(it.Value) != 0 {
		t.Errorf("a failed transaction wrote order-4: %q %v", it.Value, err)
	}
	if err := client.DeleteState(ctx, "statestore", "order-2", nil); err != nil {
		t.Fatalf("DeleteState: %v", err)
	}
	if it, err := client.GetState(ctx, "statestore", "order-2", nil); err != nil || len(it.Value) != 0 {
		t.Errorf("after DeleteState: %q %v", it.Value, err)
	}
	// An unknown store is daprd's error.
	if _, err := client.GetState(ctx, "nostore", "k", nil); err == nil || !strings.Contains(err.Error(), "state store nostore is not found") {
		t.Errorf("unknown store: %v", err)
	}
}

// TestStateHTTP drives the state API over HTTP as daprd answers it.
func TestStateHTTP(t *testing.T) {
	t.Parallel()
	dir := stateStores(t, inMemoryStore("statestore"), inMemoryStore("shared", "keyPrefix", "none"))
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "state-http", Args: []string{"--resources-path", dir}})
	url := func(p string) string { return sc.URL(p) }

	resp, body := call(t, http.MethodPost, url("/v1.0/state/statestore"), strings.NewReader(`[{"key":"a","value":{"n":1}},{"key":"b","value":"text","metadata":{"ttlInSeconds":"3600"}}]`), nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("save: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, http.MethodGet, url("/v1.0/state/statestore/a"), nil, nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || string(body) != `{"n":1}` || etag == "" {
		t.Fatalf("get a: %d %q etag %q", resp.StatusCode, body, etag)
	}
	resp, body = call(t, http.MethodGet, url("/v1.0/state/statestore/b"), nil, nil)
	if string(body) != `"text"` || resp.Header.Get("metadata.ttlExpireTime") == "" {
		t.Errorf("get b: %q, expiry %q", body, resp.Header.Get("metadata.ttlExpireTime"))
	}
	if resp, _ := call(t, http.MethodGet, url("/v1.0/state/statestore/missing"), nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("a missing key: %d, want 204", resp.StatusCode)
	}
	// A stale ETag: 409 ERR_STATE_SAVE; deleting with it: 409 ERR_STATE_DELETE.
	call(t, http.MethodPost, url("/v1.0/state/statestore"), strings.NewReader(`[{"key":"a","value":2}]`), nil)
	resp, body = call(t, http.MethodPost, url("/v1.0/state/statestore"), strings.NewReader(`[{"key":"a","value":3,"etag":"`+etag+`"}]`), nil)
	wantDaprError(t, resp, body, http.StatusConflict, "ERR_STATE_SAVE")
	resp, body = call(t, http.MethodDelete, url("/v1.0/state/statestore/a"), nil, http.Header{"If-Match": {etag}})
	wantDaprError(t, resp, body, http.StatusConflict, "ERR_STATE_DELETE")
	// Bulk get, with keys that are missing.
	resp, body = call(t, http.MethodPost, url("/v1.0/state/statestore/bulk"), strings.NewReader(`{"keys":["a","nope","b"],"parallelism":2}`), nil)
	var bulk []struct {
		Key  string          `json:"key"`
		Data json.RawMessage `json:"data"`
		ETag string          `json:"etag"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &bulk) != nil || len(bulk) != 3 ||
		string(bulk[0].Data) != "2" || bulk[1].Data != nil || string(bulk[2].Data) != `"text"` {
		t.Errorf("bulk: %d %s", resp.StatusCode, body)
	}
	// A transaction.
	resp, body = call(t, http.MethodPost, url("/v1.0/state/statestore/transaction"), strings.NewReader(
		`{"operations":[{"operation":"upsert","request":{"key":"c","value":"see"}},{"operation":"delete","request":{"key":"a"}}]}`), nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("transaction: %d %s", resp.StatusCode, body)
	}
	if resp, _ := call(t, http.MethodGet, url("/v1.0/state/statestore/a"), nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("a deleted in a transaction: %d", resp.StatusCode)
	}
	resp, body = call(t, http.MethodPost, url("/v1.0/state/statestore/transaction"), strings.NewReader(`{"operations":[{"operation":"merge","request":{"key":"c"}}]}`), nil)
	wantDaprError(t, resp, body, http.StatusBadRequest, "ERR_NOT_SUPPORTED_STATE_OPERATION")
	// Bad input.
	resp, body = call(t, http.MethodPost, url("/v1.0/state/statestore"), strings.NewReader(`[{"key":`), nil)
	wantDaprError(t, resp, body, http.StatusBadRequest, "ERR_MALFORMED_REQUEST")
	resp, body = call(t, http.MethodPost, url("/v1.0/state/statestore"), strings.NewReader(`[{"value":1}]`), nil)
	wantDaprError(t, resp, body, http.StatusBadRequest, "ERR_MALFORMED_REQUEST")
	big := `[{"key":"big","value":"` + strings.Repeat("x", 5<<20) + `"}]`
	resp, body = call(t, http.MethodPost, url("/v1.0/state/statestore"), strings.NewReader(big), nil)
	wantDaprError(t, resp, body, http.StatusRequestEntityTooLarge, "ERR_MALFORMED_REQUEST")
	resp, body = call(t, http.MethodGet, url("/v1.0/state/statestore/x%7C%7Cy"), nil, nil)
	wantDaprError(t, resp, body, http.StatusBadRequest, "ERR_MALFORMED_REQUEST")
	resp, body = call(t, http.MethodGet, url("/v1.0/state/nostore/a"), nil, nil)
	wantDaprError(t, resp, body, http.StatusBadRequest, "ERR_STATE_STORE_NOT_FOUND")
	resp, body = call(t, http.MethodPost, url("/v1.0-alpha1/state/statestore/query"), strings.NewReader(`{}`), nil)
	wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_STATE_STORE_NOT_SUPPORTED")
	// keyPrefix none: the key is stored as given, so another app with the
	// same store sees it (checked through the same store's key space).
	call(t, http.MethodPost, url("/v1.0/state/shared"), strings.NewReader(`[{"key":"k","value":1}]`), nil)
	if resp, body := call(t, http.MethodGet, url("/v1.0/state/shared/k"), nil, nil); string(body) != "1" {
		t.Errorf("keyPrefix none: %d %q", resp.StatusCode, body)
	}
	// The metadata API lists the stores with their capabilities.
	resp, body = call(t, http.MethodGet, url("/v1.0/metadata"), nil, nil)
	var md struct {
		Components []struct {
			Name         string   `json:"name"`
			Type         string   `json:"type"`
			Version      string   `json:"version"`
			Capabilities []string `json:"capabilities"`
		} `json:"components"`
	}
	if err := json.Unmarshal(body, &md); err != nil || len(md.Components) != 2 || md.Components[1].Name != "statestore" ||
		md.Components[1].Type != "state.in-memory" || strings.Join(md.Components[1].Capabilities, ",") != "ETAG,TRANSACTIONAL,TTL" {
		t.Errorf("metadata: %d %s", resp.StatusCode, body)
	}
	wantEchoedState(t, sc)
}

// wantEchoedState checks the sidecar still serves after the bad input.
func wantEchoedState(t *testing.T, sc *framework.Sidecar) {
	t.Helper()
	resp, _ := call(t, http.MethodGet, sc.URL("/v1.0/healthz/outbound"), nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the sidecar stopped serving: %d", resp.StatusCode)
	}
}

// TestStateQuery: the query API over HTTP and through the Go SDK, on the
// SQLite store, sees only the app's own keys.
func TestStateQuery(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	res := stateStores(t, fmt.Sprintf("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: docs\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: %q\n", filepath.Join(dir, "q.db")))
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "querier", Args: []string{"--resources-path", res}})
	other := framework.StartSidecar(t, framework.SidecarOptions{AppID: "other", Args: []string{"--resources-path", res}})
	for _, p := range []struct {
		sc   *framework.Sidecar
		body string
	}{
		{sc, `[{"key":"1","value":{"city":"Oslo","temp":3}},{"key":"2","value":{"city":"Lima","temp":19}},{"key":"3","value":{"city":"Oslo","temp":-2}}]`},
		{other, `[{"key":"4","value":{"city":"Oslo","temp":10}}]`},
	} {
		if resp, body := call(t, http.MethodPost, p.sc.URL("/v1.0/state/docs"), strings.NewReader(p.body), nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("save: %d %s", resp.StatusCode, body)
		}
	}
	q := `{"filter":{"EQ":{"city":"Oslo"}},"sort":[{"key":"temp","order":"DESC"}]}`
	resp, body := call(t, http.MethodPost, sc.URL("/v1.0-alpha1/state/docs/query"), strings.NewReader(q), nil)
	var out struct {
		Results []struct {
			Key  string          `json:"key"`
			Data json.RawMessage `json:"data"`
			ETag string          `json:"etag"`
		} `json:"results"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || len(out.Results) != 2 ||
		out.Results[0].Key != "1" || out.Results[1].Key != "3" || out.Results[0].ETag == "" {
		t.Errorf("query: %d %s", resp.StatusCode, body)
	}
	client, err := dapr.NewClientWithPort(strconv.Itoa(sc.GRPCPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	qr, err := client.QueryStateAlpha1(callCtx(t), "docs", q, nil)
	if err != nil || len(qr.Results) != 2 || qr.Results[0].Key != "1" {
		t.Errorf("QueryStateAlpha1: %+v %v", qr, err)
	}
	resp, body = call(t, http.MethodPost, sc.URL("/v1.0-alpha1/state/docs/query"), strings.NewReader(`{"filter":{"LIKE":{"city":"O%"}}}`), nil)
	wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_STATE_QUERY")
}

package secrets_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/building-blocks/secrets/localenv"
	"github.com/outrigger/outrigger/building-blocks/secrets/localfile"
)

const secretsJSON = `{
	"redisPassword": "your redis password",
	"connectionStrings": {"sql": "your sql connection string", "mysql": "your mysql connection string"},
	"a b": "space",
	"a/b": "slash",
	"x+y": "plus",
	"bulk": "a secret named bulk",
	"html": "<&>"
}`

// stub is a Store for the paths real backends never take: it records the
// metadata it is given and answers what its fields say.
type stub struct {
	data    map[string]string
	bulk    map[string]map[string]string
	err     error
	gotMeta chan map[string]string
}

func (s *stub) GetSecret(_ context.Context, _ string, md map[string]string) (map[string]string, error) {
	s.record(md)
	return s.data, s.err
}

func (s *stub) BulkGetSecret(_ context.Context, md map[string]string) (map[string]map[string]string, error) {
	s.record(md)
	return s.bulk, s.err
}

func (s *stub) Close() error { return nil }

func (s *stub) record(md map[string]string) {
	select {
	case s.gotMeta <- maps.Clone(md):
	default: // nobody listening, or the last one not read yet
	}
}

// fixture is an API over real stores:
//
//   - "file": local.file over secretsJSON; scope denies redisPassword;
//   - "multi": local.file, multiValued, over secretsJSON; no scope;
//   - "env": local.env with prefix APITEST_; scope allows only DB_PASSWORD;
//   - "env-open": local.env with prefix APITEST_; no scope;
//   - "failing", "empty", "recording": stubs.
type fixture struct {
	api       *secrets.API
	recording *stub
	logs      *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(path, []byte(secretsJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("APITEST_DB_PASSWORD", "s3cret")
	t.Setenv("APITEST_ADMIN", "root")

	stores := map[string]secrets.Store{}
	add := func(name string, s secrets.Store, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("store %s: %v", name, err)
		}
		stores[name] = s
		t.Cleanup(func() { _ = s.Close() })
	}
	f, _, err := localfile.New(map[string]string{"secretsFile": path})
	add("file", f, err)
	m, _, err := localfile.New(map[string]string{"secretsFile": path, "multiValued": "true"})
	add("multi", m, err)
	e, _, err := localenv.New(map[string]string{"prefix": "APITEST_"})
	add("env", e, err)
	add("env-open", e, nil)
	add("failing", &stub{err: errors.New("backend down")}, nil)
	add("empty", &stub{}, nil)
	rec := &stub{data: map[string]string{"k": "v"}, bulk: map[string]map[string]string{}, gotMeta: make(chan map[string]string, 1)}
	add("recording", rec, nil)

	policy, err := secrets.Scopes{
		{StoreName: "file", DeniedSecrets: []string{"redisPassword"}},
		{StoreName: "env", DefaultAccess: "deny", AllowedSecrets: []string{"DB_PASSWORD"}},
	}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	return &fixture{
		api: &secrets.API{
			Lookup: func(name string) (secrets.Store, bool) {
				s, ok := stores[name]
				return s, ok
			},
			Policy: policy,
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
		recording: rec,
		logs:      logs,
	}
}

type answer struct {
	status      int
	contentType string
	body        string
}

func get(t *testing.T, srv *httptest.Server, method, path string, body io.Reader) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{res.StatusCode, res.Header.Get("Content-Type"), string(b)}
}

func errBody(code, message string) string {
	b, _ := json.Marshal(map[string]string{"errorCode": code, "message": message})
	return string(b)
}

func TestHTTP(t *testing.T) {
	fx := newFixture(t)
	srv := httptest.NewServer(fx.api)
	t.Cleanup(srv.Close)

	const jsonCT = "application/json"
	tests := []struct {
		name string
		path string
		want answer
	}{
		// Single secrets.
		{"nested key", "/v1.0/secrets/file/connectionStrings:sql",
			answer{200, jsonCT, `{"connectionStrings:sql":"your sql connection string"}` + "\n"}},
		{"multi-valued secret", "/v1.0/secrets/multi/connectionStrings",
			answer{200, jsonCT, `{"mysql":"your mysql connection string","sql":"your sql connection string"}` + "\n"}},
		{"env secret allowed by scope", "/v1.0/secrets/env/DB_PASSWORD",
			answer{200, jsonCT, `{"DB_PASSWORD":"s3cret"}` + "\n"}},
		{"env: unset variable reads empty", "/v1.0/secrets/env-open/NOT_SET",
			answer{200, jsonCT, `{"NOT_SET":""}` + "\n"}},
		{"HTML is escaped as encoding/json does", "/v1.0/secrets/file/html",
			answer{200, jsonCT, `{"html":"\u003c\u0026\u003e"}` + "\n"}},
		{"+ unescapes to a space (daprd quirk)", "/v1.0/secrets/file/a+b",
			answer{200, jsonCT, `{"a b":"space"}` + "\n"}},
		{"%20 unescapes to a space", "/v1.0/secrets/file/a%20b",
			answer{200, jsonCT, `{"a b":"space"}` + "\n"}},
		{"%2F unescapes to a slash", "/v1.0/secrets/file/a%2Fb",
			answer{200, jsonCT, `{"a/b":"slash"}` + "\n"}},
		{"%2B unescapes to a plus", "/v1.0/secrets/file/x%2By",
			answer{200, jsonCT, `{"x+y":"plus"}` + "\n"}},
		{"escaped bulk is a key", "/v1.0/secrets/file/%62ulk",
			answer{200, jsonCT, `{"bulk":"a secret named bulk"}` + "\n"}},
		{"escaped store name", "/v1.0/secrets/env%2Dopen/DB_PASSWORD",
			answer{200, jsonCT, `{"DB_PASSWORD":"s3cret"}` + "\n"}},
		{"path is cleaned", "//v1.0/secrets//file/./connectionStrings:sql/",
			answer{200, jsonCT, `{"connectionStrings:sql":"your sql connection string"}` + "\n"}},
		{"nil answer is 204", "/v1.0/secrets/empty/k", answer{204, "", ""}},

		// Bulk.
		{"bulk filtered by scope", "/v1.0/secrets/file/bulk",
			answer{200, jsonCT, `{"a b":{"a b":"space"},"a/b":{"a/b":"slash"},"bulk":{"bulk":"a secret named bulk"},` +
				`"connectionStrings:mysql":{"connectionStrings:mysql":"your mysql connection string"},` +
				`"connectionStrings:sql":{"connectionStrings:sql":"your sql connection string"},` +
				`"html":{"html":"\u003c\u0026\u003e"},"x+y":{"x+y":"plus"}}` + "\n"}},
		{"bulk multi-valued", "/v1.0/secrets/multi/bulk",
			answer{200, jsonCT, `{"a b":{"a b":"space"},"a/b":{"a/b":"slash"},"bulk":{"bulk":"a secret named bulk"},` +
				`"connectionStrings":{"mysql":"your mysql connection string","sql":"your sql connection string"},` +
				`"html":{"html":"\u003c\u0026\u003e"},"redisPassword":{"redisPassword":"your redis password"},"x+y":{"x+y":"plus"}}` + "\n"}},
		{"bulk env allowed list", "/v1.0/secrets/env/bulk",
			answer{200, jsonCT, `{"DB_PASSWORD":{"DB_PASSWORD":"s3cret"}}` + "\n"}},
		{"bulk of an empty store", "/v1.0/secrets/recording/bulk", answer{200, jsonCT, "{}\n"}},
		{"bulk nil answer is 204", "/v1.0/secrets/empty/bulk", answer{204, "", ""}},

		// Errors.
		{"unknown store", "/v1.0/secrets/nope/key",
			answer{401, jsonCT, errBody("ERR_SECRET_STORE_NOT_FOUND", "failed finding secret store with key nope")}},
		{"unknown store, bulk", "/v1.0/secrets/nope/bulk",
			answer{401, jsonCT, errBody("ERR_SECRET_STORE_NOT_FOUND", "failed finding secret store with key nope")}},
		{"denied by deniedSecrets", "/v1.0/secrets/file/redisPassword",
			answer{403, jsonCT, errBody("ERR_PERMISSION_DENIED", `access denied by policy to get "redisPassword" from "file"`)}},
		{"denied by allowedSecrets", "/v1.0/secrets/env/ADMIN",
			answer{403, jsonCT, errBody("ERR_PERMISSION_DENIED", `access denied by policy to get "ADMIN" from "env"`)}},
		{"missing key", "/v1.0/secrets/file/missing",
			answer{500, jsonCT, errBody("ERR_SECRET_GET", "failed getting secret with key missing from secret store file: secret missing not found")}},
		{"nested key in multi-valued mode", "/v1.0/secrets/multi/connectionStrings:sql",
			answer{500, jsonCT, errBody("ERR_SECRET_GET", "failed getting secret with key connectionStrings:sql from secret store multi: secret connectionStrings:sql not found")}},
		{"store fails", "/v1.0/secrets/failing/k",
			answer{500, jsonCT, errBody("ERR_SECRET_GET", "failed getting secret with key k from secret store failing: backend down")}},
		{"store fails, bulk", "/v1.0/secrets/failing/bulk",
			answer{500, jsonCT, errBody("ERR_SECRET_GET", "failed getting secrets from secret store failing: backend down")}},

		// Not served here.
		{"no key", "/v1.0/secrets/file", answer{404, "text/plain; charset=utf-8", "404 page not found\n"}},
		{"key with a slash", "/v1.0/secrets/file/a/b", answer{404, "text/plain; charset=utf-8", "404 page not found\n"}},
		{"other API", "/v1.0/state/store/key", answer{404, "text/plain; charset=utf-8", "404 page not found\n"}},
		{"cleaned out of the prefix", "/v1.0/secrets/../state/x", answer{404, "text/plain; charset=utf-8", "404 page not found\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := get(t, srv, http.MethodGet, tt.path, nil); got != tt.want {
				t.Errorf("GET %s\n got %d %q %s\nwant %d %q %s", tt.path, got.status, got.contentType, got.body,
					tt.want.status, tt.want.contentType, tt.want.body)
			}
		})
	}
}

func TestHTTPNotConfigured(t *testing.T) {
	want := answer{500, "application/json", errBody("ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured")}
	fx := newFixture(t)
	for name, api := range map[string]*secrets.API{
		"zero API":            {},
		"Configured is false": {Lookup: fx.api.Lookup, Configured: func() bool { return false }},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(api)
			t.Cleanup(srv.Close)
			for _, p := range []string{"/v1.0/secrets/file/key", "/v1.0/secrets/file/bulk"} {
				if got := get(t, srv, http.MethodGet, p, nil); got != want {
					t.Errorf("GET %s = %+v, want %+v", p, got, want)
				}
			}
		})
	}
}

func TestHTTPMetadataPassedOn(t *testing.T) {
	fx := newFixture(t)
	srv := httptest.NewServer(fx.api)
	t.Cleanup(srv.Close)
	for _, p := range []string{"/v1.0/secrets/recording/k", "/v1.0/secrets/recording/bulk"} {
		get(t, srv, http.MethodGet, p+"?metadata.version_id=2&metadata.version_id=3&metadata.a%20b=c%2Bd&other=x&metadata.=empty", nil)
		got := <-fx.recording.gotMeta
		want := map[string]string{"version_id": "2", "a b": "c+d", "": "empty"}
		if !maps.Equal(got, want) {
			t.Errorf("GET %s: store got metadata %q, want %q", p, got, want)
		}
	}
}

func TestHTTPBody(t *testing.T) {
	fx := newFixture(t)
	srv := httptest.NewServer(fx.api)
	t.Cleanup(srv.Close)

	// A valid body is read and then ignored: the path and query decide.
	got := get(t, srv, http.MethodGet, "/v1.0/secrets/file/a+b",
		strings.NewReader(`{"storeName": "env", "key": "ADMIN", "metadata": {"x": "y"}, "unknownField": 1}`))
	if want := (answer{200, "application/json", `{"a b":"space"}` + "\n"}); got != want {
		t.Errorf("with a valid body: %+v, want %+v", got, want)
	}
	for _, p := range []string{"/v1.0/secrets/file/a+b", "/v1.0/secrets/file/bulk", "/v1.0/secrets/nope/bulk"} {
		for _, body := range []string{`{`, `{"metadata": {"x": 1}}`, `[]`} {
			got := get(t, srv, http.MethodGet, p, strings.NewReader(body))
			var e struct{ ErrorCode, Message string }
			if err := json.Unmarshal([]byte(got.body), &e); err != nil || got.status != 400 ||
				e.ErrorCode != "ERR_MALFORMED_REQUEST" || !strings.HasPrefix(e.Message, "failed deserializing HTTP body: ") {
				t.Errorf("GET %s with body %s = %+v, want 400 ERR_MALFORMED_REQUEST", p, body, got)
			}
		}
	}
}

type brokenBody struct{}

func (brokenBody) Read([]byte) (int, error) { return 0, errors.New("connection reset") }
func (brokenBody) Close() error             { return nil }

func TestHTTPBodyReadError(t *testing.T) {
	// A body that fails mid-read cannot be sent through a real client, so
	// this one path calls ServeHTTP directly.
	fx := newFixture(t)
	for _, p := range []string{"/v1.0/secrets/file/a+b", "/v1.0/secrets/file/bulk"} {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, p, nil)
		r.Body = brokenBody{}
		w := httptest.NewRecorder()
		fx.api.ServeHTTP(w, r)
		want := errBody("ERR_BODY_READ", "failed to read request body: connection reset")
		if w.Code != 400 || w.Body.String() != want {
			t.Errorf("GET %s: %d %s, want 400 %s", p, w.Code, w.Body, want)
		}
	}
}

func TestHTTPFallback(t *testing.T) {
	fx := newFixture(t)
	srv := httptest.NewServer(fx.api)
	t.Cleanup(srv.Close)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead} {
		req, err := http.NewRequestWithContext(t.Context(), m, srv.URL+"/v1.0/secrets/file/bulk", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 405 || res.Header.Get("Allow") != "GET" {
			t.Errorf("%s: %d, Allow %q; want 405, GET", m, res.StatusCode, res.Header.Get("Allow"))
		}
	}

	fx.api.Fallback = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path)
	})
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/v1.0/secrets/file/key"},
		{http.MethodGet, "/v1.0/secrets/file"},
		{http.MethodGet, "/v1.0/invoke/app/method/m"},
	} {
		if got := get(t, srv, c.method, c.path, nil); got.status != http.StatusTeapot || got.body != c.method+" "+c.path {
			t.Errorf("%s %s: %+v, want the fallback", c.method, c.path, got)
		}
	}
}

func TestLogsFailuresAtDebug(t *testing.T) {
	fx := newFixture(t)
	srv := httptest.NewServer(fx.api)
	t.Cleanup(srv.Close)
	get(t, srv, http.MethodGet, "/v1.0/secrets/file/redisPassword", nil)
	get(t, srv, http.MethodGet, "/v1.0/secrets/env/bulk", nil)
	logs := fx.logs.String()
	for _, want := range []string{
		`level=DEBUG msg="secrets: call failed" code=ERR_PERMISSION_DENIED`,
		`level=DEBUG msg="secrets: left out of bulk answer" error="access denied by policy to get \"ADMIN\" from \"env\""`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// daprServer serves the API as part of dapr.proto.runtime.v1.Dapr, as the
// sidecar's assembler will.
type daprServer struct {
	runtimev1pb.UnimplementedDaprServer
	api *secrets.API
}

func (s daprServer) GetSecret(ctx context.Context, in *runtimev1pb.GetSecretRequest) (*runtimev1pb.GetSecretResponse, error) {
	return s.api.GetSecret(ctx, in)
}

func (s daprServer) GetBulkSecret(ctx context.Context, in *runtimev1pb.GetBulkSecretRequest) (*runtimev1pb.GetBulkSecretResponse, error) {
	return s.api.GetBulkSecret(ctx, in)
}

func grpcClient(t *testing.T, api *secrets.API) runtimev1pb.DaprClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	runtimev1pb.RegisterDaprServer(gs, daprServer{api: api})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return runtimev1pb.NewDaprClient(conn)
}

func TestGRPC(t *testing.T) {
	fx := newFixture(t)
	client := grpcClient(t, fx.api)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)

	res, err := client.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "multi", Key: "connectionStrings"})
	if want := map[string]string{"sql": "your sql connection string", "mysql": "your mysql connection string"}; err != nil || !maps.Equal(res.GetData(), want) {
		t.Errorf("GetSecret = %v, %v; want %v", res.GetData(), err, want)
	}
	res, err = client.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "env", Key: "DB_PASSWORD"})
	if err != nil || res.GetData()["DB_PASSWORD"] != "s3cret" {
		t.Errorf("GetSecret(env) = %v, %v", res.GetData(), err)
	}
	res, err = client.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "empty", Key: "k"})
	if err != nil || res.GetData() != nil {
		t.Errorf("GetSecret(nil answer) = %v, %v; want empty", res, err)
	}

	bulk, err := client.GetBulkSecret(ctx, &runtimev1pb.GetBulkSecretRequest{StoreName: "env"})
	if err != nil || len(bulk.GetData()) != 1 || bulk.GetData()["DB_PASSWORD"].GetSecrets()["DB_PASSWORD"] != "s3cret" {
		t.Errorf("GetBulkSecret(env) = %v, %v; want DB_PASSWORD only", bulk.GetData(), err)
	}
	bulk, err = client.GetBulkSecret(ctx, &runtimev1pb.GetBulkSecretRequest{StoreName: "file"})
	if _, denied := bulk.GetData()["redisPassword"]; err != nil || denied || len(bulk.GetData()) != 7 {
		t.Errorf("GetBulkSecret(file) = %d secrets, %v; want 7 without redisPassword", len(bulk.GetData()), err)
	}

	fx.recording.gotMeta = make(chan map[string]string, 1)
	if _, err := client.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "recording", Key: "k", Metadata: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	if got := <-fx.recording.gotMeta; !maps.Equal(got, map[string]string{"a": "b"}) {
		t.Errorf("store got metadata %v", got)
	}

	errs := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown store", func() error {
			_, err := client.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "nope", Key: "k"})
			return err
		}, codes.InvalidArgument, "failed finding secret store with key nope"},
		{"unknown store, bulk", func() error {
			_, err := client.GetBulkSecret(ctx, &runtimev1pb.GetBulkSecretRequest{StoreName: "nope"})
			return err
		}, codes.InvalidArgument, "failed finding secret store with key nope"},
		{"denied", func() error {
			_, err := client.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "env", Key: "ADMIN"})
			return err
		}, codes.PermissionDenied, `access denied by policy to get "ADMIN" from "env"`},
		{"missing key", func() error {
			_, err := client.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "file", Key: "missing"})
			return err
		}, codes.Internal, "failed getting secret with key missing from secret store file: secret missing not found"},
		{"store fails, bulk", func() error {
			_, err := client.GetBulkSecret(ctx, &runtimev1pb.GetBulkSecretRequest{StoreName: "failing"})
			return err
		}, codes.Internal, "failed getting secrets from secret store failing: backend down"},
	}
	for _, e := range errs {
		err := e.call()
		if s, _ := status.FromError(err); status.Code(err) != e.code || s.Message() != e.msg || len(s.Details()) != 0 {
			t.Errorf("%s: %v, want %v %q", e.name, err, e.code, e.msg)
		}
	}

	unconfigured := grpcClient(t, &secrets.API{})
	for _, call := range []func() error{
		func() error {
			_, err := unconfigured.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "file", Key: "k"})
			return err
		},
		func() error {
			_, err := unconfigured.GetBulkSecret(ctx, &runtimev1pb.GetBulkSecretRequest{StoreName: "file"})
			return err
		},
	} {
		err := call()
		if s, _ := status.FromError(err); s.Code() != codes.FailedPrecondition || s.Message() != "secret store is not configured" {
			t.Errorf("not configured: %v, want FailedPrecondition", err)
		}
	}
}

// TestMethodsDirectly covers what a gRPC round trip hides: a nil request
// and nil answers.
func TestMethodsDirectly(t *testing.T) {
	fx := newFixture(t)
	if _, err := fx.api.GetSecret(t.Context(), nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("GetSecret(nil) = %v, want InvalidArgument (no store named \"\")", err)
	}
	res, err := fx.api.GetBulkSecret(t.Context(), &runtimev1pb.GetBulkSecretRequest{StoreName: "empty"})
	if err != nil || res == nil || res.GetData() != nil {
		t.Errorf("GetBulkSecret(nil answer) = %v, %v; want a response with no data", res, err)
	}
	res, err = fx.api.GetBulkSecret(t.Context(), &runtimev1pb.GetBulkSecretRequest{StoreName: "recording"})
	if err != nil || res.GetData() == nil || len(res.GetData()) != 0 {
		t.Errorf("GetBulkSecret(empty answer) = %v, %v; want empty, non-nil data", res, err)
	}
	api := &secrets.API{Lookup: func(string) (secrets.Store, bool) { return nil, true }}
	if _, err := api.GetSecret(t.Context(), &runtimev1pb.GetSecretRequest{StoreName: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("lookup answering a nil store: %v, want InvalidArgument", err)
	}
}

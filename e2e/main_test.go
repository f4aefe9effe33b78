package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/e2e/framework"
)

func TestMain(m *testing.M) {
	if target := os.Getenv(grpcClientEnv); target != "" {
		os.Exit(grpcClientMain(target))
	}
	framework.Main(m)
}

// callTimeout bounds one call in a test; generous for a loaded machine.
const callTimeout = 60 * time.Second

// httpClient is the tests' HTTP client: HTTP/1.1 with keep-alive, no timeout
// of its own (each call has a context deadline), no redirects followed.
var httpClient = &http.Client{
	Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// call makes one HTTP request and returns the response with its whole body.
func call(t *testing.T, method, url string, body io.Reader, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := tryCall(callCtx(t), method, url, body, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp, b
}

func tryCall(ctx context.Context, method, url string, body io.Reader, hdr http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if h := hdr.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, b, err
	}
	return resp, b, nil
}

// echoOf decodes an echo answer of the HTTP app.
func echoOf(t *testing.T, body []byte) framework.Echo {
	t.Helper()
	var e framework.Echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("answer %q is not the app's echo: %v", truncate(body), err)
	}
	return e
}

// daprError is Dapr's error shape on the HTTP API.
type daprError struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// wantDaprError checks that a response is a Dapr error with the given status
// and error code ("" accepts any non-empty code) and returns it.
func wantDaprError(t *testing.T, resp *http.Response, body []byte, status int, code string) daprError {
	t.Helper()
	what := resp.Request.Method + " " + resp.Request.URL.String()
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d (body %q)", what, resp.StatusCode, status, truncate(body))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var e daprError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: body %q is not Dapr's error JSON: %v", what, truncate(body), err)
	}
	if e.ErrorCode == "" || e.Message == "" {
		t.Errorf("%s: error %q lacks errorCode or message", what, truncate(body))
	}
	if code != "" && e.ErrorCode != code {
		t.Errorf("%s: errorCode %q, want %q (message %q)", what, e.ErrorCode, code, e.Message)
	}
	return e
}

func truncate(b []byte) string {
	if len(b) > 512 {
		return string(b[:512]) + "..."
	}
	return string(b)
}

// pair starts a callee sidecar (AppID "callee" unless set; its app is the
// test's) and then a caller sidecar (AppID "caller" unless set) that resolves it.
func pair(t *testing.T, callee, caller framework.SidecarOptions) (*framework.Sidecar, *framework.Sidecar) {
	t.Helper()
	if callee.AppID == "" {
		callee.AppID = "callee"
	}
	if caller.AppID == "" {
		caller.AppID = "caller"
	}
	ce := framework.StartSidecar(t, callee)
	caller.Resolve = append(caller.Resolve, ce.Endpoint())
	cr := framework.StartSidecar(t, caller)
	return ce, cr
}

// wantEchoed invokes the HTTP app's echo through caller and checks it answered,
// proof that the caller sidecar still serves.
func wantEchoed(t *testing.T, caller *framework.Sidecar, appID string) {
	t.Helper()
	resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/"+appID+"/method/echo/still-serving"), strings.NewReader("ping"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sidecar %s no longer serves: POST echo through it: %d %q", caller.AppID, resp.StatusCode, truncate(body))
	}
	if e := echoOf(t, body); e.Body != "ping" || e.Path != "/echo/still-serving" {
		t.Fatalf("sidecar %s no longer serves: echo %+v", caller.AppID, e)
	}
	resp, body = call(t, http.MethodGet, caller.URL("/v1.0/healthz/outbound"), nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sidecar %s: /v1.0/healthz/outbound %d %q, want 204", caller.AppID, resp.StatusCode, truncate(body))
	}
}

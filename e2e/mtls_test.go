package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/e2e/framework"
	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/svid"
)

// workload gets a certificate for appID from cp in the test process, as a
// sidecar would: the identity the test then presents on its own.
func workload(t *testing.T, cp *framework.ControlPlane, appID string) *svid.Manager {
	t.Helper()
	return workloadOf(t, cp, appID, "")
}

// workloadOf is workload in trust domain td ("" is the default).
func workloadOf(t *testing.T, cp *framework.ControlPlane, appID, td string) *svid.Manager {
	t.Helper()
	anchors, err := mtls.ReadCertsPEM(cp.TrustAnchors())
	if err != nil {
		t.Fatal(err)
	}
	id, err := mtls.NewIdentity(td, "", appID)
	if err != nil {
		t.Fatal(err)
	}
	tok := cp.Token(t, appID, "default")
	m, err := svid.New(svid.Options{Identity: id, CAAddress: cp.Addr, TrustAnchors: anchors, Token: func() (string, error) { return tok, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), framework.WaitTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return m
}

// meshClient speaks HTTP/2 over mutual TLS straight to a sidecar's mesh
// port with the workload's certificate, expecting the callee's identity.
func meshClient(m *svid.Manager, calleeAppID string) *http.Client {
	var protos http.Protocols
	protos.SetHTTP2(true)
	return &http.Client{
		Timeout: framework.WaitTimeout,
		Transport: &http.Transport{
			Protocols:       &protos,
			TLSClientConfig: m.ClientConfig(calleeAppID, "default", nil),
		},
	}
}

// metricValue sums the samples of metric name whose labels contain
// labelPart, scraped from sc (inside its network namespace, if it has one).
func metricValue(t *testing.T, sc *framework.Sidecar, name, labelPart string) float64 {
	t.Helper()
	url := "http://127.0.0.1:" + strconv.Itoa(sc.MetricsPort) + "/metrics"
	var body []byte
	if sc.Netns != "" {
		resp, err := framework.HTTPClient(sc.Netns, callTimeout).Get(url)
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("metrics: %d %v", resp.StatusCode, err)
		}
	} else {
		var resp *http.Response
		resp, body = call(t, http.MethodGet, url, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("metrics: %d", resp.StatusCode)
		}
	}
	total := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name) && strings.Contains(line, labelPart) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return total
}

// TestMTLSMesh: two sidecars talk only over mutual TLS, the callee sees the
// caller's proven identity, and plain text or a stranger's certificate is
// refused while legitimate traffic goes on.
func TestMTLSMesh(t *testing.T) {
	t.Parallel()
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{})
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee, caller := pair(t,
		framework.SidecarOptions{AppPort: app.Port, MTLS: cp},
		framework.SidecarOptions{MTLS: cp})

	t.Run("invocation over mTLS carries the proven caller", func(t *testing.T) {
		hdr := http.Header{"Dapr-Caller-App-Id": {"somebody-else"}}
		resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/callee/method/echo/x"), strings.NewReader("hi"), hdr)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %q", resp.StatusCode, truncate(body))
		}
		e := echoOf(t, body)
		if got := http.Header(e.Header).Get("Dapr-Caller-App-Id"); got != "caller" {
			t.Errorf("callee app saw dapr-caller-app-id %q, want the proven caller", got)
		}
	})

	t.Run("plain text is refused", func(t *testing.T) {
		before := metricValue(t, callee, "outrigger_mtls_handshake_failures_total", `reason="plain_text"`)
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		h2c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &protos}}
		resp, err := h2c.Get("http://127.0.0.1:" + strconv.Itoa(callee.InternalPort) + "/echo/plain")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a plain-text h2c call to the mesh port answered %d", resp.StatusCode)
		}
		framework.WaitFor(t, "the refusal to be counted", func() error {
			if v := metricValue(t, callee, "outrigger_mtls_handshake_failures_total", `reason="plain_text"`); v <= before {
				return fmt.Errorf("plain_text refusals %v", v)
			}
			return nil
		})
		// The log line reaches the harness through a pipe: poll for it too.
		framework.WaitFor(t, "a log line for the refused plain-text connection", func() error {
			if !strings.Contains(callee.Logs(), "mesh connection refused: plain text") {
				return errors.New("not logged")
			}
			return nil
		})
	})

	t.Run("spoofed caller header is replaced by the proven identity", func(t *testing.T) {
		m := workload(t, cp, "intruder")
		req, _ := http.NewRequest(http.MethodPost, "https://127.0.0.1:"+strconv.Itoa(callee.InternalPort)+"/echo/spoof", strings.NewReader("x"))
		req.Header.Set("Dapr-Caller-App-Id", "caller")
		req.Header.Set("Dapr-Caller-Namespace", "default")
		resp, err := meshClient(m, "callee").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %q", resp.StatusCode, truncate(body))
		}
		if got := http.Header(echoOf(t, body).Header).Get("Dapr-Caller-App-Id"); got != "intruder" {
			t.Errorf("callee app saw dapr-caller-app-id %q, want the proven identity intruder", got)
		}
	})

	t.Run("the caller checks the callee's identity", func(t *testing.T) {
		m := workload(t, cp, "probe")
		// The callee's sidecar is "callee"; a client that wants "payments" there refuses it.
		_, err := meshClient(m, "payments").Get("https://127.0.0.1:" + strconv.Itoa(callee.InternalPort) + "/echo/x")
		if err == nil || !strings.Contains(err.Error(), "spiffe://public/ns/default/callee") {
			t.Errorf("a client expecting another app accepted the callee: %v", err)
		}
	})

	for _, c := range []struct {
		name string
		opts framework.ControlPlaneOptions
	}{
		{"a foreign CA", framework.ControlPlaneOptions{}},
		{"another trust domain", framework.ControlPlaneOptions{TrustDomain: "example.org"}},
	} {
		t.Run("a sidecar of "+c.name+" is refused", func(t *testing.T) {
			other := framework.StartControlPlane(t, c.opts)
			args := []string{}
			if c.opts.TrustDomain != "" {
				args = append(args, "--trust-domain", c.opts.TrustDomain)
			}
			stranger := framework.StartSidecar(t, framework.SidecarOptions{AppID: "stranger", MTLS: other, Args: args, Resolve: []framework.Endpoint{callee.Endpoint()}})
			// The stranger's sidecar does not trust the callee...
			resp, body := call(t, http.MethodPost, stranger.URL("/v1.0/invoke/callee/method/echo/x"), strings.NewReader("x"), nil)
			wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_DIRECT_INVOKE")
			// ...and the callee refuses the stranger's certificate even from
			// a client that trusts anyone.
			m := workloadOf(t, other, "stranger2", c.opts.TrustDomain)
			cert, err := m.GetX509SVID()
			if err != nil {
				t.Fatal(err)
			}
			before := metricValue(t, callee, "outrigger_mtls_handshake_failures_total", `reason="certificate"`)
			var protos http.Protocols
			protos.SetHTTP2(true)
			reckless := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &protos, TLSClientConfig: &tls.Config{
				InsecureSkipVerify: true, // this client trusts anyone; the callee must not
				Certificates:       []tls.Certificate{*mtls.TLSCertificate(cert)},
			}}}
			if resp, err := reckless.Get("https://127.0.0.1:" + strconv.Itoa(callee.InternalPort) + "/echo/x"); err == nil {
				resp.Body.Close()
				t.Fatalf("the callee answered %d to a certificate of %s", resp.StatusCode, c.name)
			}
			framework.WaitFor(t, "the refusal to be counted", func() error {
				if v := metricValue(t, callee, "outrigger_mtls_handshake_failures_total", `reason="certificate"`); v <= before {
					return fmt.Errorf("certificate refusals %v", v)
				}
				return nil
			})
			wantEchoed(t, caller, "callee")
		})
	}

	t.Run("the app gets its SVID from the Workload API", func(t *testing.T) {
		ctx := callCtx(t)
		svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+callee.WorkloadAPISocket()))
		if err != nil {
			t.Fatal(err)
		}
		if svid.ID.String() != "spiffe://public/ns/default/callee" {
			t.Errorf("Workload API SVID %s, want spiffe://public/ns/default/callee", svid.ID)
		}
		bundles, err := workloadapi.FetchX509Bundles(ctx, workloadapi.WithAddr("unix://"+callee.WorkloadAPISocket()))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x509svid.Verify(svid.Certificates, bundles); err != nil {
			t.Errorf("the SVID does not verify against the served bundle: %v", err)
		}
	})
}

// TestMTLSRefusesAnotherAppsToken: a sidecar with a join token minted for
// another app gets no certificate and stops with a clear message.
func TestMTLSRefusesAnotherAppsToken(t *testing.T) {
	t.Parallel()
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{})
	tok := cp.Token(t, "orders", "default")
	res := framework.RunBinaryEnv(t, []string{"OUTRIGGER_JOIN_TOKEN=" + tok},
		"sidecar", "--app-id", "payments", "--enable-mtls", "--sentry-address", cp.Addr, "--trust-anchors-file", cp.TrustAnchors(),
		"--dapr-http-port", "0", "--dapr-grpc-port", "0", "--dapr-internal-grpc-port", "0", "--metrics-port", "0")
	if res.ExitCode == 0 || !strings.Contains(res.Output, `the join token is for app-id "orders"`) {
		t.Errorf("exit %d, output:\n%s", res.ExitCode, res.Output)
	}
	if !strings.Contains(cp.Logs(), "certificate request refused") {
		t.Error("the control plane did not log the refusal")
	}
}

const ordersPolicy = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: orders-only
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: caller
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /orders/*
        httpVerb: ["POST"]
        action: allow
`

// TestAccessControl: a policy that allows POST /orders/* from one caller
// and denies the rest, enforced on the proven identity, over HTTP and gRPC.
func TestAccessControl(t *testing.T) {
	t.Parallel()
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{})
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	cfg := framework.ShortTempDir(t) + "/config.yaml"
	writeFile(t, cfg, ordersPolicy)
	callee, caller := pair(t,
		framework.SidecarOptions{AppPort: app.Port, MTLS: cp, Args: []string{"--config", cfg}},
		framework.SidecarOptions{MTLS: cp})
	other := framework.StartSidecar(t, framework.SidecarOptions{AppID: "other", MTLS: cp, Resolve: []framework.Endpoint{callee.Endpoint()}})

	for _, c := range []struct {
		via    *framework.Sidecar
		method string
		path   string
		want   int
	}{
		{caller, http.MethodPost, "orders/new", http.StatusOK},
		{caller, http.MethodPost, "orders/42", http.StatusOK},
		{caller, http.MethodGet, "orders/new", http.StatusForbidden},
		{caller, http.MethodPost, "admin/reset", http.StatusForbidden},
		{caller, http.MethodPost, "echo", http.StatusForbidden},
		{other, http.MethodPost, "orders/new", http.StatusForbidden},
	} {
		resp, body := call(t, c.method, c.via.URL("/v1.0/invoke/callee/method/"+c.path), strings.NewReader("{}"), nil)
		if resp.StatusCode != c.want {
			t.Errorf("HTTP %s %s from %s: %d %q, want %d", c.method, c.path, c.via.AppID, resp.StatusCode, truncate(body), c.want)
			continue
		}
		if c.want == http.StatusForbidden {
			e := wantDaprError(t, resp, body, http.StatusForbidden, "ERR_DIRECT_INVOKE")
			if !strings.Contains(e.Message, "access control policy has denied access to id: spiffe://public/ns/default/"+c.via.AppID) {
				t.Errorf("denial message %q", e.Message)
			}
		}
	}

	client, err := dapr.NewClientWithAddress(caller.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.InvokeMethodWithContent(callCtx(t), "callee", "orders/new", "post", &dapr.DataContent{ContentType: "application/json", Data: []byte("{}")}); err != nil {
		t.Errorf("gRPC InvokeService POST orders/new: %v", err)
	}
	for _, c := range []struct{ method, verb string }{{"orders/new", "get"}, {"admin/reset", "post"}} {
		_, err := client.InvokeMethodWithContent(callCtx(t), "callee", c.method, c.verb, &dapr.DataContent{ContentType: "application/json", Data: []byte("{}")})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("gRPC InvokeService %s %s: %v, want PermissionDenied", c.verb, c.method, err)
		}
	}
	if v := metricValue(t, callee, "outrigger_acl_decisions_total", `action="deny"`); v < 5 {
		t.Errorf("deny decisions counted %v, want at least 5", v)
	}
}

// TestAPITokens: DAPR_API_TOKEN guards the API (health exempt) and
// APP_API_TOKEN reaches the app.
func TestAPITokens(t *testing.T) {
	t.Parallel()
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	_, caller := pair(t,
		framework.SidecarOptions{AppPort: app.Port, Env: []string{"APP_API_TOKEN=app-secret"}},
		framework.SidecarOptions{Env: []string{"DAPR_API_TOKEN=api-secret"}})

	resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/callee/method/echo"), strings.NewReader("x"), nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d %q, want 401", resp.StatusCode, truncate(body))
	}
	resp, body = call(t, http.MethodPost, caller.URL("/v1.0/invoke/callee/method/echo"), strings.NewReader("x"), http.Header{"Dapr-Api-Token": {"wrong"}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %d %q, want 401", resp.StatusCode, truncate(body))
	}
	resp, body = call(t, http.MethodPost, caller.URL("/v1.0/invoke/callee/method/echo"), strings.NewReader("x"), http.Header{"Dapr-Api-Token": {"api-secret"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("right token: %d %q", resp.StatusCode, truncate(body))
	}
	if got := http.Header(echoOf(t, body).Header).Get("Dapr-Api-Token"); got != "app-secret" {
		t.Errorf("app saw dapr-api-token %q, want the APP_API_TOKEN app-secret (and never the caller's)", got)
	}
	for _, p := range []string{"/v1.0/healthz", "/v1.0/healthz/outbound"} {
		if resp, _ := call(t, http.MethodGet, caller.URL(p), nil, nil); resp.StatusCode != http.StatusNoContent {
			t.Errorf("GET %s without a token: %d, want 204", p, resp.StatusCode)
		}
	}

	client, err := dapr.NewClientWithAddress(caller.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.InvokeMethod(callCtx(t), "callee", "echo", "post"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC without a token: %v, want Unauthenticated", err)
	}
	client.WithAuthToken("api-secret")
	if _, err := client.InvokeMethod(callCtx(t), "callee", "echo", "post"); err != nil {
		t.Errorf("gRPC with the token: %v", err)
	}
}

// TestMTLSRotationUnderLoad: requests keep flowing with zero failures
// while both sidecars renew short-lived certificates three times, and
// connections made after the rotations verify the new certificates.
func TestMTLSRotationUnderLoad(t *testing.T) {
	t.Parallel()
	const ttl = 4 * time.Second
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{Config: "kind: Configuration\napiVersion: dapr.io/v1alpha1\nspec:\n  mtls:\n    workloadCertTTL: 4s\n    allowedClockSkew: 1s\n"})
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee, caller := pair(t,
		framework.SidecarOptions{AppPort: app.Port, MTLS: cp},
		framework.SidecarOptions{MTLS: cp})

	probe := workload(t, cp, "probe")
	serial := func() string {
		// A fresh connection each time: the certificate the callee offers now.
		c := meshClient(probe, "callee")
		resp, err := c.Get("https://127.0.0.1:" + strconv.Itoa(callee.InternalPort) + "/echo/probe")
		if err != nil {
			return "error: " + err.Error()
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	ctx, stop := context.WithTimeout(context.Background(), 2*time.Minute)
	defer stop()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 100000; i++ {
				body := fmt.Sprintf("w%d-%d", w, i)
				resp, got, err := tryCall(ctx, http.MethodPost, caller.URL("/v1.0/invoke/callee/method/echo/load"), strings.NewReader(body), nil)
				if ctx.Err() != nil {
					return
				}
				if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(got), body) {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %v %q", err, resp, truncate(got)))
					continue
				}
				ok.Add(1)
			}
		})
	}

	seen := map[string]bool{}
	var probeErrs []string
	deadline := time.Now().Add(90 * time.Second)
	for len(seen) < 4 && time.Now().Before(deadline) {
		if s := serial(); strings.HasPrefix(s, "error") {
			probeErrs = append(probeErrs, s)
		} else {
			seen[s] = true
		}
		time.Sleep(ttl / 8)
	}
	stop()
	wg.Wait()
	if len(probeErrs) > 0 {
		t.Errorf("%d fresh connections to the callee failed; first: %s", len(probeErrs), probeErrs[0])
	}
	if len(seen) < 4 {
		t.Errorf("the callee offered %d distinct certificates, want the first and three renewals", len(seen))
	}
	renewals := strings.Count(callee.Logs(), "certificate renewed") + strings.Count(caller.Logs(), "certificate renewed")
	t.Logf("%d requests, %d failed, %d certificates seen, %d renewals logged", ok.Load(), failed.Load(), len(seen), renewals)
	if failed.Load() != 0 {
		t.Errorf("%d requests failed across the rotations; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Error("no request succeeded")
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

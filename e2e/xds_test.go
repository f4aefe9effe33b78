package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestXDSComponents: sidecars started with only --control-plane-address
// (and their trust anchors and token) take their components from the
// control plane over ADS; a change to the control plane's folder reaches
// them without a restart and with no failed request; a broken file keeps
// its last good version; a component a sidecar cannot load is NACKed and
// the old one keeps serving; the sidecars serve on while the control plane
// is down.
func TestXDSComponents(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	resources := filepath.Join(dir, "resources")
	if err := os.Mkdir(resources, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "one.json"), `{"api": "k1"}`)
	writeFile(t, filepath.Join(dir, "two.json"), `{"api": "k2"}`)
	writeFile(t, filepath.Join(resources, "vault.yaml"), fileStore("vault", filepath.Join(dir, "one.json")))
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{ResourcesPaths: []string{resources}})
	var sidecars []*framework.Sidecar
	for _, app := range []string{"xa", "xb", "xc"} {
		sidecars = append(sidecars, framework.StartSidecar(t, framework.SidecarOptions{
			AppID: app, MTLS: cp, Args: []string{"--control-plane-address", cp.Addr},
		}))
	}
	for _, sc := range sidecars {
		if code, m, body := secretOf(t, sc, "vault", "api"); code != http.StatusOK || m["api"] != "k1" {
			t.Fatalf("%s: %d %q", sc.AppID, code, body)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var firstFail atomic.Value
	var wg sync.WaitGroup
	for _, sc := range sidecars {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 100000; i++ {
				resp, b, err := tryCall(ctx, http.MethodGet, sc.URL("/v1.0/secrets/vault/api"), nil, nil)
				if ctx.Err() != nil {
					return
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstFail.CompareAndSwap(nil, fmt.Sprintf("%s: %v %v %s", sc.AppID, err, resp, b))
					continue
				}
				ok.Add(1)
			}
		})
	}
	waitAll := func(what, want string) {
		t.Helper()
		for _, sc := range sidecars {
			framework.WaitFor(t, sc.AppID+": "+what, func() error {
				if _, m, body := secretOf(t, sc, "vault", "api"); m["api"] != want {
					return fmt.Errorf("still %q", body)
				}
				return nil
			})
		}
	}

	// A change on the control plane reaches every sidecar.
	writeFile(t, filepath.Join(resources, "vault.yaml"), fileStore("vault", filepath.Join(dir, "two.json")))
	waitAll("the changed component", "k2")

	// A broken file: the control plane keeps its last good version.
	writeFile(t, filepath.Join(resources, "vault.yaml"), "kind: Component\nmetadata:\n  name: vault\nspec:\n  type: secretstores.local.file\n")
	framework.WaitFor(t, "the control plane to reject the broken file", func() error {
		if !strings.Contains(cp.Logs(), "vault.yaml:4") {
			return fmt.Errorf("no error naming vault.yaml:4")
		}
		return nil
	})

	// A component the sidecars cannot load: NACKed, the old one serves on.
	writeFile(t, filepath.Join(resources, "vault.yaml"), fileStore("vault", filepath.Join(dir, "missing.json")))
	framework.WaitFor(t, "the NACK to reach the control plane", func() error {
		if !strings.Contains(cp.Logs(), "NACK") {
			return fmt.Errorf("no NACK logged by the control plane")
		}
		return nil
	})
	for _, sc := range sidecars {
		if _, m, body := secretOf(t, sc, "vault", "api"); m["api"] != "k2" {
			t.Errorf("%s: the last good component stopped serving: %q", sc.AppID, body)
		}
	}
	// The control plane shows which sidecar refused what, and why.
	refusals := func() (map[string]string, error) {
		resp, err := http.Get("http://" + cp.Addr + "/xds/status")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var status struct {
			Streams []struct {
				Node    string `json:"node"`
				Refused []struct {
					TypeURL string `json:"typeUrl"`
					Reason  string `json:"reason"`
				} `json:"refused"`
			} `json:"streams"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
			return nil, err
		}
		out := map[string]string{}
		for _, st := range status.Streams {
			for _, r := range st.Refused {
				out[st.Node] += r.TypeURL + ": " + r.Reason
			}
		}
		return out, nil
	}
	framework.WaitFor(t, "the control plane's status to show every sidecar's NACK", func() error {
		got, err := refusals()
		if err != nil {
			return err
		}
		for _, sc := range sidecars {
			node := "spiffe://public/ns/default/" + sc.AppID
			if r := got[node]; !strings.Contains(r, "TypedExtensionConfig") || !strings.Contains(r, "vault") {
				return fmt.Errorf("%s: refused %q", node, r)
			}
		}
		return nil
	})
	writeFile(t, filepath.Join(resources, "vault.yaml"), fileStore("vault", filepath.Join(dir, "one.json")))
	waitAll("the fixed component", "k1")
	framework.WaitFor(t, "the refusals to clear once the sidecars ACK the fix", func() error {
		got, err := refusals()
		if err != nil {
			return err
		}
		if len(got) != 0 {
			return fmt.Errorf("still refused: %v", got)
		}
		return nil
	})

	// The control plane dies; the sidecars serve on, and reconverge on
	// what changed meanwhile once it is back.
	cp.Kill(t)
	for _, sc := range sidecars {
		if _, m, body := secretOf(t, sc, "vault", "api"); m["api"] != "k1" {
			t.Errorf("%s with the control plane down: %q", sc.AppID, body)
		}
	}
	writeFile(t, filepath.Join(resources, "vault.yaml"), fileStore("vault", filepath.Join(dir, "two.json")))
	cp.Restart(t)
	waitAll("reconvergence after the control plane's restart", "k2")
	stop()
	wg.Wait()
	t.Logf("%d requests across the changes, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed; first: %v", failed.Load(), firstFail.Load())
	}
}

// TestXDSEndpoints: with the control plane's name resolution, a sidecar
// finds another through the endpoints the control plane serves (EDS,
// subscribed on the first call), and an app nobody runs is daprd's
// ERR_DIRECT_INVOKE at once.
func TestXDSEndpoints(t *testing.T) {
	t.Parallel()
	resources := framework.ShortTempDir(t)
	// The caller's routes, over ADS, carry a timeout for calls to the callee.
	writeFile(t, filepath.Join(resources, "resiliency.yaml"), strings.NewReplacer("scopes: [caller]", "scopes: [eds-caller]", "callee:", "eds-callee:").Replace(calleeTimeout))
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{ResourcesPaths: []string{resources}})
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	viaCP := []string{"--control-plane-address", cp.Addr, "--name-resolution", "registry"}
	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "eds-callee", AppPort: app.Port, MTLS: cp, Args: viaCP})
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "eds-caller", MTLS: cp, Args: viaCP})
	framework.WaitFor(t, "the callee to be reachable through the control plane's endpoints", func() error {
		resp, body, err := tryCall(callCtx(t), http.MethodPost, caller.URL("/v1.0/invoke/eds-callee/method/echo/x"), strings.NewReader("hi"), nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
	// Routes arrive on their own stream type, perhaps just after the
	// components the sidecar waited for at start.
	framework.WaitFor(t, "the route's timeout from the control plane to bound a slow call", func() error {
		resp, body, err := tryCall(callCtx(t), http.MethodPost, caller.URL("/v1.0/invoke/eds-callee/method/slow?hold=3s"), nil, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "deadline") {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
	resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/nobody/method/x"), strings.NewReader("hi"), nil)
	e := wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_DIRECT_INVOKE")
	if !strings.Contains(e.Message, "has no live instance") {
		t.Errorf("unknown app: %q", e.Message)
	}
	if strings.Contains(cp.Logs(), "registry: instance registered") && strings.Contains(callee.Logs(), "registered with the control plane") {
		t.Error("the callee registered over the registry's plain HTTP; with xDS it registers over its stream")
	}

	// A sidecar that stops leaves with its stream.
	if resp, _ := call(t, http.MethodPost, callee.URL("/v1.0/shutdown"), nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("shutdown: %d", resp.StatusCode)
	}
	callee.WaitExit(t)
	framework.WaitFor(t, "the stopped callee to leave the control plane's endpoints", func() error {
		resp, body, err := tryCall(callCtx(t), http.MethodPost, caller.URL("/v1.0/invoke/eds-callee/method/echo/x"), strings.NewReader("hi"), nil)
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusOK || !strings.Contains(string(body), "has no live instance") {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
}

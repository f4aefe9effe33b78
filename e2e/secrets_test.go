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

	dapr "github.com/dapr/go-sdk/client"

	"github.com/outrigger/outrigger/e2e/framework"
)

func fileStore(name, file string) string {
	return fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - name: secretsFile
    value: %s
  - name: nestedSeparator
    value: "."
`, name, file)
}

func secretOf(t *testing.T, sc *framework.Sidecar, store, key string) (int, map[string]string, string) {
	t.Helper()
	resp, body := call(t, http.MethodGet, sc.URL("/v1.0/secrets/"+store+"/"+key), nil, nil)
	var m map[string]string
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("answer %q: %v", body, err)
		}
	}
	return resp.StatusCode, m, string(body)
}

// TestSecretsHotReload: a secret store from --resources-path serves Dapr's
// secrets API (HTTP and the Go SDK); changing, adding, breaking and removing
// its component file takes effect without a restart, with no failed request
// while a store stays defined.
func TestSecretsHotReload(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	resources := filepath.Join(dir, "resources")
	if err := os.Mkdir(resources, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "one.json"), `{"db": {"password": "one"}, "api": "k1"}`)
	writeFile(t, filepath.Join(dir, "two.json"), `{"db": {"password": "two"}, "api": "k2"}`)
	writeFile(t, filepath.Join(resources, "secrets.yaml"), fileStore("vault", filepath.Join(dir, "one.json")))
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "reader", Args: []string{"--resources-path", resources}})

	code, m, body := secretOf(t, sc, "vault", "db.password")
	if code != http.StatusOK || m["db.password"] != "one" {
		t.Fatalf("GET secret: %d %q", code, body)
	}
	client, err := dapr.NewClientWithAddress(sc.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	got, err := client.GetSecret(callCtx(t), "vault", "api", nil)
	if err != nil || got["api"] != "k1" {
		t.Fatalf("SDK GetSecret: %v %v", got, err)
	}
	bulk, err := client.GetBulkSecret(callCtx(t), "vault", nil)
	if err != nil || bulk["db.password"]["db.password"] != "one" {
		t.Fatalf("SDK GetBulkSecret: %v %v", bulk, err)
	}

	// Requests run throughout; none may fail while the store stays defined.
	ctx, stop := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var firstFail atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 100000; i++ {
				resp, b, err := tryCall(ctx, http.MethodGet, sc.URL("/v1.0/secrets/vault/api"), nil, nil)
				if ctx.Err() != nil {
					return
				}
				if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"api":"k`) {
					failed.Add(1)
					firstFail.CompareAndSwap(nil, fmt.Sprintf("%v %v %s", err, resp, b))
					continue
				}
				ok.Add(1)
			}
		})
	}

	// Changed: the component now points at another file.
	writeFile(t, filepath.Join(resources, "secrets.yaml"), fileStore("vault", filepath.Join(dir, "two.json")))
	framework.WaitFor(t, "the changed component to serve", func() error {
		if _, m, body := secretOf(t, sc, "vault", "db.password"); m["db.password"] != "two" {
			return fmt.Errorf("still %q", body)
		}
		return nil
	})
	// Broken: the last good version keeps serving, and the log says why.
	writeFile(t, filepath.Join(resources, "secrets.yaml"), "kind: Component\nmetadata:\n  name: vault\nspec:\n  type: secretstores.local.file\n")
	framework.WaitFor(t, "the broken file to be reported", func() error {
		if !strings.Contains(sc.Logs(), "secrets.yaml:4") {
			return fmt.Errorf("no error naming secrets.yaml:4 in the log")
		}
		return nil
	})
	if _, m, body := secretOf(t, sc, "vault", "db.password"); m["db.password"] != "two" {
		t.Errorf("the last good version stopped serving: %q", body)
	}
	// Added: a second store in a new file.
	writeFile(t, filepath.Join(resources, "more.yaml"), fileStore("vault2", filepath.Join(dir, "one.json")))
	framework.WaitFor(t, "the added component to serve", func() error {
		if code, _, body := secretOf(t, sc, "vault2", "api"); code != http.StatusOK {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
	stop()
	wg.Wait()
	t.Logf("%d requests during the changes, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed while the store stayed defined; first: %v", failed.Load(), firstFail.Load())
	}
	// Removed: daprd's answer for an unknown store.
	if err := os.Remove(filepath.Join(resources, "more.yaml")); err != nil {
		t.Fatal(err)
	}
	framework.WaitFor(t, "the removed component to go", func() error {
		code, _, body := secretOf(t, sc, "vault2", "api")
		if code != http.StatusUnauthorized || !strings.Contains(body, "ERR_SECRET_STORE_NOT_FOUND") {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
}

// TestComponentsFailTheStart: a component that cannot load stops the
// sidecar at start with a message naming the file, unless it sets
// spec.ignoreErrors.
func TestComponentsFailTheStart(t *testing.T) {
	t.Parallel()
	dir := framework.ShortTempDir(t)
	writeFile(t, filepath.Join(dir, "bad.yaml"), fileStore("vault", filepath.Join(dir, "missing.json")))
	res := framework.RunBinary(t, "sidecar", "--app-id", "x", "--resources-path", dir,
		"--dapr-http-port", "0", "--dapr-grpc-port", "0", "--dapr-internal-grpc-port", "0", "--metrics-port", "0")
	if res.ExitCode == 0 || !strings.Contains(res.Output, filepath.Join(dir, "bad.yaml")) || !strings.Contains(res.Output, `component "vault"`) {
		t.Errorf("exit %d, output:\n%s", res.ExitCode, res.Output)
	}
	writeFile(t, filepath.Join(dir, "bad.yaml"), strings.Replace(fileStore("vault", filepath.Join(dir, "missing.json")), "  version: v1\n", "  version: v1\n  ignoreErrors: true\n", 1))
	writeFile(t, filepath.Join(dir, "unknown.yaml"), "kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.nosuch\n  version: v1\n  ignoreErrors: true\n")
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "tolerant", Args: []string{"--resources-path", dir}})
	if code, _, body := secretOf(t, sc, "vault", "x"); code != http.StatusInternalServerError || !strings.Contains(body, "ERR_SECRET_STORES_NOT_CONFIGURED") {
		t.Errorf("with the only store ignored: %d %q", code, body)
	}
}

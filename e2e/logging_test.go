package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestLogsJSONAndNoSecrets: with --log-as-json, --log-level debug and
// --enable-api-logging, every line the sidecars write is a JSON object
// naming its app-id, component lines name the component, API calls are
// logged, and neither the API token, the app token, a secret the app read
// nor a component's credential appears anywhere in the logs.
func TestLogsJSONAndNoSecrets(t *testing.T) {
	t.Parallel()
	const (
		apiToken  = "api-token-7f3c9e21"
		appToken  = "app-token-5d8a0b44"
		secret    = "db-secret-c41e9a07"
		redisPass = "redis-credential-e07b5f19"
	)
	dir := framework.ShortTempDir(t)
	secretsFile := filepath.Join(dir, "secrets.json")
	if err := os.WriteFile(secretsFile, []byte(`{"db":{"password":"`+secret+`"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	res := stateStores(t, fileStore("vault", secretsFile),
		// A component whose credential is wrong: its failure is logged, the
		// credential is not.
		"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: guarded\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n  - name: redisPassword\n    value: "+redisPass+"\n")
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	logArgs := []string{"--log-as-json", "--log-level", "debug", "--enable-api-logging", "--resources-path", res}
	callee, caller := pair(t,
		framework.SidecarOptions{AppID: "log-callee", AppPort: app.Port, Env: []string{"APP_API_TOKEN=" + appToken}, Args: logArgs},
		framework.SidecarOptions{AppID: "log-caller", Env: []string{"DAPR_API_TOKEN=" + apiToken}, Args: logArgs})
	hdr := http.Header{"Dapr-Api-Token": {apiToken}}

	resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/log-callee/method/echo"), strings.NewReader("x"), hdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %d %s", resp.StatusCode, truncate(body))
	}
	resp, body = call(t, http.MethodGet, caller.URL("/v1.0/secrets/vault/db.password"), nil, hdr)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), secret) {
		t.Fatalf("secret: %d %s", resp.StatusCode, truncate(body))
	}
	// A refused call (wrong token) and a call to the store that cannot log in.
	call(t, http.MethodGet, caller.URL("/v1.0/secrets/vault/db.password"), nil, http.Header{"Dapr-Api-Token": {"wrong"}})
	call(t, http.MethodGet, caller.URL("/v1.0/state/guarded/k"), nil, hdr)

	framework.WaitFor(t, "the API calls to be logged", func() error {
		if !strings.Contains(caller.Logs(), "/v1.0/secrets/vault/db.password") {
			return errorString("no API log line for the secret call")
		}
		if !strings.Contains(caller.Logs(), "guarded") {
			return errorString("nothing logged of the store that cannot log in")
		}
		return nil
	})
	for _, sc := range []*framework.Sidecar{caller, callee} {
		logs := sc.Logs()
		components := 0
		sn := bufio.NewScanner(strings.NewReader(logs))
		sn.Buffer(make([]byte, 1<<20), 1<<20)
		for sn.Scan() {
			line := sn.Text()
			if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "$ ") {
				continue // the harness's own line: the command
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Errorf("%s: a log line is not JSON: %q", sc.AppID, line)
				continue
			}
			for _, key := range []string{`"app_id":`, `"component":`} {
				if strings.Count(line, key) > 1 {
					t.Errorf("%s: a log line has %s twice: %q", sc.AppID, key, line)
				}
			}
			if m["app_id"] != sc.AppID {
				t.Errorf("%s: a log line does not name the app-id: %q", sc.AppID, line)
			}
			if _, ok := m["component"]; ok {
				components++
			}
		}
		if components == 0 {
			t.Errorf("%s: no log line names a component", sc.AppID)
		}
		for what, s := range map[string]string{"the API token": apiToken, "the app token": appToken, "a secret's value": secret, "a component's password": redisPass} {
			if strings.Contains(logs, s) {
				t.Errorf("%s's log holds %s", sc.AppID, what)
			}
		}
		if strings.Contains(logs, "PRIVATE KEY") {
			t.Errorf("%s's log holds a private key", sc.AppID)
		}
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

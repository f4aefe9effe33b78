package secrets_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/building-blocks/secrets/localfile"
)

// TestMetricsDaprNames: each call of the secrets API to a measured store is
// one operation under daprd's name and labels; a key the store does not
// hold fails; a call the scopes deny never reaches the store and is not
// counted.
func TestMetricsDaprNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(path, []byte(secretsJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	store, _, err := localfile.New(map[string]string{"secretsFile": path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	policy, err := secrets.Scopes{{StoreName: "vault", DeniedSecrets: []string{"redisPassword"}}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	m := secrets.NewMetrics("app", "ns")
	measured := secrets.WithMetrics(store, "vault", m)
	api := &secrets.API{
		Lookup: func(name string) (secrets.Store, bool) { return measured, name == "vault" },
		Policy: policy,
	}
	ctx := t.Context()
	for range 2 {
		if _, err := api.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "vault", Key: "html"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := api.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "vault", Key: "nope"}); err == nil {
		t.Fatal("a missing key answered")
	}
	if _, err := api.GetSecret(ctx, &runtimev1pb.GetSecretRequest{StoreName: "vault", Key: "redisPassword"}); err == nil {
		t.Fatal("a denied key answered")
	}
	if _, err := api.GetBulkSecret(ctx, &runtimev1pb.GetBulkSecretRequest{StoreName: "vault"}); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	want := `# HELP dapr_component_secret_count The number of operations performed on the secret component.
# TYPE dapr_component_secret_count counter
dapr_component_secret_count{app_id="app",component="vault",namespace="ns",operation="bulk_get",success="true"} 1
dapr_component_secret_count{app_id="app",component="vault",namespace="ns",operation="get",success="false"} 1
dapr_component_secret_count{app_id="app",component="vault",namespace="ns",operation="get",success="true"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "dapr_component_secret_count"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "dapr_component_secret_latencies"); err != nil || n != 3 {
		t.Errorf("dapr_component_secret_latencies: %d series (%v), want 3", n, err)
	}
}

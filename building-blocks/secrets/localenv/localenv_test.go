package localenv_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/building-blocks/secrets/localenv"
	"github.com/outrigger/outrigger/building-blocks/secrets/secretstest"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

var prefixes atomic.Int64

// TestConformance runs the suite with a fresh prefix per store, so each
// store sees only the variables set for it.
func TestConformance(t *testing.T) {
	secretstest.Run(t, func(t *testing.T, sec map[string]string) secrets.Store {
		prefix := fmt.Sprintf("SECRETSTEST_%d_", prefixes.Add(1))
		for k, v := range sec {
			t.Setenv(prefix+k, v)
		}
		s, unknown, err := localenv.New(map[string]string{"prefix": prefix})
		if err != nil || len(unknown) != 0 {
			t.Fatalf("New: %v (unknown %q)", err, unknown)
		}
		return s
	}, secretstest.Options{MissingKeyEmpty: true})
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", localenv.Type, localenv.Metadata{})
}

func TestNew(t *testing.T) {
	s, unknown, err := localenv.New(map[string]string{"Prefix": "APP_", "extra": "1", "another": "2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"another", "extra"}; !slices.Equal(unknown, want) {
		t.Errorf("unknown = %q, want %q", unknown, want)
	}
	t.Setenv("APP_NAME", "v")
	got, err := s.GetSecret(t.Context(), "NAME", nil)
	if err != nil || !maps.Equal(got, map[string]string{"NAME": "v"}) {
		t.Errorf(`GetSecret("NAME") = %q, %v`, got, err)
	}

	for _, prefix := range []string{"A=B", "A\x00"} {
		_, _, err := localenv.New(map[string]string{"prefix": prefix})
		if err == nil || !strings.HasPrefix(err.Error(), "secrets/localenv: metadata prefix") {
			t.Errorf("New(prefix %q): %v, want a metadata prefix error", prefix, err)
		}
	}
	if _, _, err := localenv.New(map[string]string{"prefix": "A", "PREFIX": "B"}); err == nil {
		t.Error("New with prefix twice: no error")
	}
}

// TestDaprBehaviour pins what Dapr 1.18's local.env tests pin.
func TestDaprBehaviour(t *testing.T) {
	t.Setenv("TEST_SECRET", "secret1")
	t.Setenv("test_secret2", "test2")
	t.Setenv("APP_API_TOKEN", "ciao")
	t.Setenv("DAPR_API_TOKEN", "mondo")
	t.Setenv("dapr_notallowed", "notallowed")
	t.Setenv("OUTRIGGER_JOIN_TOKEN", "join")
	t.Setenv("outrigger_lower", "x")
	t.Setenv("FOO", "bar")
	t.Setenv("TEST_", "exactly the prefix")

	plain, _, err := localenv.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(s *localenv.Store, key string) string {
		t.Helper()
		got, err := s.GetSecret(t.Context(), key, nil)
		if err != nil || len(got) != 1 {
			t.Fatalf("GetSecret(%q) = %q, %v", key, got, err)
		}
		v, ok := got[key]
		if !ok {
			t.Fatalf("GetSecret(%q) = %q: no entry for the key", key, got)
		}
		return v
	}
	if v := get(plain, "TEST_SECRET"); v != "secret1" {
		t.Errorf("TEST_SECRET = %q", v)
	}
	if v := get(plain, "test_secret"); v != "" {
		t.Errorf("test_secret = %q, want empty: names are case-sensitive", v)
	}
	if v := get(plain, "NOT_SET_ANYWHERE"); v != "" {
		t.Errorf("unset variable = %q, want empty", v)
	}
	withheld := []string{"APP_API_TOKEN", "app_api_token", "DAPR_API_TOKEN", "dapr_notallowed", "DAPR_NOTALLOWED", "OUTRIGGER_JOIN_TOKEN", "outrigger_lower"}
	for _, k := range withheld {
		if v := get(plain, k); v != "" {
			t.Errorf("withheld %s = %q, want empty", k, v)
		}
	}
	bulk, err := plain.BulkGetSecret(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bulk["FOO"]["FOO"] != "bar" || bulk["TEST_SECRET"]["TEST_SECRET"] != "secret1" {
		t.Errorf("bulk lacks FOO or TEST_SECRET: %q %q", bulk["FOO"], bulk["TEST_SECRET"])
	}
	for k := range bulk {
		up := strings.ToUpper(k)
		if up == "APP_API_TOKEN" || strings.HasPrefix(up, "DAPR_") || strings.HasPrefix(up, "OUTRIGGER_") {
			t.Errorf("bulk hands out %s", k)
		}
	}

	prefixed, _, err := localenv.New(map[string]string{"prefix": "TEST_"})
	if err != nil {
		t.Fatal(err)
	}
	if v := get(prefixed, "SECRET"); v != "secret1" {
		t.Errorf("prefixed SECRET = %q", v)
	}
	bulk, err = prefixed.BulkGetSecret(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// test_secret2 differs in case from the prefix, and TEST_ is the prefix
	// alone: neither is in.
	if want := map[string]map[string]string{"SECRET": {"SECRET": "secret1"}}; !equalBulk(bulk, want) {
		t.Errorf("prefixed bulk = %q, want %q", bulk, want)
	}

	// The prefix does not open the sidecar's own variables.
	for _, prefix := range []string{"DAPR_", "dapr_", "OUTRIGGER_"} {
		s, _, err := localenv.New(map[string]string{"prefix": prefix})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"API_TOKEN", "JOIN_TOKEN", "notallowed"} {
			if v := get(s, k); v != "" {
				t.Errorf("prefix %s: %s = %q, want empty", prefix, k, v)
			}
		}
		bulk, err := s.BulkGetSecret(t.Context(), nil)
		if err != nil || len(bulk) != 0 {
			t.Errorf("prefix %s: bulk = %q, %v; want empty", prefix, bulk, err)
		}
	}
	if err := plain.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func equalBulk(a, b map[string]map[string]string) bool {
	return maps.EqualFunc(a, b, func(x, y map[string]string) bool { return maps.Equal(x, y) })
}

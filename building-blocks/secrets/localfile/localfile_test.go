package localfile_test

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/building-blocks/secrets/localfile"
	"github.com/outrigger/outrigger/building-blocks/secrets/secretstest"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

// writeFile writes content to a secrets file in a fresh directory.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func open(t *testing.T, content string, meta map[string]string) *localfile.Store {
	t.Helper()
	m := map[string]string{"secretsFile": writeFile(t, content)}
	maps.Copy(m, meta)
	s, unknown, err := localfile.New(m)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if len(unknown) != 0 {
		t.Fatalf("New: unknown %q", unknown)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	for _, multi := range []string{"false", "true"} {
		t.Run("multiValued="+multi, func(t *testing.T) {
			secretstest.Run(t, func(t *testing.T, sec map[string]string) secrets.Store {
				data, err := json.Marshal(sec)
				if err != nil {
					t.Fatal(err)
				}
				s, _, err := localfile.New(map[string]string{"secretsFile": writeFile(t, string(data)), "multiValued": multi})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}, secretstest.Options{})
		})
	}
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", localfile.Type, localfile.Metadata{})
}

const docsExample = `{
    "redisPassword": "your redis password",
    "connectionStrings": {
        "sql": "your sql connection string",
        "mysql": "your mysql connection string"
    }
}`

func bulk(t *testing.T, s *localfile.Store) map[string]map[string]string {
	t.Helper()
	got, err := s.BulkGetSecret(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func single(kv ...string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = map[string]string{kv[i]: kv[i+1]}
	}
	return out
}

func equalBulk(a, b map[string]map[string]string) bool {
	return maps.EqualFunc(a, b, func(x, y map[string]string) bool { return maps.Equal(x, y) })
}

// TestFlatten pins the name/value semantics of Dapr's docs and tests.
func TestFlatten(t *testing.T) {
	tests := []struct {
		name string
		file string
		meta map[string]string
		want map[string]map[string]string
	}{
		{"docs example", docsExample, nil, single(
			"redisPassword", "your redis password",
			"connectionStrings:sql", "your sql connection string",
			"connectionStrings:mysql", "your mysql connection string")},
		{"custom separator", `{"root": {"key1": "value1", "key2": "value2"}}`, map[string]string{"nestedSeparator": "."},
			single("root.key1", "value1", "root.key2", "value2")},
		{"multi-character separator", `{"a": {"b": {"c": "x"}}}`, map[string]string{"nestedSeparator": "::"},
			single("a::b::c", "x")},
		{"empty separator means the default", `{"a": {"b": "x"}}`, map[string]string{"nestedSeparator": ""},
			single("a:b", "x")},
		{"arrays by index", `{"hosts": ["h0", {"name": "h1"}], "deep": [["x"]]}`, nil,
			single("hosts:0", "h0", "hosts:1:name", "h1", "deep:0:0", "x")},
		{"numbers keep their text, bools and null read plainly", `{"n": 42, "f": 1.50, "e": 1e3, "big": 12345678901234567890, "t": true, "no": false, "z": null}`, nil,
			single("n", "42", "f", "1.50", "e", "1e3", "big", "12345678901234567890", "t", "true", "no", "false", "z", "")},
		{"empty objects and arrays hold nothing", `{"a": {}, "b": [], "c": "x"}`, nil, single("c", "x")},
		{"empty key", `{"": {"a": "x"}, "b": {"": "y"}}`, nil, single(":a", "x", "b:", "y")},
		{"null file", `null`, nil, map[string]map[string]string{}},
		{"empty object", ` {} `, nil, map[string]map[string]string{}},
		{"later duplicate JSON key wins, as in encoding/json", `{"a": "1", "a": "2"}`, nil, single("a", "2")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, tt.file, tt.meta)
			if got := bulk(t, s); !equalBulk(got, tt.want) {
				t.Errorf("bulk = %q\nwant %q", got, tt.want)
			}
			for k, v := range tt.want {
				got, err := s.GetSecret(t.Context(), k, nil)
				if err != nil || !maps.Equal(got, v) {
					t.Errorf("GetSecret(%q) = %q, %v; want %q", k, got, err, v)
				}
			}
		})
	}
}

func TestDocsExampleNestedKeyNotFound(t *testing.T) {
	s := open(t, docsExample, nil)
	_, err := s.GetSecret(t.Context(), "connectionStrings", nil)
	if !errors.Is(err, secrets.ErrNotFound) || err.Error() != "secret connectionStrings not found" {
		t.Errorf("GetSecret(connectionStrings) = %v; want Dapr's %q, matching ErrNotFound", err, "secret connectionStrings not found")
	}
}

// TestMultiValued pins Dapr's multiValued semantics (its
// TestMultiValuedSecrets and the docs).
func TestMultiValued(t *testing.T) {
	multi := map[string]string{"multiValued": "true"}
	s := open(t, `{
		"parent": {"child1": "12345", "child2": {"child3": "67890", "child4": "00000"}},
		"plain": "p"
	}`, multi)
	want := map[string]map[string]string{
		"parent": {"child1": "12345", "child2:child3": "67890", "child2:child4": "00000"},
		"plain":  {"plain": "p"},
	}
	if got := bulk(t, s); !equalBulk(got, want) {
		t.Errorf("bulk = %q\nwant %q", got, want)
	}
	got, err := s.GetSecret(t.Context(), "parent", nil)
	if err != nil || !maps.Equal(got, want["parent"]) {
		t.Errorf("GetSecret(parent) = %q, %v", got, err)
	}
	if _, err := s.GetSecret(t.Context(), "parent:child1", nil); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("GetSecret(parent:child1) in multiValued mode: %v, want ErrNotFound", err)
	}

	docs := open(t, docsExample, multi)
	got, err = docs.GetSecret(t.Context(), "connectionStrings", nil)
	if w := map[string]string{"sql": "your sql connection string", "mysql": "your mysql connection string"}; err != nil || !maps.Equal(got, w) {
		t.Errorf("docs: GetSecret(connectionStrings) = %q, %v; want %q", got, err, w)
	}

	// Where Dapr drops top-level values that are neither strings nor
	// objects, they are secrets here.
	odd := open(t, `{"n": 7, "b": true, "z": null, "list": ["a", {"k": "v"}], "empty": {}, "sep": {"x": {"y": "1"}}}`,
		map[string]string{"multiValued": "yes", "nestedSeparator": "/"})
	want = map[string]map[string]string{
		"n":     {"n": "7"},
		"b":     {"b": "true"},
		"z":     {"z": ""},
		"list":  {"0": "a", "1/k": "v"},
		"empty": {},
		"sep":   {"x/y": "1"},
	}
	if got := bulk(t, odd); !equalBulk(got, want) {
		t.Errorf("bulk = %q\nwant %q", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.json")
	tests := []struct {
		name string
		meta map[string]string
		file string // written to secretsFile when meta has none
		want string
	}{
		{"no secretsFile", map[string]string{"nestedSeparator": ":"}, "", "secrets/localfile: metadata secretsFile: required"},
		{"empty secretsFile", map[string]string{"secretsFile": ""}, "", "secrets/localfile: metadata secretsFile: required"},
		{"bad multiValued", map[string]string{"multiValued": "maybe"}, `{}`, `secrets/localfile: metadata multiValued "maybe": want true or false`},
		{"missing file", map[string]string{"secretsFile": missing}, "", "secrets/localfile: metadata secretsFile: open " + missing + ": no such file or directory"},
		{"a directory", map[string]string{"secretsFile": dir}, "", "secrets/localfile: metadata secretsFile: read " + dir},
		{"not JSON", nil, `{"a": `, "not JSON: unexpected EOF"},
		{"trailing data", nil, `{"a": "b"} {}`, "not JSON: data after the top-level value"},
		{"top-level array", nil, `["a"]`, "want a JSON object at the top level, found an array"},
		{"top-level string", nil, `"a"`, "found a string"},
		{"top-level number", nil, `1`, "found a number"},
		{"top-level bool", nil, `true`, "found a bool"},
		{"empty file", nil, ``, "not JSON: EOF"},
		{"flattened names collide", nil, `{"a:b": "1", "a": {"b": "2"}}`, `two values are named "a:b" once nested keys are joined with ":"`},
		{"collide through arrays", nil, `{"a": ["x"], "a:0": "y"}`, `two values are named "a:0"`},
		{"collide in a multi-valued secret", map[string]string{"multiValued": "true"}, `{"s": {"a.b": "1", "a": {"b": "2"}}}`, ``},
		{"collide in a multi-valued secret, separator", map[string]string{"multiValued": "true", "nestedSeparator": "."}, `{"s": {"a.b": "1", "a": {"b": "2"}}}`, `secret "s": two values are named "a.b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := maps.Clone(tt.meta)
			if m == nil {
				m = map[string]string{}
			}
			if _, ok := m["secretsFile"]; !ok && tt.file != "" || tt.meta == nil {
				m["secretsFile"] = writeFile(t, tt.file)
			}
			s, _, err := localfile.New(m)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New: store %v, want an error containing %q", s, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "secrets/localfile: ") {
				t.Errorf("New: %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestRelativePath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s.json"), []byte(`{"k": "v"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	s, unknown, err := localfile.New(map[string]string{"secretsFile": "s.json", "version": "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unknown, []string{"version"}) {
		t.Errorf("unknown = %q", unknown)
	}
	// The file was read at New: moving away changes nothing.
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)
	got, err := s.GetSecret(t.Context(), "k", nil)
	if err != nil || got["k"] != "v" {
		t.Errorf("GetSecret = %q, %v", got, err)
	}
	// Errors name the absolute path.
	_, _, err = localfile.New(map[string]string{"secretsFile": "gone.json"})
	if want := filepath.Join(elsewhere, "gone.json"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("New(relative, missing): %v, want it to name %s", err, want)
	}
}

func TestValidate(t *testing.T) {
	err := (&localfile.Metadata{}).Validate()
	for _, want := range []string{"metadata secretsFile: required", "metadata nestedSeparator: must not be empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(zero) = %v, want it to contain %q", err, want)
		}
	}
	if err := (&localfile.Metadata{SecretsFile: "s.json", NestedSeparator: "."}).Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

package secrets_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/outrigger/outrigger/building-blocks/secrets"
)

func TestPolicyAllowed(t *testing.T) {
	// Dapr's TestIsSecretAllowed cases, plus stores with no scope and the
	// allow-and-deny quirk.
	tests := []struct {
		name  string
		scope secrets.Scope
		key   string
		want  bool
	}{
		{"default deny, empty key", secrets.Scope{DefaultAccess: "DeNy"}, "", false},
		{"default allow, empty key", secrets.Scope{DefaultAccess: "AllOw"}, "", true},
		{"no default access allows", secrets.Scope{}, "random", true},
		{"default deny", secrets.Scope{DefaultAccess: "deny"}, "random", false},
		{"default deny, allowed key", secrets.Scope{DefaultAccess: "deny", AllowedSecrets: []string{"key1"}}, "key1", true},
		{"default allow, key not in allowed list", secrets.Scope{DefaultAccess: "allow", AllowedSecrets: []string{"key1"}}, "key2", false},
		{"default allow, denied key", secrets.Scope{DefaultAccess: "allow", DeniedSecrets: []string{"key1"}}, "key1", false},
		{"default allow, other key than denied", secrets.Scope{DeniedSecrets: []string{"key1"}}, "key2", true},
		{"default deny, denied list does not open others", secrets.Scope{DefaultAccess: "deny", DeniedSecrets: []string{"key1"}}, "key2", false},
		{"allowed list wins over denied list (Dapr quirk)", secrets.Scope{AllowedSecrets: []string{"k"}, DeniedSecrets: []string{"k"}}, "k", true},
		{"empty allowed list counts as none", secrets.Scope{DefaultAccess: "deny", AllowedSecrets: []string{}}, "k", false},
		{"keys compare case-sensitively", secrets.Scope{AllowedSecrets: []string{"Key"}}, "key", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.scope.StoreName = "store"
			p, err := secrets.Scopes{tt.scope}.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Allowed("store", tt.key); got != tt.want {
				t.Errorf("Allowed(store, %q) = %v, want %v", tt.key, got, tt.want)
			}
			if !p.Allowed("other-store", tt.key) {
				t.Errorf("a store with no scope denied %q", tt.key)
			}
		})
	}
}

func TestNilPolicyAllows(t *testing.T) {
	p, err := secrets.Scopes(nil).Compile()
	if err != nil || p != nil {
		t.Fatalf("Compile(nil) = %v, %v; want nil, nil", p, err)
	}
	if !p.Allowed("any", "key") {
		t.Error("nil policy denied")
	}
}

func TestScopesYAML(t *testing.T) {
	const doc = `
scopes:
  - storeName: vault
    defaultAccess: deny
    allowedSecrets: ["db-password", "api-key"]
  - storeName: env
    deniedSecrets: [PATH]
`
	var spec struct {
		Scopes secrets.Scopes `yaml:"scopes"`
	}
	if err := yaml.Unmarshal([]byte(doc), &spec); err != nil {
		t.Fatal(err)
	}
	p, err := spec.Scopes.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		store, key string
		want       bool
	}{
		{"vault", "db-password", true},
		{"vault", "root-token", false},
		{"env", "PATH", false},
		{"env", "HOME", true},
		{"file", "anything", true},
	} {
		if got := p.Allowed(c.store, c.key); got != c.want {
			t.Errorf("Allowed(%s, %s) = %v, want %v", c.store, c.key, got, c.want)
		}
	}
}

func TestScopesCompileErrors(t *testing.T) {
	scopes := secrets.Scopes{
		{StoreName: "a", DefaultAccess: "maybe"},
		{StoreName: ""},
		{StoreName: "a"},
		{StoreName: "b", DefaultAccess: "DENY"},
	}
	p, err := scopes.Compile()
	if err == nil {
		t.Fatalf("Compile = %v, want errors", p)
	}
	for _, want := range []string{
		`secrets.scopes[0].defaultAccess: "maybe": want allow or deny`,
		`secrets.scopes[1].storeName: required`,
		`secrets.scopes[2].storeName: "a" is already scoped by secrets.scopes[0]`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "scopes[3]") {
		t.Errorf("error %q names a valid scope", err)
	}
}

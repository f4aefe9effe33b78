package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const twoComponents = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: secrets
  namespace: prod
spec:
  type: secretstores.local.file
  version: v1
  initTimeout: 5s
  ignoreErrors: true
  metadata:
  - name: secretsFile
    value: ./secrets.json
  - name: nestedSeparator
    value: ":"
  - name: retries
    value: 3
  - name: table
    value:
      a: 1
      b: [x, y]
scopes:
- orders
- payments
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisPassword
    secretKeyRef:
      name: redis
      key: password
  - name: redisHost
    envRef: REDIS_HOST
  - name: keyPrefix
    secretKeyRef:
      name: prefix
auth:
  secretStore: secrets
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: myresiliency
scopes: [orders]
spec:
  policies:
    timeouts:
      general: 5s
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders-sub
spec:
  topic: orders
  pubsubname: pubsub
  routes:
    default: /orders
`

func TestParseResources(t *testing.T) {
	res, err := ParseResources("components.yaml", []byte(twoComponents))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Components) != 2 || len(res.Resiliencies) != 1 || len(res.Subscriptions) != 1 {
		t.Fatalf("got %d components, %d resiliencies, %d subscriptions", len(res.Components), len(res.Resiliencies), len(res.Subscriptions))
	}
	c := res.Components[0]
	if c.Name != "secrets" || c.Namespace != "prod" || c.Type != "secretstores.local.file" || c.Version != "v1" ||
		c.InitTimeout != 5*time.Second || !c.IgnoreErrors || strings.Join(c.Scopes, ",") != "orders,payments" {
		t.Errorf("first component %+v", c)
	}
	if c.Source.Line != 1 || res.Components[1].Source.Line != 26 {
		t.Errorf("sources %v %v", c.Source, res.Components[1].Source)
	}
	want := map[string]string{"secretsFile": "./secrets.json", "nestedSeparator": ":", "retries": "3", "table": `{"a":1,"b":["x","y"]}`}
	for _, m := range c.Metadata {
		if m.Value != want[m.Name] {
			t.Errorf("metadata %s = %q, want %q", m.Name, m.Value, want[m.Name])
		}
	}
	s := res.Components[1]
	if s.SecretStore != "secrets" {
		t.Errorf("auth.secretStore %q", s.SecretStore)
	}
	if r := s.Metadata[0].SecretKeyRef; r == nil || r.Name != "redis" || r.Key != "password" {
		t.Errorf("secretKeyRef %+v", r)
	}
	if s.Metadata[1].EnvRef != "REDIS_HOST" {
		t.Errorf("envRef %q", s.Metadata[1].EnvRef)
	}
	if r := s.Metadata[2].SecretKeyRef; r == nil || r.Key != "prefix" {
		t.Errorf("a secretKeyRef without key reads the secret's name as key: %+v", r)
	}
	if d := res.Resiliencies[0]; d.Name != "myresiliency" || !strings.Contains(string(d.JSON), `"general":"5s"`) || d.Scopes[0] != "orders" {
		t.Errorf("resiliency %+v %s", d, d.JSON)
	}
}

func TestParseResourcesErrorsNameFileLineAndField(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"kind: Component\nmetadata:\n  name: x\nspec:\n  version: v1\n", `f.yaml:4: component "x": spec.type: required`},
		{"kind: Component\nmetadata:\n  name: x\nspec:\n  type: state.redis\n", `component "x": spec.version: required`},
		{"kind: Component\nspec:\n  type: a\n  version: v1\n", `f.yaml:1: component "": metadata.name: required`},
		{"kind: Component\nmetadata:\n  name: x\nspec:\n  type: a\n  version: v1\n  initTimeout: soon\n", `f.yaml:7: component "x": spec.initTimeout: "soon"`},
		{"kind: Component\nmetadata:\n  name: x\nspec:\n  type: a\n  version: v1\n  metadata:\n  - value: 1\n", `f.yaml:8: component "x": spec.metadata[0]: name is required`},
		{"kind: Component\nmetadata:\n  name: x\nspec:\n  type: a\n  version: v1\n  metadata:\n  - name: a\n    value: 1\n    envRef: B\n", `spec.metadata[0]: "a": give one of value, secretKeyRef and envRef`},
		{"kind: Component\nmetadata:\n  name: x\nspec:\n  type: a\n  version: v1\n  metadata:\n  - name: a\n    value: 1\n  - name: A\n    value: 2\n", `spec.metadata[1].name: "A" appears twice`},
		{"kind: Component\nmetadata:\n  name: x\nspec:\n  type: a\n  version: v1\nscopes: orders\n", `scopes: want a list`},
		{"kind: HTTPEndpoint\nmetadata:\n  name: x\n", `kind: "HTTPEndpoint" is not supported`},
		{"metadata:\n  name: x\n", `kind: missing`},
		{"kind: [\n", `f.yaml: not YAML`},
		{"apiVersion: v9\nkind: Component\nmetadata:\n  name: x\nspec:\n  type: a\n  version: v1\n", `f.yaml:1: component "x": apiVersion: "v9"`},
		{"kind: Configuration\nmetadata:\n  name: c\nspec:\n  mtls:\n    workloadCertTTL: x\n", `configuration "c": spec.mtls.workloadCertTTL`},
	} {
		_, err := ParseResources("f.yaml", []byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.doc, err, c.want)
		}
	}
}

func TestLoadResourcesKeepsGoodFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "kind: Component\nmetadata:\n  name: good\nspec:\n  type: a\n  version: v1\n")
	write("b.yml", "kind: Component\nmetadata:\n  name: bad\nspec:\n  type: a\n")
	write("notes.txt", "not yaml at all: [")
	res, err := LoadResources([]string{dir})
	if err == nil || !strings.Contains(err.Error(), "b.yml:4") {
		t.Errorf("error %v, want one naming b.yml", err)
	}
	if len(res.Components) != 1 || res.Components[0].Name != "good" {
		t.Errorf("components %+v, want the good file's", res.Components)
	}
	if _, err := LoadResources([]string{filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing folder loaded")
	}
}

func TestApplies(t *testing.T) {
	if !Applies(nil, "a") || !Applies([]string{"a", "b"}, "b") || Applies([]string{"a"}, "c") {
		t.Error("scopes")
	}
}

// FuzzParseResources: any bytes parse or fail with an error, never a panic,
// and what parses has its required fields.
func FuzzParseResources(f *testing.F) {
	f.Add([]byte(twoComponents))
	f.Add([]byte("kind: Component\n---\n---\nkind: Configuration\n"))
	f.Add([]byte("kind: Component\nmetadata: {name: x}\nspec: {type: a, version: v1, metadata: [{name: a, value: {b: [1, {c: d}]}}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ParseResources("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, c := range res.Components {
			if c.Name == "" || c.Type == "" || c.Version == "" {
				t.Fatalf("component without its required fields: %+v", c)
			}
		}
	})
}

func TestResourceWatcherKeepsLastGoodPerFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	comp := func(name, value string) string {
		return "kind: Component\nmetadata:\n  name: " + name + "\nspec:\n  type: a.b\n  version: v1\n  metadata:\n  - name: k\n    value: " + value + "\n"
	}
	write("a.yaml", comp("a", "1"))
	w, res, err := NewResourceWatcher([]string{dir})
	if err != nil || len(res.Components) != 1 {
		t.Fatalf("start: %v %+v", err, res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan *Resources, 16)
	errs := make(chan error, 16)
	go func() {
		_ = w.Run(ctx, func(r *Resources, err error) {
			if err != nil {
				errs <- err
			}
			if r != nil {
				updates <- r
			}
		})
	}()
	next := func(what string, ok func(*Resources) bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case r := <-updates:
				if ok(r) {
					return
				}
			case <-deadline:
				t.Fatalf("no update where %s", what)
			}
		}
	}
	write("b.yaml", comp("b", "2"))
	next("b is added", func(r *Resources) bool { return len(r.Components) == 2 })
	write("a.yaml", "kind: Component\nmetadata:\n  name: a\nspec:\n  type: a.b\n") // broken
	next("a keeps its last good version", func(r *Resources) bool {
		return len(r.Components) == 2 && r.Components[0].Metadata[0].Value == "1"
	})
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "a.yaml:4") {
			t.Errorf("error %v, want one naming a.yaml:4", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("no error for the broken file")
	}
	write("a.yaml", comp("a", "3"))
	next("a's fix is read", func(r *Resources) bool {
		return len(r.Components) == 2 && r.Components[0].Metadata[0].Value == "3"
	})
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	next("b is removed", func(r *Resources) bool { return len(r.Components) == 1 })
}

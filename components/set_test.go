package components

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outrigger/outrigger/config"
)

// kv is a tiny component type for these tests: it remembers its metadata
// and whether it was closed. A "fail" key makes construction fail.
type kv struct {
	meta   map[string]string
	closed atomic.Bool
}

func (k *kv) Close() error { k.closed.Store(true); return nil }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func registry(t *testing.T) *Registry {
	t.Helper()
	r := NewRegistry()
	newKV := func(_ context.Context, meta map[string]string) (io.Closer, []string, error) {
		if meta["fail"] != "" {
			return nil, nil, errors.New("told to fail")
		}
		var unknown []string
		if _, ok := meta["bogus"]; ok {
			unknown = append(unknown, "bogus")
		}
		return &kv{meta: meta}, unknown, nil
	}
	for _, name := range []string{"state.kv", "secretstores.kv"} {
		if err := r.Register(Type{Name: name, New: newKV}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Register(Type{Name: "state.kv", New: newKV}); err == nil {
		t.Error("registered a type twice")
	}
	return r
}

func parse(t *testing.T, text string) []config.Component {
	t.Helper()
	res, err := config.ParseResources("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return res.Components
}

const base = `kind: Component
metadata: {name: secrets}
spec: {type: secretstores.kv, version: v1, metadata: [{name: password, value: s3cret}]}
---
kind: Component
metadata: {name: store}
spec: {type: state.kv, version: v1, metadata: [{name: host, envRef: KV_HOST}, {name: pass, secretKeyRef: {name: db, key: password}}]}
auth: {secretStore: secrets}
---
kind: Component
metadata: {name: other-app}
spec: {type: state.kv, version: v1}
scopes: [someone-else]
---
kind: Component
metadata: {name: other-ns, namespace: prod}
spec: {type: state.kv, version: v1}
`

func newSet(t *testing.T) *Set {
	return NewSet(Options{
		AppID: "me", Namespace: "default", Registry: registry(t), Logger: quiet,
		Getenv: func(k string) string { return map[string]string{"KV_HOST": "db.local"}[k] },
		Secret: func(_ context.Context, store io.Closer, name, key string) (string, error) {
			return store.(*kv).meta[key] + "/" + name, nil
		},
	})
}

func TestApplyBuildsResolvesAndScopes(t *testing.T) {
	s := newSet(t)
	if err := s.Apply(context.Background(), parse(t, base)); err != nil {
		t.Fatal(err)
	}
	if n := len(s.List("")); n != 2 {
		t.Fatalf("%d live components, want 2 (scopes and namespace leave two out)", n)
	}
	c, ok := s.Get("store")
	if !ok {
		t.Fatal("store not loaded")
	}
	meta := c.Instance.(*kv).meta
	if meta["host"] != "db.local" || meta["pass"] != "s3cret/db" {
		t.Errorf("resolved metadata %v", meta)
	}
	if got := s.List("secretstores"); len(got) != 1 || got[0].Doc.Name != "secrets" {
		t.Errorf("secret stores %v", got)
	}
}

func TestApplyUpdatesRemovesAndKeepsLastGood(t *testing.T) {
	s := newSet(t)
	ctx := context.Background()
	if err := s.Apply(ctx, parse(t, base)); err != nil {
		t.Fatal(err)
	}
	first, _ := s.Get("secrets")
	// The same documents again (new parse, new lines): nothing is rebuilt.
	if err := s.Apply(ctx, parse(t, "\n\n"+base)); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Get("secrets"); again != first {
		t.Error("an unchanged component was rebuilt")
	}
	// A change that fails keeps the last good version, and says why.
	broken := strings.Replace(base, "{name: password, value: s3cret}", "{name: fail, value: yes}", 1)
	err := s.Apply(ctx, parse(t, broken))
	if err == nil || !strings.Contains(err.Error(), `component "secrets"`) || !strings.Contains(err.Error(), "told to fail") {
		t.Errorf("failed update: %v", err)
	}
	if kept, _ := s.Get("secrets"); kept != first {
		t.Error("the last good version was not kept")
	}
	// A real change replaces it; removal drops it.
	changed := strings.Replace(base, "s3cret", "n3w", 1)
	if err := s.Apply(ctx, parse(t, changed)); err != nil {
		t.Fatal(err)
	}
	if now, _ := s.Get("secrets"); now == first || now.Instance.(*kv).meta["password"] != "n3w" {
		t.Error("a changed component was not rebuilt")
	}
	if err := s.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("store"); ok {
		t.Error("a removed component is still live")
	}
}

func TestColdStartFailsUnlessIgnoreErrors(t *testing.T) {
	bad := "kind: Component\nmetadata: {name: x}\nspec: {type: state.kv, version: v1, metadata: [{name: fail, value: yes}]}\n"
	if err := newSet(t).Apply(context.Background(), parse(t, bad)); err == nil {
		t.Error("a failing component did not fail the start")
	}
	ignored := "kind: Component\nmetadata: {name: x}\nspec: {type: state.kv, version: v1, ignoreErrors: true, metadata: [{name: fail, value: yes}]}\n"
	if err := newSet(t).Apply(context.Background(), parse(t, ignored)); err != nil {
		t.Errorf("ignoreErrors: %v", err)
	}
	unknown := "kind: Component\nmetadata: {name: x}\nspec: {type: state.nope, version: v1}\n"
	err := newSet(t).Apply(context.Background(), parse(t, unknown))
	if !errors.Is(err, ErrUnknownType) || !strings.Contains(err.Error(), "test.yaml:1") {
		t.Errorf("unknown type: %v", err)
	}
	noStore := "kind: Component\nmetadata: {name: x}\nspec: {type: state.kv, version: v1, metadata: [{name: p, secretKeyRef: {name: a}}]}\n"
	if err := newSet(t).Apply(context.Background(), parse(t, noStore)); err == nil || !strings.Contains(err.Error(), "auth.secretStore") {
		t.Errorf("secretKeyRef without a store: %v", err)
	}
	badVersion := "kind: Component\nmetadata: {name: x}\nspec: {type: state.kv, version: v9}\n"
	if err := newSet(t).Apply(context.Background(), parse(t, badVersion)); err == nil || !strings.Contains(err.Error(), `no version "v9"`) {
		t.Errorf("unknown version: %v", err)
	}
}

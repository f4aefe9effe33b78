// Package secretstest is the conformance suite of the secrets building
// block: Run checks that a secrets.Store behaves as the secrets API relies
// on. Every backend runs it from its own tests, against a real instance.
package secretstest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/building-blocks/secrets"
)

// Factory returns a new store holding exactly the given secrets, each a
// single value: GetSecret(name) must answer {name: value}. Names are letters,
// digits and underscores, in either case; values may be empty and hold any
// text but NUL, newlines and 4 KiB runs included. The store must not
// see secrets of other calls. Run closes the store; the factory registers any
// other cleanup with t.
type Factory func(t *testing.T, secrets map[string]string) secrets.Store

// Options describes what a backend is allowed to do differently.
type Options struct {
	// MissingKeyEmpty is set for a store that answers a key it does not hold
	// with {key: ""} instead of an error matching secrets.ErrNotFound, as
	// Dapr's local.env does.
	MissingKeyEmpty bool
}

// sample is the secret set most checks store.
var sample = map[string]string{
	"SECRET_ONE":  "value-one",
	"db_password": "p@ss w=rd;\"quoted\"",
	"Mixed_Case9": "línea 1\nline 2 ☃",
	"EMPTY":       "",
	"BIG":         strings.Repeat("0123456789abcdef", 256),
}

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore Factory, opts Options) {
	t.Helper()
	open := func(t *testing.T, s map[string]string) secrets.Store {
		t.Helper()
		st := newStore(t, s)
		if st == nil {
			t.Fatal("factory returned a nil store")
		}
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return st
	}
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("GetSecret", func(t *testing.T) {
		st := open(t, sample)
		for name, value := range sample {
			got, err := st.GetSecret(ctx(t), name, nil)
			if err != nil {
				t.Errorf("GetSecret(%q): %v", name, err)
				continue
			}
			if want := map[string]string{name: value}; !maps.Equal(got, want) {
				t.Errorf("GetSecret(%q) = %q, want %q", name, got, want)
			}
		}
	})

	t.Run("MissingKey", func(t *testing.T) {
		st := open(t, sample)
		keys := []string{"NO_SUCH_SECRET", "SECRET_ONE_", "SECRET"}
		if runtime.GOOS != "windows" { // environment names fold case there
			keys = append(keys, "secret_one")
		}
		for _, key := range keys {
			got, err := st.GetSecret(ctx(t), key, nil)
			if opts.MissingKeyEmpty {
				if want := map[string]string{key: ""}; err != nil || !maps.Equal(got, want) {
					t.Errorf("GetSecret(%q) = %q, %v; want %q, nil", key, got, err, want)
				}
				continue
			}
			if !errors.Is(err, secrets.ErrNotFound) {
				t.Errorf("GetSecret(%q) = %q, %v; want an error matching ErrNotFound", key, got, err)
			}
		}
	})

	t.Run("BulkGetSecret", func(t *testing.T) {
		st := open(t, sample)
		got, err := st.BulkGetSecret(ctx(t), nil)
		if err != nil {
			t.Fatalf("BulkGetSecret: %v", err)
		}
		want := make(map[string]map[string]string, len(sample))
		for k, v := range sample {
			want[k] = map[string]string{k: v}
		}
		if d := diffBulk(got, want); d != "" {
			t.Errorf("BulkGetSecret: %s", d)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		st := open(t, nil)
		got, err := st.BulkGetSecret(ctx(t), nil)
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("BulkGetSecret of an empty store = %v (nil: %v), %v; want an empty non-nil map", got, got == nil, err)
		}
		if !opts.MissingKeyEmpty {
			if _, err := st.GetSecret(ctx(t), "SECRET_ONE", nil); !errors.Is(err, secrets.ErrNotFound) {
				t.Errorf("GetSecret on an empty store: %v, want ErrNotFound", err)
			}
		}
	})

	t.Run("Isolated", func(t *testing.T) {
		a := open(t, map[string]string{"ONLY_A": "a"})
		b := open(t, map[string]string{"ONLY_B": "b"})
		for _, c := range []struct {
			st   secrets.Store
			want map[string]map[string]string
		}{
			{a, map[string]map[string]string{"ONLY_A": {"ONLY_A": "a"}}},
			{b, map[string]map[string]string{"ONLY_B": {"ONLY_B": "b"}}},
		} {
			got, err := c.st.BulkGetSecret(ctx(t), nil)
			if err != nil {
				t.Fatalf("BulkGetSecret: %v", err)
			}
			if d := diffBulk(got, c.want); d != "" {
				t.Errorf("BulkGetSecret: %s", d)
			}
		}
	})

	t.Run("MetadataPassedThrough", func(t *testing.T) {
		// Stores ignore metadata they do not understand.
		st := open(t, sample)
		md := map[string]string{"namespace": "default", "version_id": "2", "": "x"}
		got, err := st.GetSecret(ctx(t), "SECRET_ONE", md)
		if err != nil || !maps.Equal(got, map[string]string{"SECRET_ONE": "value-one"}) {
			t.Errorf("GetSecret with metadata = %q, %v", got, err)
		}
		if _, err := st.BulkGetSecret(ctx(t), md); err != nil {
			t.Errorf("BulkGetSecret with metadata: %v", err)
		}
		if md["namespace"] != "default" || len(md) != 3 {
			t.Errorf("the store changed the caller's metadata: %v", md)
		}
	})

	t.Run("CallerOwnsResults", func(t *testing.T) {
		st := open(t, sample)
		got, err := st.GetSecret(ctx(t), "SECRET_ONE", nil)
		if err != nil {
			t.Fatal(err)
		}
		got["SECRET_ONE"] = "changed"
		got["INJECTED"] = "x"
		bulk, err := st.BulkGetSecret(ctx(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		bulk["SECRET_ONE"]["SECRET_ONE"] = "changed"
		delete(bulk, "EMPTY")
		again, err := st.GetSecret(ctx(t), "SECRET_ONE", nil)
		if err != nil || !maps.Equal(again, map[string]string{"SECRET_ONE": "value-one"}) {
			t.Errorf("after changing an answer, GetSecret = %q, %v", again, err)
		}
		bulk2, err := st.BulkGetSecret(ctx(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := bulk2["EMPTY"]; !ok {
			t.Error("after deleting EMPTY from a bulk answer, BulkGetSecret lacks it")
		}
		if got := bulk2["SECRET_ONE"]; !maps.Equal(got, map[string]string{"SECRET_ONE": "value-one"}) {
			t.Errorf("after changing a bulk answer, BulkGetSecret has SECRET_ONE = %q", got)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		st := open(t, sample)
		c := ctx(t)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 16 {
			wg.Go(func() {
				for range 20 {
					if i%2 == 0 {
						got, err := st.GetSecret(c, "db_password", nil)
						if err != nil || got["db_password"] != sample["db_password"] {
							errs <- fmt.Errorf("GetSecret = %q, %v", got, err)
							return
						}
						continue
					}
					got, err := st.BulkGetSecret(c, nil)
					if err != nil || len(got) != len(sample) {
						errs <- fmt.Errorf("BulkGetSecret = %d secrets, %v", len(got), err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// diffBulk describes how got differs from want, or returns "".
func diffBulk(got, want map[string]map[string]string) string {
	var b strings.Builder
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			fmt.Fprintf(&b, "\n  missing %q", k)
		case !maps.Equal(g, w):
			fmt.Fprintf(&b, "\n  %q = %q, want %q", k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "\n  unexpected %q", k)
		}
	}
	return b.String()
}

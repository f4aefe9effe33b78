// Package localenv is the secretstores.local.env secret store: secrets are
// the sidecar's environment variables, read on every call. It behaves as
// Dapr 1.18's local.env store, including its one surprise: a variable that
// is not set reads as an empty value, not as an error. The sidecar's own
// variables (DAPR_*, APP_API_TOKEN and, in Outrigger, OUTRIGGER_*) are never
// handed out.
package localenv

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this store implements, version v1.
const Type = "secretstores.local.env"

// Metadata is the store's component metadata.
type Metadata struct {
	// Prefix, when set, limits the store to variables whose names start with
	// it; secret names are the variable names without it. Matching is
	// case-sensitive, except on Windows where it is not.
	Prefix string `meta:"prefix"`
}

// Validate checks m.
func (m *Metadata) Validate() error {
	if strings.ContainsAny(m.Prefix, "=\x00") {
		return fmt.Errorf("metadata prefix %q: must not contain = or NUL", m.Prefix)
	}
	return nil
}

// Store reads secrets from the process environment. It is safe for
// concurrent use.
type Store struct {
	prefix string
}

var _ secrets.Store = (*Store)(nil)

// New builds a store from its component metadata. unknown lists the metadata
// keys the store does not read, for the caller to warn about.
func New(meta map[string]string) (s *Store, unknown []string, err error) {
	var m Metadata
	unknown, err = metadata.Decode(meta, &m)
	if err == nil {
		err = m.Validate()
	}
	if err != nil {
		return nil, unknown, fmt.Errorf("secrets/localenv: %w", err)
	}
	return &Store{prefix: m.Prefix}, unknown, nil
}

// GetSecret returns {key: value} for the variable prefix+key. A variable
// that is not set, or that the store never hands out, reads as {key: ""},
// as in Dapr; GetSecret never returns ErrNotFound.
func (s *Store) GetSecret(_ context.Context, key string, _ map[string]string) (map[string]string, error) {
	name := s.prefix + key
	var v string
	if allowed(name) {
		v = os.Getenv(name)
	}
	return map[string]string{key: v}, nil
}

// BulkGetSecret returns {name: {name: value}} for every variable carrying the
// prefix (all of them when there is none) that the store hands out, names
// without the prefix. A variable named exactly the prefix is left out, as in
// Dapr.
func (s *Store) BulkGetSecret(_ context.Context, _ map[string]string) (map[string]map[string]string, error) {
	env := os.Environ()
	out := make(map[string]map[string]string, len(env))
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		if s.prefix != "" && (len(name) <= len(s.prefix) || !hasPrefix(name, s.prefix)) {
			continue
		}
		if !allowed(name) {
			continue
		}
		key := name[len(s.prefix):]
		out[key] = map[string]string{key: value}
	}
	return out, nil
}

// Close does nothing.
func (s *Store) Close() error { return nil }

// hasPrefix matches the prefix as the operating system matches names.
func hasPrefix(name, prefix string) bool {
	if runtime.GOOS == "windows" {
		return strings.EqualFold(name[:len(prefix)], prefix)
	}
	return strings.HasPrefix(name, prefix)
}

// allowed reports whether the variable name may be handed out: not the
// sidecar's own. Dapr withholds APP_API_TOKEN and DAPR_*; Outrigger also
// withholds OUTRIGGER_*, its own settings (OUTRIGGER_JOIN_TOKEN among them).
// Names compare case-insensitively.
func allowed(name string) bool {
	n := strings.ToUpper(name)
	return n != "APP_API_TOKEN" && !strings.HasPrefix(n, "DAPR_") && !strings.HasPrefix(n, "OUTRIGGER_")
}

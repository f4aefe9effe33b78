// Package localfile is the secretstores.local.file secret store: secrets
// read once, at New, from a JSON file. It behaves as Dapr 1.18's local.file
// store:
//
//   - By default every leaf of the JSON document is one secret, named by the
//     path of keys leading to it joined with nestedSeparator (":"); array
//     elements are named by their index. {"db": {"user": "u"}, "hosts":
//     ["a"]} holds "db:user" and "hosts:0", and GetSecret("db:user") returns
//     {"db:user": "u"}.
//   - With multiValued, each top-level key is one secret. A string is
//     {key: value}; an object is its leaves, flattened the same way below
//     it: {"db": {"user": "u", "tls": {"ca": "c"}}} makes GetSecret("db")
//     return {"user": "u", "tls:ca": "c"}.
//
// Where Dapr's store misbehaves, this one does not, and says so at New
// rather than at a call: numbers keep their JSON text ("42", not
// "%!s(float64=42)"), true and false read as such and null as ""; a
// top-level number, bool, null or array in multiValued mode becomes a
// secret like any other (Dapr drops it); and two leaves that flatten to the
// same name (such as "a:b" beside {"a": {"b": ...}}) fail New, where Dapr
// silently stops reading the file at a random point.
//
// A relative secretsFile is taken relative to the sidecar's working
// directory, as daprd does, and made absolute at New. The file is not
// watched: a change takes effect when the component is loaded again.
package localfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this store implements, version v1.
const Type = "secretstores.local.file"

// Metadata is the store's component metadata.
type Metadata struct {
	// SecretsFile is the path of the JSON file holding the secrets. Required.
	// A relative path is relative to the sidecar's working directory.
	SecretsFile string `meta:"secretsFile" required:"true"`
	// NestedSeparator joins the keys of nested objects into secret names.
	NestedSeparator string `meta:"nestedSeparator" default:":"`
	// MultiValued makes each top-level key one secret holding several
	// name/value pairs.
	MultiValued bool `meta:"multiValued" default:"false"`
}

// Validate checks m.
func (m *Metadata) Validate() error {
	var errs []error
	if m.SecretsFile == "" {
		errs = append(errs, errors.New("metadata secretsFile: required"))
	}
	if m.NestedSeparator == "" {
		errs = append(errs, errors.New("metadata nestedSeparator: must not be empty"))
	}
	return errors.Join(errs...)
}

// Store serves the secrets of one file. It is immutable and safe for
// concurrent use.
type Store struct {
	secrets map[string]map[string]string
}

var _ secrets.Store = (*Store)(nil)

// New reads and flattens the secrets file named by the component metadata.
// unknown lists the metadata keys the store does not read, for the caller
// to warn about.
func New(meta map[string]string) (s *Store, unknown []string, err error) {
	var m Metadata
	unknown, err = metadata.Decode(meta, &m)
	if err == nil {
		err = m.Validate()
	}
	if err != nil {
		return nil, unknown, fmt.Errorf("secrets/localfile: %w", err)
	}
	path, err := filepath.Abs(m.SecretsFile)
	if err != nil {
		return nil, unknown, fmt.Errorf("secrets/localfile: metadata secretsFile %q: %w", m.SecretsFile, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, unknown, fmt.Errorf("secrets/localfile: metadata secretsFile: %w", err)
	}
	sec, err := parse(data, m.NestedSeparator, m.MultiValued)
	if err != nil {
		return nil, unknown, fmt.Errorf("secrets/localfile: secrets file %s: %w", path, err)
	}
	return &Store{secrets: sec}, unknown, nil
}

// GetSecret returns the secret named key, or an error matching
// secrets.ErrNotFound.
func (s *Store) GetSecret(_ context.Context, key string, _ map[string]string) (map[string]string, error) {
	v, ok := s.secrets[key]
	if !ok {
		return nil, secrets.NotFound(key)
	}
	return maps.Clone(v), nil
}

// BulkGetSecret returns every secret of the file.
func (s *Store) BulkGetSecret(_ context.Context, _ map[string]string) (map[string]map[string]string, error) {
	out := make(map[string]map[string]string, len(s.secrets))
	for k, v := range s.secrets {
		out[k] = maps.Clone(v)
	}
	return out, nil
}

// Close does nothing; the secrets stay readable.
func (s *Store) Close() error { return nil }

// parse decodes a secrets file and flattens it into secrets by name.
func parse(data []byte, sep string, multi bool) (map[string]map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not JSON: data after the top-level value")
	}
	var top map[string]any
	switch d := doc.(type) {
	case map[string]any:
		top = d
	case nil:
		// Dapr reads "null" as a file with no secrets.
	default:
		return nil, fmt.Errorf("want a JSON object at the top level, found %s", kind(d))
	}

	out := make(map[string]map[string]string, len(top))
	if !multi {
		flat := map[string]string{}
		if err := flatten(flat, nil, top, sep); err != nil {
			return nil, err
		}
		for k, v := range flat {
			out[k] = map[string]string{k: v}
		}
		return out, nil
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		switch v := top[k].(type) {
		case map[string]any, []any:
			flat := map[string]string{}
			if err := flatten(flat, nil, v, sep); err != nil {
				return nil, fmt.Errorf("secret %q: %w", k, err)
			}
			out[k] = flat
		default:
			out[k] = map[string]string{k: scalar(v)}
		}
	}
	return out, nil
}

// flatten adds the leaves of v to out, each named by its path of keys
// joined with sep.
func flatten(out map[string]string, path []string, v any, sep string) error {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if err := flatten(out, append(path, k), v[k], sep); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := flatten(out, append(path, strconv.Itoa(i)), e, sep); err != nil {
				return err
			}
		}
	default:
		name := strings.Join(path, sep)
		if _, dup := out[name]; dup {
			return fmt.Errorf("two values are named %q once nested keys are joined with %q", name, sep)
		}
		out[name] = scalar(v)
	}
	return nil
}

// scalar renders a JSON leaf: strings as they are, numbers as written,
// true, false, and null as "".
func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	}
	// json.Decoder with UseNumber yields nothing else for a leaf.
	panic(fmt.Sprintf("localfile: unexpected JSON value %T", v))
}

func kind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a bool"
	}
	return fmt.Sprintf("%T", v)
}

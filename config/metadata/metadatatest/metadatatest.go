// Package metadatatest checks a backend's metadata.yaml, written in the shape
// of Dapr's component metadata files, against the struct its metadata is
// decoded into, so the two cannot drift apart (Dapr's
// check-component-metadata, as a test).
package metadatatest

import (
	"fmt"
	"os"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/outrigger/outrigger/config/metadata"
)

// file is the part of a metadata.yaml CheckYAML compares.
type file struct {
	Type     string  `yaml:"type"`
	Name     string  `yaml:"name"`
	Version  string  `yaml:"version"`
	Metadata []entry `yaml:"metadata"`
}

// entry is one field of a metadata.yaml.
type entry struct {
	Name        string `yaml:"name"`
	Type        string `yaml:"type"`
	Required    bool   `yaml:"required"`
	Default     string `yaml:"default"`
	Description string `yaml:"description"`
}

// CheckYAML fails t unless the metadata.yaml at path lists exactly the
// fields of v (a struct or a pointer to one, tagged for metadata.Decode), in
// the same order, with the same types, defaults and required flags, each
// with a description, and names the component typ ("secretstores.local.env"
// is type secretstores, name local.env, version v1).
func CheckYAML(t testing.TB, path, typ string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f file
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if got := f.Type + "." + f.Name; got != typ || f.Version != "v1" {
		t.Errorf("%s: component %s version %q, want %s version v1", path, got, f.Version, typ)
	}
	fields, err := metadata.Fields(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(fields) != len(f.Metadata) {
		t.Errorf("%s lists %d fields, the struct has %d", path, len(f.Metadata), len(fields))
	}
	for i := range min(len(fields), len(f.Metadata)) {
		want, got := fields[i], f.Metadata[i]
		typ := got.Type
		if typ == "" {
			typ = "string"
		}
		field := fmt.Sprintf("%s: metadata[%d] (%s)", path, i, got.Name)
		if got.Name != want.Key {
			t.Errorf("%s: name %q, the struct has %q", field, got.Name, want.Key)
		}
		if typ != want.Type {
			t.Errorf("%s: type %q, the struct has %q", field, typ, want.Type)
		}
		if got.Required != want.Required {
			t.Errorf("%s: required %v, the struct has %v", field, got.Required, want.Required)
		}
		if got.Default != want.Default {
			t.Errorf("%s: default %q, the struct has %q", field, got.Default, want.Default)
		}
		if got.Description == "" {
			t.Errorf("%s: no description", field)
		}
	}
}

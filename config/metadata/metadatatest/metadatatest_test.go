package metadatatest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

type meta struct {
	File    string        `meta:"secretsFile" required:"true"`
	Sep     string        `meta:"nestedSeparator" default:":"`
	Timeout time.Duration `meta:"timeout" default:"5s"`
	Multi   bool          `meta:"multiValued" default:"false"`
}

const good = `schemaVersion: v1
type: secretstores
name: local.file
version: v1
metadata:
  - name: secretsFile
    required: true
    description: Path of the JSON file.
  - name: nestedSeparator
    type: string
    default: ":"
    description: Separator.
  - name: timeout
    type: duration
    default: 5s
    description: Timeout.
  - name: multiValued
    type: bool
    default: "false"
    description: Multi.
`

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func write(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "metadata.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckYAML(t *testing.T) {
	metadatatest.CheckYAML(t, write(t, good), "secretstores.local.file", meta{})
}

func TestCheckYAMLFindsDrift(t *testing.T) {
	tests := []struct {
		name, yaml, typ, want string
	}{
		{"wrong component", good, "secretstores.local.env", "component secretstores.local.file"},
		{"wrong default", strings.Replace(good, `default: ":"`, `default: "."`, 1), "secretstores.local.file", `default "."`},
		{"wrong type", strings.Replace(good, "type: duration", "type: number", 1), "secretstores.local.file", `type "number"`},
		{"not required", strings.Replace(good, "required: true", "required: false", 1), "secretstores.local.file", "required false"},
		{"renamed", strings.Replace(good, "name: timeout", "name: timeoutInSeconds", 1), "secretstores.local.file", `name "timeoutInSeconds"`},
		{"undocumented", strings.Replace(good, "description: Multi.", "", 1), "secretstores.local.file", "no description"},
		{"missing field", good[:strings.Index(good, "  - name: multiValued")], "secretstores.local.file", "lists 3 fields, the struct has 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			metadatatest.CheckYAML(r, write(t, tt.yaml), tt.typ, meta{})
			if !strings.Contains(strings.Join(r.errs, "\n"), tt.want) {
				t.Errorf("errors %q, want one containing %q", r.errs, tt.want)
			}
		})
	}
}

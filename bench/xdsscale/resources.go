package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// componentName is the i-th component's name: c0000, c0001, ...
func componentName(i int) string { return fmt.Sprintf("c%04d", i) }

// prefixValue is component i's prefix metadata at round r (0: as created).
func prefixValue(i, r int) string { return fmt.Sprintf("C%04d_R%03d_", i, r) }

// writeComponent writes component i, one file per component, with a small
// metadata list whose prefix is the value that rounds change. The write is
// in place (truncate and write), as an editor or a config tool saving it.
func writeComponent(dir string, i int, prefix string) error {
	doc := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: secretstores.local.env
  version: v1
  metadata:
  - name: prefix
    value: %q
  - name: owner
    value: "team-%02d"
  - name: region
    value: "eu-west-1"
`, componentName(i), prefix, i%50)
	return os.WriteFile(filepath.Join(dir, componentName(i)+".yaml"), []byte(doc), 0o600)
}

package harness

import (
	"os"
	"path/filepath"
)

// A harness whose sidecars invoke no app gives them a name resolution that
// sends nothing: the default of both, mDNS, announces each sidecar on the
// machine's multicast interfaces.

// OutriggerQuietResolution writes an empty static resolution file into dir
// and returns the `outrigger sidecar` flags that use it.
func OutriggerQuietResolution(dir string) ([]string, error) {
	file := filepath.Join(dir, "resolution.yaml")
	if err := os.WriteFile(file, []byte("apps: []\n"), 0o644); err != nil {
		return nil, err
	}
	return []string{"--name-resolution", "static", "--static-resolution-file", file}, nil
}

// daprdQuietConfig is a daprd Configuration whose name resolution is Dapr's
// kubernetes resolver, which only formats DNS names.
const daprdQuietConfig = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: quiet-resolution
spec:
  nameResolution:
    component: kubernetes
`

// DaprdQuietResolution writes such a Configuration into dir and returns the
// daprd flags that use it.
func DaprdQuietResolution(dir string) ([]string, error) {
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(daprdQuietConfig), 0o644); err != nil {
		return nil, err
	}
	return []string{"--config", file}, nil
}

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestBadFlags starts the binary with a wrong flag or value: it must exit at
// once with a non-zero status and a message naming the flag.
func TestBadFlags(t *testing.T) {
	t.Parallel()
	resolution := filepath.Join(t.TempDir(), "resolution.yaml")
	if err := os.WriteFile(resolution, []byte(framework.StaticResolutionFile(nil)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string // in the output
	}{
		{[]string{"--app-protocol", "foo"}, "app-protocol"},
		{[]string{"--dapr-http-port", "x"}, "dapr-http-port"},
		{[]string{"--bogus"}, "bogus"},
		{[]string{"--dapr-grpc-port", "70000"}, "dapr-grpc-port"},
		{[]string{"--app-port", "-5"}, "app-port"},
		{[]string{"--max-body-size", "12Qi"}, "max-body-size"},
		{[]string{"--log-level", "loud"}, "log-level"},
		{[]string{"--app-health-threshold", "0"}, "app-health-threshold"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			args := []string{"sidecar", "--app-id", "flags",
				"--dapr-http-port", strconv.Itoa(framework.FreePort(t)),
				"--dapr-grpc-port", strconv.Itoa(framework.FreePort(t)),
				"--dapr-internal-grpc-port", strconv.Itoa(framework.FreePort(t)),
				"--metrics-port", strconv.Itoa(framework.FreePort(t)),
				"--name-resolution", "static", "--static-resolution-file", resolution,
			}
			args = append(args, c.args...)
			r := framework.RunBinary(t, args...)
			if r.ExitCode == 0 {
				t.Errorf("exit status 0, want non-zero")
			}
			if !strings.Contains(r.Output, c.want) {
				t.Errorf("output does not name %q:\n%s", c.want, r.Output)
			}
			if strings.Contains(r.Output, "panic") {
				t.Errorf("output shows a panic:\n%s", r.Output)
			}
		})
	}
}

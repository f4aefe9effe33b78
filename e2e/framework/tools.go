package framework

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Tool is the path of a third-party program scripts/tools.sh builds into
// its cache (consul, coredns, ...): $OUTRIGGER_<NAME> when set, else the
// cache's path. A program not built yet fails the test, naming the command
// that builds it.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p := os.Getenv("OUTRIGGER_" + strings.ToUpper(name)); p != "" {
		return p
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	cmd := exec.Command("bash", "scripts/tools.sh", "path", name)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("e2e: scripts/tools.sh path %s: %v", name, err)
	}
	p := strings.TrimSpace(string(out))
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		t.Fatalf("e2e: no %s binary at %s: run scripts/tools.sh %s (or set OUTRIGGER_%s)", name, p, name, strings.ToUpper(name))
	}
	return p
}

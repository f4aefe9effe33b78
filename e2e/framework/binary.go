package framework

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Environment variables the harness reads.
const (
	// EnvBinary names a prebuilt outrigger binary to test instead of building one.
	EnvBinary = "OUTRIGGER_BIN"
	// EnvRace, when "1", builds the binary with the race detector.
	EnvRace = "OUTRIGGER_E2E_RACE"
)

const modulePath = "github.com/outrigger/outrigger"

var (
	recordOnce sync.Once
	buildOnce  sync.Once
	binPath    string
	binDir     string // temporary directory to remove, when the harness built the binary
	buildErr   error
)

// Main builds the binary, runs the package's tests and removes what the build
// left behind. Call it from TestMain.
func Main(m *testing.M) {
	if _, err := binary(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// Binary returns the path of the outrigger binary under test, building it
// on first use.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := binary()
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	recordOnce.Do(recordInputs)
	return p
}

// recordInputs looks at everything the binary is made from while the tests
// run, when `go test` records what a test reads: its result cache then keys
// on the code the binary is built from (and on the environment variables
// that choose it), not only on this package's own dependencies.
func recordInputs() {
	_ = os.Getenv(EnvRace)
	if p := os.Getenv(EnvBinary); p != "" {
		_, _ = os.Stat(p)
		return
	}
	if root, err := moduleRoot(); err == nil {
		touchSources(root)
	}
}

func binary() (string, error) {
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if p := os.Getenv(EnvBinary); p != "" {
			if _, err := os.Stat(p); err != nil {
				buildErr = fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
				return
			}
			binPath = p
			return
		}
		binDir, err = os.MkdirTemp("", "outrigger-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "outrigger")
		args := []string{"build", "-o", binPath}
		if os.Getenv(EnvRace) == "1" {
			args = append(args, "-race")
		}
		args = append(args, modulePath+"/cmd/outrigger")
		cmd := exec.Command(goTool(), args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building the outrigger binary (go %s): %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	return binPath, buildErr
}

// RaceBuild reports whether the harness builds the binary with the race
// detector (OUTRIGGER_E2E_RACE=1), which multiplies its memory use.
func RaceBuild() bool { return os.Getenv(EnvBinary) == "" && os.Getenv(EnvRace) == "1" }

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// moduleRoot finds the directory of Outrigger's go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func touchSources(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum" {
			_, _ = os.Stat(p)
		}
		return nil
	})
}

// Command outrigger is the Outrigger binary: the sidecar, the development
// launcher, the control plane and their helpers. It parses flags and wires
// packages together; the work happens in the packages it calls.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

const usage = `Outrigger: a Dapr-compatible sidecar runtime and service mesh.

Usage:
  outrigger sidecar [daprd flags]                  run the sidecar alone (drop-in for daprd)
  outrigger run --app-id ID [flags] -- CMD ARGS... run an app with its sidecar (development mode)
  outrigger run -f FILE                            run several apps from a run file
  outrigger control-plane [--dev] [flags]          run the control plane
  outrigger stop                                   stop the development control process
  outrigger init                                   write the default resources (a SQLite state store)
  outrigger transparent-init --app-port N [flags]  install the iptables rules of transparent interception
  outrigger version                                print the version

Run "outrigger COMMAND -h" for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	tuneGC()
	os.Exit(run(os.Args[1:]))
}

// defaultGCPercent trades a little memory for less CPU: a sidecar's live
// heap is small (a few MiB), so collecting at 3x rather than 2x of it keeps
// the peak modest while cutting the collector's work by a third. GOGC overrides it.
const defaultGCPercent = 200

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch args[0] {
	case "sidecar":
		err = sidecarCommand(ctx, args[1:])
	case "run":
		return runCommand(ctx, args[1:])
	case "control-plane":
		err = controlPlaneCommand(ctx, args[1:])
	case "stop":
		err = stopCommand(ctx, args[1:])
	case "init":
		err = initCommand(args[1:])
	case "transparent-init":
		err = transparentInitCommand(ctx, args[1:])
	case "version", "--version", "-v":
		fmt.Println(version)
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "outrigger: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "outrigger %s: %v\n", args[0], err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// usageError marks an error in the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

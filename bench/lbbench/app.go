package main

import (
	"fmt"
	"os"

	"github.com/outrigger/outrigger/bench/harness"
)

// The harness starts its own binary again as the echo app, in a child
// process with its own Go runtime (like a real app), chosen by these
// environment variables.
const (
	roleEnv    = "LBBENCH_ROLE" // roleApp: serve the echo app
	roleApp    = "app"
	appAddrEnv = "LBBENCH_APP_ADDR" // the app's listen address
)

// appPath is the app's echo route; callers invoke it as method "echo".
const appPath = harness.EchoPath

// appMain is main in the echo app's process.
func appMain() int {
	if err := harness.ServeEchoApp(os.Getenv(appAddrEnv)); err != nil {
		fmt.Fprintf(os.Stderr, "lbbench app: %v\n", err)
		return 1
	}
	return 0
}

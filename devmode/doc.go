// Package devmode is Outrigger's development mode, `outrigger run`: it runs
// apps as child processes, each beside a sidecar that runs in this process,
// and lets them find one another through the development control process.
//
// The development control process (`outrigger control-plane --dev`) is
// started by the first run on a machine, in the background and in a session
// of its own, and is shared by every later run until `outrigger stop`. Its
// address and pid are recorded in $OUTRIGGER_HOME/control-plane.json
// (OUTRIGGER_HOME defaults to ~/.outrigger) and its log goes to
// $OUTRIGGER_HOME/logs/control-plane.log. It holds the registry through
// which the sidecars find one another, so nothing multicasts.
//
// For every app, Run starts the sidecar (ports left at 0 are picked free, so
// several apps run side by side), then the app with DAPR_HTTP_PORT,
// DAPR_GRPC_PORT, APP_ID and their companions in its environment, and waits
// for the app's port when it has one. Every line of output is prefixed:
// "== APP - <app-id> == " for the app, "== SIDECAR - <app-id> == " for its
// sidecar and "== OUTRIGGER == " for the launcher. The run ends when its
// context ends (Ctrl-C), when any app exits, or when a sidecar stops; apps
// are then stopped (SIGTERM to their process group, SIGKILL after a grace
// period) before their sidecars.
//
// Run files (`outrigger run -f`) are Dapr's multi-app run template, read by
// LoadRunFile.
package devmode

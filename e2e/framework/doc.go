// Package framework is the harness of Outrigger's end-to-end tests. It builds
// the outrigger binary once per test binary run (or uses the one named by
// OUTRIGGER_BIN), starts sidecars as real processes on free loopback ports,
// each with its own OUTRIGGER_HOME, waits for them by polling their health
// endpoints with generous deadlines, and prints their logs when a test fails.
// It also provides the apps the sidecars call, run in the test process: an
// HTTP app (HTTP/1.1 or h2c) and a gRPC app serving Dapr's AppCallback and
// grpc-go's interop TestService.
//
// A test package uses it from TestMain:
//
//	func TestMain(m *testing.M) { framework.Main(m) }
//
// and then, in a test:
//
//	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
//	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "callee", AppPort: app.Port})
//	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "caller", Resolve: callee.Endpoints()})
//
// Nothing here sleeps for a fixed time to wait for something: every wait is a
// poll with a deadline (see WaitFor).
package framework

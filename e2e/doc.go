// Package e2e holds Outrigger's end-to-end tests: real `outrigger sidecar`
// processes on loopback ports, called by real HTTP and gRPC clients and by
// the official Dapr Go SDK, in front of apps served by the test process. The
// harness is in e2e/framework. The tests run with the ordinary `go test
// ./...`; OUTRIGGER_BIN points them at a prebuilt binary instead of the one
// they build.
package e2e

package framework

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dapr/go-sdk/service/common"
)

// StartSDKService starts an app built on one of the Dapr Go SDK's service
// packages and returns its port. The SDK binds an address itself, so the
// port is picked first; when an outgoing connection took it in between,
// the app is built again on another port. build registers the app's
// handlers on a new service listening at addr.
func StartSDKService(t testing.TB, build func(addr string) (common.Service, error)) int {
	t.Helper()
	var lastErr error
	for range 5 {
		port := FreePort(t)
		svc, err := build("127.0.0.1:" + strconv.Itoa(port))
		if errors.Is(err, syscall.EADDRINUSE) {
			lastErr = err
			continue // the gRPC service binds as it is built
		}
		if err != nil {
			t.Fatalf("e2e: building the app: %v", err)
		}
		started := make(chan error, 1)
		go func() { started <- svc.Start() }()
		up, err := waitListening(port, started)
		if !up {
			if err == nil || errors.Is(err, http.ErrServerClosed) {
				t.Fatal("e2e: the app stopped at once")
			}
			lastErr = err
			continue // most likely the port was taken: another one
		}
		if err != nil {
			_ = svc.GracefulStop()
			t.Fatalf("e2e: the app on port %d did not come up: %v", port, err)
		}
		t.Cleanup(func() { _ = svc.GracefulStop() })
		return port
	}
	t.Fatalf("e2e: the app could not start: %v", lastErr)
	return 0
}

// waitListening waits until port accepts connections (true) or the app's
// Start returned (false, its error). A connection accepted is not proof
// enough: between FreePort and the app's bind another process (a sidecar
// of a parallel test) may have taken the port, and then the connection
// reached it while the app's Start fails with EADDRINUSE a moment later.
// So the app's Start gets startGrace to fail after the port answers.
const startGrace = 200 * time.Millisecond

func waitListening(port int, started <-chan error) (bool, error) {
	deadline := time.Now().Add(WaitTimeout)
	for {
		select {
		case err := <-started:
			return false, err
		default:
		}
		err := DialListener("127.0.0.1:" + strconv.Itoa(port))
		if err == nil {
			select {
			case err := <-started:
				return false, err // someone else's listener answered
			case <-time.After(startGrace):
				return true, nil
			}
		}
		if time.Now().After(deadline) {
			return true, fmt.Errorf("not listening after %v: %w", WaitTimeout, err)
		}
		time.Sleep(PollInterval)
	}
}

package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// Deadlines of the harness's waits: generous, since a loaded 2-core machine
// running several test binaries is slow, while a healthy run never gets near them.
const (
	// WaitTimeout bounds every wait for a state to be reached.
	WaitTimeout = 30 * time.Second
	// PollInterval is the time between two polls.
	PollInterval = 20 * time.Millisecond
)

// WaitFor polls cond every PollInterval until it returns nil, and fails the
// test with cond's last error when WaitTimeout passes first.
func WaitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	if err := Poll(WaitTimeout, cond); err != nil {
		t.Fatalf("e2e: waiting %v for %s: %v", WaitTimeout, what, err)
	}
}

// ErrSelfConnect is DialListener's answer when the kernel connected the
// probe to itself: with nothing listening yet on a port in the ephemeral
// range, a dial from that same port meets itself (TCP simultaneous open)
// and "succeeds", and a poll that sees it would call the listener up.
var ErrSelfConnect = errors.New("the probe connected to itself: nothing listens there yet")

// DialListener tells whether something listens on the TCP address addr: it
// connects (waiting at most a second) and closes the connection.
func DialListener(addr string) error {
	return dialListener(&net.Dialer{Timeout: time.Second}, addr)
}

func dialListener(d *net.Dialer, addr string) error {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	self := c.LocalAddr().String() == c.RemoteAddr().String()
	_ = c.Close()
	if self {
		return ErrSelfConnect
	}
	return nil
}

// Poll calls cond every PollInterval until it returns nil or timeout passes;
// it then returns cond's last error.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

// pollClient is used for readiness polls only; tests make their own clients.
var pollClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// statusOf answers a GET to url with its status code.
func statusOf(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := pollClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body), nil
}

// wantStatusWith is wantStatus through client.
func wantStatusWith(client *http.Client, url string, status int) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	client.CloseIdleConnections()
	if resp.StatusCode != status {
		return fmt.Errorf("GET %s: %d %s, want %d", url, resp.StatusCode, body, status)
	}
	return nil
}

// wantStatus returns nil when a GET to url answers status.
func wantStatus(url string, status int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := statusOf(ctx, url)
	if err != nil {
		return err
	}
	if code != status {
		return fmt.Errorf("GET %s: %d %s, want %d", url, code, body, status)
	}
	return nil
}

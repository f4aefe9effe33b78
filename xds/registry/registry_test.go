package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/xds/registry"
)

// clock is a settable time source for lease tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func inst(id, app string, port int) registry.Instance {
	return registry.Instance{ID: id, AppID: app, Host: "127.0.0.1", Port: port}
}

func TestRegisterRenewDeregister(t *testing.T) {
	r := registry.New(registry.Options{})
	start := r.Snapshot().Index

	got, ttl, err := r.Register(inst("a1", "callee", 4001), 0)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if got.Namespace != "default" || ttl != registry.DefaultTTL {
		t.Errorf("Register = %+v, %v; want namespace default and ttl %v", got, ttl, registry.DefaultTTL)
	}
	afterAdd := r.Snapshot().Index
	if afterAdd <= start {
		t.Errorf("index after register = %d; want > %d", afterAdd, start)
	}

	// A renewal that changes nothing does not move the index.
	if _, _, err := r.Register(inst("a1", "callee", 4001), 0); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if idx := r.Snapshot().Index; idx != afterAdd {
		t.Errorf("index after a plain renewal = %d; want %d (unchanged)", idx, afterAdd)
	}
	// A renewal with a new port is a change.
	if _, _, err := r.Register(inst("a1", "callee", 4002), 0); err != nil {
		t.Fatalf("update: %v", err)
	}
	snap := r.Snapshot()
	if snap.Index <= afterAdd || len(snap.Instances) != 1 || snap.Instances[0].Port != 4002 {
		t.Errorf("after update: %+v; want one instance on port 4002 and a new index", snap)
	}

	if !r.Deregister("a1") {
		t.Errorf("Deregister(a1) = false; want true")
	}
	if r.Deregister("a1") {
		t.Errorf("second Deregister(a1) = true; want false")
	}
	if n := len(r.Snapshot().Instances); n != 0 {
		t.Errorf("instances after deregister = %d; want 0", n)
	}
}

func TestTTLClamped(t *testing.T) {
	r := registry.New(registry.Options{MinTTL: 2 * time.Second, MaxTTL: time.Minute})
	for _, tt := range []struct {
		ask, want time.Duration
	}{
		{0, registry.DefaultTTL},
		{time.Millisecond, 2 * time.Second},
		{10 * time.Second, 10 * time.Second},
		{time.Hour, time.Minute},
	} {
		_, got, err := r.Register(inst("x", "app", 1000), tt.ask)
		if err != nil || got != tt.want {
			t.Errorf("Register(ttl %v) granted %v, %v; want %v", tt.ask, got, err, tt.want)
		}
	}
}

func TestLeaseExpiry(t *testing.T) {
	c := &clock{now: time.Unix(1000, 0)}
	r := registry.New(registry.Options{Now: c.Now})
	if _, _, err := r.Register(inst("a", "app", 1000), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Register(inst("b", "app", 1001), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Advance(4 * time.Second)
	if n := r.Expire(); n != 0 {
		t.Fatalf("Expire before the lease ran out removed %d; want 0", n)
	}
	// Renewing "a" pushes its lease on.
	if _, _, err := r.Register(inst("a", "app", 1000), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Advance(4 * time.Second)
	if n := r.Expire(); n != 0 {
		t.Fatalf("Expire after a renewal removed %d; want 0", n)
	}
	c.Advance(2 * time.Second)
	before := r.Snapshot().Index
	if n := r.Expire(); n != 1 {
		t.Fatalf("Expire after missed renewals removed %d; want 1", n)
	}
	snap := r.Snapshot()
	if len(snap.Instances) != 1 || snap.Instances[0].ID != "b" || snap.Index <= before {
		t.Errorf("after expiry: %+v; want only b and a new index", snap)
	}
}

func TestRunExpires(t *testing.T) {
	r := registry.New(registry.Options{MinTTL: 50 * time.Millisecond, SweepInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if _, _, err := r.Register(inst("a", "app", 1000), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	snap := r.Snapshot()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	next := r.Wait(wctx, snap.Epoch, snap.Index)
	if len(next.Instances) != 0 {
		t.Errorf("after the lease: %+v; want no instances", next)
	}
}

func TestWait(t *testing.T) {
	r := registry.New(registry.Options{})
	snap := r.Snapshot()

	// A stale epoch or index answers at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if got := r.Wait(ctx, "other-epoch", snap.Index); got.Epoch != r.Epoch() {
		t.Errorf("Wait with another epoch = %+v", got)
	}
	if ctx.Err() != nil {
		t.Fatalf("Wait with a stale epoch blocked")
	}

	// The current one blocks until a change.
	got := make(chan registry.Snapshot, 1)
	go func() {
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		got <- r.Wait(wctx, snap.Epoch, snap.Index)
	}()
	select {
	case s := <-got:
		t.Fatalf("Wait returned %+v before any change", s)
	case <-time.After(50 * time.Millisecond):
	}
	if _, _, err := r.Register(inst("a", "app", 1000), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if len(s.Instances) != 1 {
			t.Errorf("Wait after a change = %+v; want the new instance", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after a change")
	}

	// A cancelled wait returns the unchanged content.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	cur := r.Snapshot()
	if s := r.Wait(ctx2, cur.Epoch, cur.Index); s.Index != cur.Index {
		t.Errorf("cancelled Wait = index %d; want %d", s.Index, cur.Index)
	}
}

func TestRegisterInvalid(t *testing.T) {
	r := registry.New(registry.Options{})
	long := strings.Repeat("a", 300)
	for _, tt := range []struct {
		name string
		in   registry.Instance
		want string
	}{
		{"no id", registry.Instance{AppID: "a", Host: "h", Port: 1}, "id"},
		{"bad id", registry.Instance{ID: "a/b", AppID: "a", Host: "h", Port: 1}, "id"},
		{"long id", registry.Instance{ID: long, AppID: "a", Host: "h", Port: 1}, "id"},
		{"no app", registry.Instance{ID: "i", Host: "h", Port: 1}, "appID is required"},
		{"space in app", registry.Instance{ID: "i", AppID: "a b", Host: "h", Port: 1}, "appID"},
		{"long app", registry.Instance{ID: "i", AppID: long, Host: "h", Port: 1}, "appID"},
		{"bad namespace", registry.Instance{ID: "i", AppID: "a", Namespace: "x\ny", Host: "h", Port: 1}, "namespace"},
		{"no host", registry.Instance{ID: "i", AppID: "a", Port: 1}, "host is required"},
		{"host with port", registry.Instance{ID: "i", AppID: "a", Host: "h:1", Port: 1}, "host"},
		{"port 0", registry.Instance{ID: "i", AppID: "a", Host: "h", Port: 0}, "port 0"},
		{"port too big", registry.Instance{ID: "i", AppID: "a", Host: "h", Port: 70000}, "port 70000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := r.Register(tt.in, 0)
			if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Register(%+v) = %v; want ErrInvalid naming %q", tt.in, err, tt.want)
			}
		})
	}
	for _, ok := range []registry.Instance{
		{ID: "i1", AppID: "a", Host: "::1", Port: 1},
		{ID: "i2", AppID: "a.b", Host: "my-host.example", Port: 65535},
	} {
		if _, _, err := r.Register(ok, 0); err != nil {
			t.Errorf("Register(%+v) = %v; want nil", ok, err)
		}
	}
}

// serve serves r on a free loopback port, as the control plane does, and
// returns its base URL.
func serve(t *testing.T, r *registry.Registry) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: r.Handler(), Protocols: &p, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { _ = r.Run(ctx); close(runDone) }()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	})
	return "http://" + ln.Addr().String()
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTP(t *testing.T) {
	r := registry.New(registry.Options{})
	base := serve(t, r)

	code, body := call(t, "GET", base+registry.PathHealthz, "")
	if code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthz = %d %s", code, body)
	}

	code, body = call(t, "PUT", base+registry.PathInstances+"/id-1", `{"appID":"callee","port":4100,"ttlSeconds":30}`)
	if code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}
	var lease registry.Lease
	if err := json.Unmarshal([]byte(body), &lease); err != nil {
		t.Fatal(err)
	}
	// The host defaults to the address the request came from.
	if lease.Instance.Host != "127.0.0.1" || lease.Instance.Namespace != "default" || lease.TTLSeconds != 30 {
		t.Errorf("lease = %+v; want host 127.0.0.1, namespace default, 30s", lease)
	}
	if code, body := call(t, "PUT", base+registry.PathInstances+"/id-2", `{"appID":"other","namespace":"ns2","host":"10.0.0.1","port":4200}`); code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}

	code, body = call(t, "GET", base+registry.PathInstances+"?appID=callee", "")
	var snap registry.Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil || code != 200 {
		t.Fatalf("GET = %d %s (%v)", code, body, err)
	}
	if len(snap.Instances) != 1 || snap.Instances[0].ID != "id-1" {
		t.Errorf("filtered list = %+v; want id-1 alone", snap.Instances)
	}
	code, body = call(t, "GET", base+registry.PathInstances+"?namespace=ns2", "")
	if code != 200 || !strings.Contains(body, `"id-2"`) || strings.Contains(body, `"id-1"`) {
		t.Errorf("namespace filter = %d %s; want id-2 alone", code, body)
	}

	// A long-poll at the current index answers after the next change.
	cur := r.Snapshot()
	polled := make(chan string, 1)
	go func() {
		_, b := call(t, "GET", base+registry.PathInstances+"?epoch="+cur.Epoch+"&index="+itoa(cur.Index)+"&wait=20s", "")
		polled <- b
	}()
	select {
	case b := <-polled:
		t.Fatalf("long-poll answered before a change: %s", b)
	case <-time.After(100 * time.Millisecond):
	}
	if code, body := call(t, "DELETE", base+registry.PathInstances+"/id-2", ""); code != 204 {
		t.Fatalf("DELETE = %d %s", code, body)
	}
	select {
	case b := <-polled:
		if strings.Contains(b, "id-2") || !strings.Contains(b, "id-1") {
			t.Errorf("long-poll answer = %s; want id-1 without id-2", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll did not answer after a change")
	}

	// A long-poll with a short wait answers unchanged.
	cur = r.Snapshot()
	start := time.Now()
	code, body = call(t, "GET", base+registry.PathInstances+"?epoch="+cur.Epoch+"&index="+itoa(cur.Index)+"&wait=50ms", "")
	if code != 200 || time.Since(start) < 50*time.Millisecond || !strings.Contains(body, `"index":`+itoa(cur.Index)) {
		t.Errorf("short long-poll = %d %s after %v", code, body, time.Since(start))
	}
}

func itoa(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestHTTPErrors(t *testing.T) {
	r := registry.New(registry.Options{})
	base := serve(t, r)
	for _, tt := range []struct {
		name, method, path, body string
		code                     int
		errorCode                string
	}{
		{"bad json", "PUT", registry.PathInstances + "/i", `{"appID":`, 400, registry.ErrCodeMalformedRequest},
		{"trailing data", "PUT", registry.PathInstances + "/i", `{"appID":"a","port":1} {}`, 400, registry.ErrCodeMalformedRequest},
		{"wrong type", "PUT", registry.PathInstances + "/i", `{"appID":"a","port":"x"}`, 400, registry.ErrCodeMalformedRequest},
		{"negative ttl", "PUT", registry.PathInstances + "/i", `{"appID":"a","port":1,"ttlSeconds":-1}`, 400, registry.ErrCodeMalformedRequest},
		{"invalid instance", "PUT", registry.PathInstances + "/i", `{"appID":"","port":1}`, 400, registry.ErrCodeInvalidInstance},
		{"bad id", "PUT", registry.PathInstances + "/a%20b", `{"appID":"a","port":1}`, 400, registry.ErrCodeInvalidInstance},
		{"body too big", "PUT", registry.PathInstances + "/i", `{"appID":"` + strings.Repeat("a", 70<<10) + `"}`, 400, registry.ErrCodeMalformedRequest},
		{"delete unknown", "DELETE", registry.PathInstances + "/nope", "", 404, registry.ErrCodeNotFound},
		{"bad index", "GET", registry.PathInstances + "?index=x&epoch=e", "", 400, registry.ErrCodeMalformedRequest},
		{"bad wait", "GET", registry.PathInstances + "?index=1&epoch=e&wait=soon", "", 400, registry.ErrCodeMalformedRequest},
		{"unknown path", "GET", registry.PathPrefix + "nothing", "", 404, registry.ErrCodeMalformedRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.method, base+tt.path, tt.body)
			var er registry.ErrorResponse
			if err := json.Unmarshal([]byte(body), &er); err != nil || code != tt.code || er.ErrorCode != tt.errorCode || er.Message == "" {
				t.Errorf("%s %s = %d %s; want %d with errorCode %s", tt.method, tt.path, code, body, tt.code, tt.errorCode)
			}
		})
	}
	if code, _ := call(t, "POST", base+registry.PathInstances, ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST instances = %d; want 405", code)
	}
	if n := len(r.Snapshot().Instances); n != 0 {
		t.Errorf("instances after refused registrations = %d; want 0", n)
	}
}

// TestStopWakesWaiters checks that a long-poll ends when the registry stops,
// so the control plane's HTTP server can shut down without waiting for it.
func TestStopWakesWaiters(t *testing.T) {
	r := registry.New(registry.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { _ = r.Run(ctx); close(runDone) }()
	snap := r.Snapshot()
	got := make(chan struct{})
	go func() {
		wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
		defer wcancel()
		r.Wait(wctx, snap.Epoch, snap.Index)
		close(got)
	}()
	cancel()
	<-runDone
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait still blocked after Run returned")
	}
}

package consul_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/nameresolution/balance"
	"github.com/outrigger/outrigger/nameresolution/consul"
	"github.com/outrigger/outrigger/nameresolution/nameresolutiontest"
)

// waitFor bounds how long a test waits for a change to show. Generous: a
// failure means the change never showed, not that it was slow.
const waitFor = 20 * time.Second

// metadataFor parses a configuration pointing at a's HTTP address, with
// extra keys merged in.
func metadataFor(t testing.TB, addr string, extra map[string]any) consul.Metadata {
	t.Helper()
	raw := map[string]any{"client": map[string]any{"address": addr}}
	for k, v := range extra {
		raw[k] = v
	}
	md, unknown, err := consul.ParseMetadata(raw)
	if err != nil {
		t.Fatalf("ParseMetadata: %v", err)
	}
	if len(unknown) > 0 {
		t.Fatalf("ParseMetadata: unknown keys %v", unknown)
	}
	return md
}

func newWatcher(t testing.TB, md consul.Metadata, opts ...consul.Option) *consul.Watcher {
	t.Helper()
	w, err := consul.NewWatcher(md, opts...)
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	return w
}

// recorder keeps what a Watch reported.
type recorder struct {
	mu   sync.Mutex
	sets [][]nameresolution.Instance
}

func (r *recorder) update(set []nameresolution.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, set)
}

// last returns the latest set as sorted addresses, and how many sets came.
func (r *recorder) last() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return nil, 0
	}
	return addrs(r.sets[len(r.sets)-1]), len(r.sets)
}

// waitSet waits until the latest set is exactly want.
func (r *recorder) waitSet(t testing.TB, want ...string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, waitFor, fmt.Sprintf("watch reporting %v", want), func() (bool, string) {
		got, n := r.last()
		return n > 0 && slices.Equal(got, want), fmt.Sprintf("%d sets, latest %v", n, got)
	})
}

func addrs(set []nameresolution.Instance) []string {
	out := make([]string, 0, len(set))
	for _, in := range set {
		out = append(out, in.Address())
	}
	slices.Sort(out)
	return out
}

// watch runs w.Watch for the app until the test ends and checks that it
// returns nil then.
func watch(t testing.TB, w *consul.Watcher, appID, ns string) *recorder {
	t.Helper()
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Watch(ctx, appID, ns, r.update) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v; want nil", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Watch did not return within %s of its context's end", waitFor)
		}
	})
	return r
}

// serviceFor is the registration an external registrar makes for inst.
func serviceFor(inst nameresolution.Instance) *api.AgentServiceRegistration {
	meta := map[string]string{consul.DefaultDaprPortMetaKey: strconv.Itoa(inst.Port)}
	if inst.Namespace != "" {
		meta[consul.MetaNamespace] = inst.Namespace
	}
	return &api.AgentServiceRegistration{
		ID: consul.ServiceID(inst), Name: inst.AppID, Address: inst.Host, Port: inst.Port, Meta: meta,
	}
}

// harness drives the conformance suite: instances are services registered
// and deregistered through the agent's API; resolvers are balancers over
// one watcher.
type harness struct {
	client *api.Client
	w      *consul.Watcher
}

func (h *harness) NewResolver(*testing.T) nameresolution.Resolver {
	return balance.New(h.w, balance.Options{})
}

func (h *harness) Add(t *testing.T, inst nameresolution.Instance) {
	t.Helper()
	register(t, h.client, serviceFor(inst))
}

func (h *harness) Remove(t *testing.T, inst nameresolution.Instance) {
	t.Helper()
	deregister(t, h.client, consul.ServiceID(inst))
}

func TestConformance(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	w := newWatcher(t, metadataFor(t, a.Addr(), nil))
	nameresolutiontest.Run(t, &harness{client: a.Client(), w: w})
}

// healthServer is a sidecar health endpoint whose answer the test flips.
type healthServer struct {
	srv     *httptest.Server
	healthy atomic.Bool
}

func newHealthServer(t testing.TB) *healthServer {
	h := &healthServer{}
	h.healthy.Store(true)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1.0/healthz" || r.Method != http.MethodGet {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if !h.healthy.Load() {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *healthServer) URL() string { return h.srv.URL + "/v1.0/healthz" }

// announce runs a.Announce until the returned stop is called; stop returns
// what Announce returned, failing the test when it does not return in time.
func announce(t testing.TB, a *consul.Announcer, inst nameresolution.Instance) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Announce(ctx, inst) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(waitFor):
				t.Errorf("Announce did not return within %s of its context's end", waitFor)
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestHealthCheckDrivesMembership(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	health := newHealthServer(t)
	md := metadataFor(t, a.Addr(), map[string]any{"selfRegister": true})
	ann, err := consul.NewAnnouncer(md, consul.WithHealthURL(health.URL()))
	if err != nil {
		t.Fatal(err)
	}
	inst := nameresolution.Instance{AppID: "orders", Host: "127.0.0.1", Port: 45001}
	announce(t, ann, inst)
	rec := watch(t, newWatcher(t, md), "orders", "")

	rec.waitSet(t, inst.Address())
	health.healthy.Store(false)
	rec.waitSet(t)
	health.healthy.Store(true)
	rec.waitSet(t, inst.Address())
}

func TestAnnouncer(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	client := a.Client()
	health := newHealthServer(t)
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer appLn.Close()
	md := metadataFor(t, a.Addr(), map[string]any{
		"selfRegister": true,
		"tags":         []any{"dapr", "v1"},
		"meta":         map[string]any{"DAPR_METRICS_PORT": "9090"},
		"checks": []any{map[string]any{
			"name": "App port", "checkID": "app:orders", "tcp": appLn.Addr().String(), "interval": "1s",
		}},
	})
	ann, err := consul.NewAnnouncer(md, consul.WithHealthURL(health.URL()), consul.WithResyncInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	inst := nameresolution.Instance{AppID: "orders", Namespace: "shop", Host: "127.0.0.1", Port: 45002}
	id := consul.ServiceID(inst)
	if want := "orders-127.0.0.1-45002"; id != want {
		t.Errorf("ServiceID = %q; want %q", id, want)
	}
	stop := announce(t, ann, inst)
	w := newWatcher(t, md)
	shop := watch(t, w, "orders", "shop")
	def := watch(t, w, "orders", "")

	shop.waitSet(t, inst.Address())
	def.waitSet(t)

	svc, _, err := client.Agent().Service(id, nil)
	if err != nil {
		t.Fatalf("agent service %s: %v", id, err)
	}
	if svc.Service != "orders" || svc.Port != 45002 || svc.Address != "127.0.0.1" || !slices.Equal(svc.Tags, []string{"dapr", "v1"}) {
		t.Errorf("registered %s %s:%d tags %v; want orders 127.0.0.1:45002 tags [dapr v1]", svc.Service, svc.Address, svc.Port, svc.Tags)
	}
	for k, want := range map[string]string{"DAPR_PORT": "45002", consul.MetaNamespace: "shop", "DAPR_METRICS_PORT": "9090"} {
		if svc.Meta[k] != want {
			t.Errorf("meta %s = %q; want %q (meta %v)", k, svc.Meta[k], want, svc.Meta)
		}
	}
	checks, err := client.Agent().ChecksWithFilter(fmt.Sprintf("ServiceID == %q", id))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for cid, c := range checks {
		types[cid] = c.Type
	}
	if want := map[string]string{"outrigger:" + id: "http", "app:orders": "tcp"}; fmt.Sprint(types) != fmt.Sprint(want) {
		t.Errorf("checks %v; want %v", types, want)
	}

	// An agent that forgot the registration gets it again.
	before := ann.Stats().Registrations
	deregister(t, client, id)
	eventually(t, waitFor, "registration restored", func() (bool, string) {
		_, _, err := client.Agent().Service(id, nil)
		return err == nil && ann.Stats().Registrations > before, fmt.Sprint(err)
	})
	shop.waitSet(t, inst.Address())

	if err := stop(); err != nil {
		t.Fatalf("Announce returned %v; want nil", err)
	}
	if _, _, err := client.Agent().Service(id, nil); err == nil {
		t.Errorf("the service %s is still registered after Announce returned", id)
	}
	shop.waitSet(t)
}

func TestAnnouncerRegistersNothing(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	client := a.Client()
	for _, tc := range []struct {
		name string
		md   map[string]any
		port int
	}{
		{"SelfRegisterOff", nil, 45003},
		{"PureClient", map[string]any{"selfRegister": true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ann, err := consul.NewAnnouncer(metadataFor(t, a.Addr(), tc.md), consul.WithResyncInterval(100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			if err := ann.Announce(ctx, nameresolution.Instance{AppID: "idle", Host: "127.0.0.1", Port: tc.port}); err != nil {
				t.Fatalf("Announce = %v; want nil", err)
			}
			if d := time.Since(start); d < 900*time.Millisecond {
				t.Errorf("Announce returned after %s; want it to wait for its context", d)
			}
			svcs, err := client.Agent().ServicesWithFilter(`Service == "idle"`)
			if err != nil {
				t.Fatal(err)
			}
			if len(svcs) != 0 || ann.Stats().Registrations != 0 {
				t.Errorf("registered %v (%d registrations); want nothing", svcs, ann.Stats().Registrations)
			}
		})
	}
}

func TestAdvancedRegistration(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	client := a.Client()
	md := metadataFor(t, a.Addr(), map[string]any{
		"advancedRegistration": map[string]any{
			"name": "billing", "id": "billing-custom", "port": 8080, "address": "127.0.0.1",
			"tags":  []any{"custom"},
			"meta":  map[string]any{"TEAM": "payments"},
			"check": map[string]any{"name": "ttl", "checkID": "billing-ttl", "ttl": "30s", "status": "passing"},
		},
	})
	ann, err := consul.NewAnnouncer(md)
	if err != nil {
		t.Fatal(err)
	}
	stop := announce(t, ann, nameresolution.Instance{AppID: "billing", Host: "127.0.0.1", Port: 45004})
	rec := watch(t, newWatcher(t, md), "billing", "")
	rec.waitSet(t, "127.0.0.1:45004")
	svc, _, err := client.Agent().Service("billing-custom", nil)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Port != 8080 || svc.Meta["TEAM"] != "payments" || svc.Meta["DAPR_PORT"] != "45004" || svc.Meta[consul.MetaNamespace] != "default" {
		t.Errorf("registered port %d meta %v; want port 8080, TEAM, DAPR_PORT and the namespace", svc.Port, svc.Meta)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.waitSet(t)

	// A name other than the app-id is refused: no resolver would find it.
	md.AdvancedRegistration.Name = "other"
	ann, err = consul.NewAnnouncer(md)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := ann.Announce(ctx, nameresolution.Instance{AppID: "billing", Port: 45004}); err == nil || !strings.Contains(err.Error(), "advancedRegistration.name") {
		t.Errorf("Announce with another name = %v; want an error naming advancedRegistration.name", err)
	}
}

// syncBuffer is a log sink safe to write from the watcher and read from the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAgentDownKeepsLastSet(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	client := a.Client()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := newWatcher(t, metadataFor(t, a.Addr(), nil), consul.WithLogger(logger))
	x := nameresolution.Instance{AppID: "orders", Host: "127.0.0.1", Port: 45010}
	register(t, client, serviceFor(x))
	rec := watch(t, w, "orders", "")
	b := balance.New(w, balance.Options{})
	defer b.Close()
	rec.waitSet(t, x.Address())
	eventually(t, waitFor, "balancer returning the instance", func() (bool, string) {
		addr, err := b.Resolve(context.Background(), "orders", "")
		return err == nil && addr == x.Address(), fmt.Sprint(addr, err)
	})

	a.stop()
	eventually(t, waitFor, "watcher counting failures", func() (bool, string) {
		s := w.Stats()
		return s.Failures >= 3, fmt.Sprintf("%+v", s)
	})
	got, n := rec.last()
	if !slices.Equal(got, []string{x.Address()}) {
		t.Errorf("while the agent is down the latest set is %v; want the last one, [%s]", got, x.Address())
	}
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		addr, err := b.Resolve(ctx, "orders", "")
		cancel()
		if err != nil || addr != x.Address() {
			t.Fatalf("Resolve %d while the agent is down = %q, %v; want %q", i, addr, err, x.Address())
		}
	}
	if !strings.Contains(logs.String(), "consul agent query failed") {
		t.Errorf("no log of the failure; logs:\n%s", logs.String())
	}

	a.restart()
	y := nameresolution.Instance{AppID: "orders", Host: "127.0.0.1", Port: 45011}
	register(t, client, serviceFor(y))
	eventually(t, waitFor, "watch resumed after the agent's restart", func() (bool, string) {
		got, m := rec.last()
		return m > n && slices.Contains(got, y.Address()), fmt.Sprintf("%d sets, latest %v", m, got)
	})
	got, _ = rec.last()
	t.Logf("after the restart: %v; watcher %+v", got, w.Stats())
	for _, addr := range got {
		if addr != x.Address() && addr != y.Address() {
			t.Errorf("after the restart the set holds %s; want only %s or %s", addr, x.Address(), y.Address())
		}
	}
	if !strings.Contains(logs.String(), "consul agent answers again") {
		t.Errorf("no log of the recovery; logs:\n%s", logs.String())
	}
	// The balancer follows too.
	eventually(t, waitFor, "balancer returning the new instance", func() (bool, string) {
		addr, err := b.Resolve(context.Background(), "orders", "")
		return err == nil && addr == y.Address(), fmt.Sprint(addr, err)
	})
}

func TestForeignAndInvalidInstances(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	client := a.Client()
	reg := func(id, address string, meta map[string]string) {
		register(t, client, &api.AgentServiceRegistration{ID: id, Name: "orders", Address: address, Port: 80, Meta: meta})
	}
	reg("plain", "127.0.0.1", map[string]string{"DAPR_PORT": "45020"})
	reg("explicit-default", "127.0.0.2", map[string]string{"DAPR_PORT": "45021", consul.MetaNamespace: "default"})
	reg("node-address", "", map[string]string{"DAPR_PORT": "45022"})
	reg("ipv6", "::1", map[string]string{"DAPR_PORT": "45023"})
	reg("shop", "127.0.0.3", map[string]string{"DAPR_PORT": "45024", consul.MetaNamespace: "shop"})
	reg("no-port", "127.0.0.4", nil)
	reg("port-too-big", "127.0.0.5", map[string]string{"DAPR_PORT": "70000"})
	reg("port-not-a-number", "127.0.0.6", map[string]string{"DAPR_PORT": "grpc"})
	reg("other-key", "127.0.0.7", map[string]string{"MESH_PORT": "45027"})
	register(t, client, &api.AgentServiceRegistration{ID: "payments", Name: "payments", Address: "127.0.0.8", Meta: map[string]string{"DAPR_PORT": "45028"}})

	w := newWatcher(t, metadataFor(t, a.Addr(), nil))
	watch(t, w, "orders", "").waitSet(t, "127.0.0.1:45020", "127.0.0.2:45021", "127.0.0.1:45022", "[::1]:45023")
	watch(t, w, "orders", "shop").waitSet(t, "127.0.0.3:45024")
	watch(t, w, "orders", "elsewhere").waitSet(t)
	if s := w.Stats(); s.Foreign == 0 || s.Skipped == 0 {
		t.Errorf("stats %+v; want foreign and skipped instances counted", s)
	}

	// Through a balancer, a foreign instance never comes back.
	b := balance.New(w, balance.Options{})
	defer b.Close()
	for i := range 20 {
		addr, err := b.Resolve(context.Background(), "orders", "shop")
		if err != nil || addr != "127.0.0.3:45024" {
			t.Fatalf("Resolve %d (orders, shop) = %q, %v; want 127.0.0.3:45024", i, addr, err)
		}
	}

	// The meta key is the configuration's.
	mk := newWatcher(t, metadataFor(t, a.Addr(), map[string]any{"daprPortMetaKey": "MESH_PORT"}))
	watch(t, mk, "orders", "").waitSet(t, "127.0.0.7:45027")
}

// TestGarbageAnswers feeds the watcher answers no Consul agent gives, from
// a stand-in server: it must not panic, must count the failures, and must
// keep the last good set through them.
func TestGarbageAnswers(t *testing.T) {
	t.Parallel()
	good := `[{"Node":{"Address":"127.0.0.1"},"Service":{"Service":"orders","Meta":{"DAPR_PORT":"45030"}}}]`
	answers := []struct {
		index, body string
		status      int
	}{
		{"5", good, 200},
		{"6", `{not json`, 200},
		{"6", `<html>oops</html>`, 502},
		{"seven", good, 200},
		{"7", `{"an":"object"}`, 200},
		{"8", `[null, {"Service": null}, {"Node": null, "Service": {"Service": "orders", "Meta": {"DAPR_PORT": "1"}}}, {"Node": {"Address": "a b"}, "Service": {"Service": "orders", "Meta": {"DAPR_PORT": "2"}}}]`, 200},
	}
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(calls.Add(1)) - 1
		if i >= len(answers) {
			// Hold the blocking query, as Consul does with nothing new.
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			i = len(answers) - 1
		}
		w.Header().Set("X-Consul-Index", answers[i].index)
		w.WriteHeader(answers[i].status)
		_, _ = w.Write([]byte(answers[i].body))
	}))
	defer srv.Close()
	md := metadataFor(t, strings.TrimPrefix(srv.URL, "http://"), map[string]any{"queryOptions": map[string]any{"useCache": false}})
	w := newWatcher(t, md, consul.WithMaxBackoff(50*time.Millisecond))
	rec := watch(t, w, "orders", "")
	eventually(t, waitFor, "every answer read", func() (bool, string) {
		return calls.Load() > int64(len(answers)), fmt.Sprint(calls.Load(), " calls")
	})
	rec.mu.Lock()
	sets := make([][]string, 0, len(rec.sets))
	for _, s := range rec.sets {
		sets = append(sets, addrs(s))
	}
	rec.mu.Unlock()
	if want := [][]string{{"127.0.0.1:45030"}, {}}; fmt.Sprint(sets) != fmt.Sprint(want) {
		t.Errorf("sets %v; want %v: the good set kept through the garbage, then the empty one", sets, want)
	}
	// Three answers fail (a bad body, an error status, a body of the wrong
	// shape); the unreadable index is read as no index, which is harmless.
	if s := w.Stats(); s.Failures < 3 || s.Skipped < 3 {
		t.Errorf("stats %+v; want at least 3 failures and 3 skipped", s)
	}
}

func TestAgentDownAtStart(t *testing.T) {
	t.Parallel()
	a := startAgent(t)
	a.stop()
	md := metadataFor(t, a.Addr(), map[string]any{"selfRegister": true})
	w := newWatcher(t, md)
	rec := watch(t, w, "orders", "")
	ann, err := consul.NewAnnouncer(md)
	if err != nil {
		t.Fatal(err)
	}
	inst := nameresolution.Instance{AppID: "orders", Host: "127.0.0.1", Port: 45040}
	announce(t, ann, inst)
	eventually(t, waitFor, "failures counted while the agent is down", func() (bool, string) {
		return w.Stats().Failures >= 2 && ann.Stats().Failures >= 2, fmt.Sprintf("watcher %+v, announcer %+v", w.Stats(), ann.Stats())
	})
	if got, n := rec.last(); n != 0 {
		t.Errorf("update %v before the agent answered; want none", got)
	}
	a.restart()
	rec.waitSet(t, inst.Address())
	eventually(t, waitFor, "one registration", func() (bool, string) {
		s := ann.Stats()
		return s.Registrations == 1, fmt.Sprintf("announcer %+v", s)
	})
}

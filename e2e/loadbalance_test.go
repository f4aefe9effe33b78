package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/outrigger/outrigger/e2e/framework"
)

// lbCallees starts n instances of one app-id, each its own app and
// sidecar, and a static resolution file listing them all.
func lbCallees(t *testing.T, appID string, n int) ([]*framework.Sidecar, []*framework.HTTPApp, string) {
	t.Helper()
	var (
		scs   []*framework.Sidecar
		apps  []*framework.HTTPApp
		addrs []string
	)
	for range n {
		app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
		sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: appID, AppPort: app.Port})
		scs = append(scs, sc)
		apps = append(apps, app)
		addrs = append(addrs, fmt.Sprintf("%q", sc.Endpoint().Address))
	}
	file := filepath.Join(framework.ShortTempDir(t), "apps.yaml")
	writeFile(t, file, fmt.Sprintf("apps:\n  - appID: %s\n    addresses: [%s]\n", appID, strings.Join(addrs, ", ")))
	return scs, apps, file
}

// lbCaller starts a sidecar resolving through file with the Configuration's
// nameResolution.configuration given as YAML lines.
func lbCaller(t *testing.T, file, nrConfig string) *framework.Sidecar {
	t.Helper()
	cfg := filepath.Join(framework.ShortTempDir(t), "config.yaml")
	writeFile(t, cfg, "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: lb\nspec:\n  nameResolution:\n    configuration:\n"+nrConfig)
	return framework.StartSidecar(t, framework.SidecarOptions{AppID: "lb-caller", Args: []string{"--static-resolution-file", file, "--config", cfg}})
}

// answeredBy calls the callee through caller and returns which app
// answered (its address as the app saw it), or the failure.
func answeredBy(t *testing.T, caller *framework.Sidecar, appID string, hdr http.Header) (string, error) {
	resp, body, err := tryCall(callCtx(t), http.MethodGet, caller.URL("/v1.0/invoke/"+appID+"/method/who"), nil, hdr)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var e framework.Echo
	if err := json.Unmarshal(body, &e); err != nil {
		return "", err
	}
	return e.Host, nil
}

// TestLoadBalancing: one app-id behind three sidecars. Round robin spreads
// calls evenly; consistent hashing on a header keeps a key on one instance;
// a killed instance costs no failed call (the connection attempt moves to
// another instance) and is ejected after consecutive failures.
func TestLoadBalancing(t *testing.T) {
	t.Parallel()
	_, apps, file := lbCallees(t, "lb-callee", 3)
	hostOf := func(app *framework.HTTPApp) string { return fmt.Sprintf("127.0.0.1:%d", app.Port) }

	t.Run("RoundRobin", func(t *testing.T) {
		caller := lbCaller(t, file, "      loadBalancing:\n        policy: round_robin\n")
		got := map[string]int{}
		for range 60 {
			who, err := answeredBy(t, caller, "lb-callee", nil)
			if err != nil {
				t.Fatal(err)
			}
			got[who]++
		}
		for _, app := range apps {
			if n := got[hostOf(app)]; n != 20 {
				t.Errorf("instance %s answered %d of 60 calls, want 20: %v", hostOf(app), n, got)
			}
		}
	})

	t.Run("RingHash", func(t *testing.T) {
		caller := lbCaller(t, file, "      loadBalancing:\n        policy: ring_hash\n        hashHeader: x-user\n")
		keysStayPut(t, caller, "lb-callee", "X-User")
	})
}

// TestLoadBalancingInstanceDies: an instance killed while calls flow costs
// no call (connecting fails before anything is sent, and the call moves to
// another instance), and after five consecutive failures it is ejected.
func TestLoadBalancingInstanceDies(t *testing.T) {
	t.Parallel()
	scs, apps, file := lbCallees(t, "lb-dies", 3)
	caller := lbCaller(t, file, "      outlierDetection:\n        consecutiveFailures: 5\n        baseEjectionTime: 60s\n        maxEjectionPercent: 34\n")
	for range 9 {
		if _, err := answeredBy(t, caller, "lb-dies", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(scs[1].Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	scs[1].WaitExit(t)
	dead := fmt.Sprintf("127.0.0.1:%d", apps[1].Port)
	for i := range 60 {
		who, err := answeredBy(t, caller, "lb-dies", nil)
		if err != nil {
			t.Fatalf("call %d after the kill failed: %v", i, err)
		}
		if who == dead {
			t.Fatalf("call %d was answered by the killed instance", i)
		}
	}
	framework.WaitFor(t, "the dead instance to be ejected", func() error {
		if !strings.Contains(caller.Logs(), "instance ejected after consecutive failures") {
			return fmt.Errorf("not in the caller's log")
		}
		return nil
	})
	if n := strings.Count(caller.Logs(), "connecting failed; trying another instance"); n > 6 {
		t.Errorf("%d calls tried the dead instance: it was not ejected after 5 failures", n)
	}
}

// TestLoadBalancingOverXDS: the control plane's Configuration sets the
// outlier detection of every app's cluster, and a sidecar that finds apps
// through the control plane applies it: here two failures eject (the
// sidecar's own default is five). A callee that dies is not the way to show
// it: the control plane drops its endpoint at once.
func TestLoadBalancingOverXDS(t *testing.T) {
	t.Parallel()
	caller := xdsCallees(t, "      outlierDetection:\n        consecutiveFailures: 2\n        maxEjectionPercent: 50\n", "xlb-callee", 2, "xlb-caller")
	// Calls that end in 503 (as Envoy's consecutive_5xx, a 502, 503 or 504
	// counts against the instance): the caller ejects one callee after the
	// cluster's two failures in a row, not the default five.
	framework.WaitFor(t, "a callee to be ejected after two failures", func() error {
		resp, body, err := tryCall(callCtx(t), http.MethodGet, caller.URL("/v1.0/invoke/xlb-callee/method/fail/503"), nil, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("want the app's 503, got %d %s", resp.StatusCode, body)
		}
		if !strings.Contains(caller.Logs(), "instance ejected after consecutive failures") {
			return fmt.Errorf("not ejected yet")
		}
		return nil
	})
	if !strings.Contains(caller.Logs(), "failures=2") {
		t.Errorf("the ejection did not use the cluster's two failures:\n%s", caller.Logs())
	}
}

// TestRingHashOverXDS: the control plane's Configuration asks for
// consistent hashing on a header; the header reaches the sidecars as the
// hash_policy of each app's route (the cluster says only RING_HASH), so a
// caller with no Configuration of its own keeps each key on one instance.
func TestRingHashOverXDS(t *testing.T) {
	t.Parallel()
	caller := xdsCallees(t, "      loadBalancing:\n        policy: ring_hash\n        hashHeader: X-Tenant\n", "xrh-callee", 3, "xrh-caller")
	keysStayPut(t, caller, "xrh-callee", "X-Tenant")
}

// xdsCallees starts a control plane whose Configuration has the given
// nameResolution.configuration YAML lines, n instances of callee and a
// caller, all finding apps through the control plane, and waits until
// calls without a hash key have reached every instance.
func xdsCallees(t *testing.T, nrConfig, callee string, n int, callerID string) *framework.Sidecar {
	t.Helper()
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{Config: "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: cp\nspec:\n  nameResolution:\n    configuration:\n" + nrConfig})
	viaCP := []string{"--control-plane-address", cp.Addr, "--name-resolution", "registry"}
	for range n {
		app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
		framework.StartSidecar(t, framework.SidecarOptions{AppID: callee, AppPort: app.Port, MTLS: cp, Args: viaCP})
	}
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: callerID, MTLS: cp, Args: viaCP})
	framework.WaitFor(t, fmt.Sprintf("all %d callees to answer through the control plane's endpoints", n), func() error {
		seen := map[string]bool{}
		for range 4 * n {
			who, err := answeredBy(t, caller, callee, nil)
			if err != nil {
				return err
			}
			seen[who] = true
		}
		if len(seen) != n {
			return fmt.Errorf("answered by %v", seen)
		}
		return nil
	})
	return caller
}

// keysStayPut calls appID through caller with 12 values of header, 4 times
// each: every value must stay on one instance, and the values must spread
// over more than one.
func keysStayPut(t *testing.T, caller *framework.Sidecar, appID, header string) {
	t.Helper()
	owners := map[string]bool{}
	for u := range 12 {
		hdr := http.Header{header: {fmt.Sprintf("key-%d", u)}}
		first := ""
		for range 4 {
			who, err := answeredBy(t, caller, appID, hdr)
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first = who
			} else if who != first {
				t.Errorf("key-%d went to %s and then %s: the header is not hashed", u, first, who)
			}
		}
		owners[first] = true
	}
	if len(owners) < 2 {
		t.Errorf("12 keys all went to %v: the header is not hashed", owners)
	}
}

// TestControlPlaneServesConsulCatalog: a control plane whose Configuration
// names Consul serves the sidecars registered there as EDS. The callee
// registers only in Consul (its own name resolution is Consul); the caller
// finds apps only through the control plane, and reaches the callee.
func TestControlPlaneServesConsulCatalog(t *testing.T) {
	t.Parallel()
	agent := framework.StartConsul(t, framework.ConsulOptions{})
	consulCfg := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  nameResolution:\n    component: consul\n    configuration:\n      client:\n        address: " + agent.Addr + "\n      selfRegister: true\n"
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{Config: consulCfg})
	cfgFile := filepath.Join(framework.ShortTempDir(t), "config.yaml")
	writeFile(t, cfgFile, consulCfg)
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	framework.StartSidecar(t, framework.SidecarOptions{AppID: "cat-callee", AppPort: app.Port, MTLS: cp,
		Args: []string{"--control-plane-address", cp.Addr, "--name-resolution", "consul", "--config", cfgFile}})
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "cat-caller", MTLS: cp,
		Args: []string{"--control-plane-address", cp.Addr, "--name-resolution", "registry"}})
	framework.WaitFor(t, "the caller to reach the callee through the catalog the control plane serves", func() error {
		who, err := answeredBy(t, caller, "cat-callee", nil)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("127.0.0.1:%d", app.Port); who != want {
			return fmt.Errorf("answered by %s, want %s", who, want)
		}
		return nil
	})
	for _, line := range strings.Split(cp.Logs(), "\n") {
		if strings.Contains(line, "registry: instance registered") && strings.Contains(line, "app_id=cat-callee") {
			t.Errorf("the callee registered with the control plane's registry: the test would not show the catalog path\n%s", line)
		}
	}
}

// TestKubernetesDNS: a sidecar whose Configuration names the kubernetes
// resolver finds another through the cluster's DNS, as Dapr does: the SRV
// record of <app-id>-dapr.<namespace>.svc.<cluster domain>, served here by a
// real CoreDNS.
func TestKubernetesDNS(t *testing.T) {
	t.Parallel()
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "k8s-callee", AppPort: app.Port})
	dnsAddr := framework.StartCoreDNS(t, "cluster.local",
		fmt.Sprintf("_dapr-internal._tcp.k8s-callee-dapr.default.svc IN SRV 0 0 %d pod-1.k8s-callee-dapr.default.svc.cluster.local.", callee.InternalPort),
		"pod-1.k8s-callee-dapr.default.svc IN A 127.0.0.1")
	cfg := filepath.Join(framework.ShortTempDir(t), "config.yaml")
	writeFile(t, cfg, "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: k8s\nspec:\n  nameResolution:\n    component: kubernetes\n    configuration:\n      clusterDomain: cluster.local\n      dnsServer: "+dnsAddr+"\n")
	// --name-resolution is left to the Configuration.
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "k8s-caller", Args: []string{"--name-resolution", "", "--config", cfg}})
	who, err := answeredBy(t, caller, "k8s-callee", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("127.0.0.1:%d", app.Port); who != want {
		t.Errorf("answered by %s, want %s", who, want)
	}
	// An app the cluster has no service for: daprd's error, at once.
	resp, body := call(t, http.MethodGet, caller.URL("/v1.0/invoke/nobody/method/x"), nil, nil)
	wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_DIRECT_INVOKE")
}

// TestConsulPureClient: a sidecar without an app registers nothing in
// Consul, and its calls to an app registered there work (daprd fails every
// call in exactly that case).
func TestConsulPureClient(t *testing.T) {
	t.Parallel()
	agent := framework.StartConsul(t, framework.ConsulOptions{})
	cfg := filepath.Join(framework.ShortTempDir(t), "config.yaml")
	writeFile(t, cfg, "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  nameResolution:\n    component: consul\n    configuration:\n      client:\n        address: "+agent.Addr+"\n      selfRegister: true\n")
	viaConsul := []string{"--name-resolution", "consul", "--config", cfg}
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	framework.StartSidecar(t, framework.SidecarOptions{AppID: "consul-callee", AppPort: app.Port, Args: viaConsul})
	client := framework.StartSidecar(t, framework.SidecarOptions{AppID: "consul-client", Args: viaConsul})
	framework.WaitFor(t, "the pure client to reach the callee through Consul", func() error {
		who, err := answeredBy(t, client, "consul-callee", nil)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("127.0.0.1:%d", app.Port); who != want {
			return fmt.Errorf("answered by %s, want %s", who, want)
		}
		return nil
	})
	b, err := agent.Get("/v1/catalog/services")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "consul-client") {
		t.Errorf("the pure client registered itself: %s", b)
	}
	if !strings.Contains(string(b), "consul-callee") {
		t.Errorf("the callee is not registered: %s", b)
	}
}

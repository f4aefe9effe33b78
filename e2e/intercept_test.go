package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/outrigger/outrigger/e2e/framework"
)

// grpcClientEnv, set to a target ("orders:50051"), makes the test binary a
// plain gRPC client of grpc-go's TestService instead of running tests (see
// TestMain): a program that knows nothing of Dapr, which takes its proxy
// from the environment (grpc_proxy) as any grpc-go program does.
const grpcClientEnv = "OUTRIGGER_E2E_GRPC_CLIENT"

// grpcClientMain makes one unary call and one bidirectional stream of
// three messages to target, printing the answers; its exit code is 0 when
// every answer came back.
func grpcClientMain(target string) int {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc client:", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tc := testgrpc.NewTestServiceClient(conn)
	out, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("unary through the proxy")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "UnaryCall:", err)
		return 1
	}
	fmt.Printf("unary: %s\n", out.GetPayload().GetBody())
	stream, err := tc.FullDuplexCall(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FullDuplexCall:", err)
		return 1
	}
	for i := range 3 {
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("ping " + strconv.Itoa(i))}}); err != nil {
			fmt.Fprintln(os.Stderr, "send:", err)
			return 1
		}
		in, err := stream.Recv()
		if err != nil {
			fmt.Fprintln(os.Stderr, "recv:", err)
			return 1
		}
		fmt.Printf("stream: %s\n", in.GetPayload().GetBody())
	}
	if err := stream.CloseSend(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	if _, err := stream.Recv(); err != io.EOF {
		fmt.Fprintln(os.Stderr, "end of stream:", err)
		return 1
	}
	return 0
}

// TestExplicitProxyMode: an app that knows nothing of Dapr (curl, and a
// plain grpc-go client) calls other apps by name through its sidecar's
// explicit proxy (HTTP_PROXY, grpc_proxy), and the calls go over the mesh
// with mutual TLS: the callees' apps see the caller's proven app-id. A
// destination outside the mesh passes through untouched.
func TestExplicitProxyMode(t *testing.T) {
	t.Parallel()
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{})
	web := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	grpcApp := framework.StartGRPCApp(t)
	webSC := framework.StartSidecar(t, framework.SidecarOptions{AppID: "xp-web", AppPort: web.Port, MTLS: cp})
	grpcSC := framework.StartSidecar(t, framework.SidecarOptions{AppID: "xp-grpc", AppPort: grpcApp.Port, AppProtocol: "grpc", MTLS: cp})
	proxyPort := framework.FreePort(t)
	caller := framework.StartSidecar(t, framework.SidecarOptions{AppID: "xp-caller", MTLS: cp,
		Resolve: []framework.Endpoint{webSC.Endpoint(), grpcSC.Endpoint()},
		Args:    []string{"--enable-explicit-proxy", "--proxy-port", strconv.Itoa(proxyPort)}})
	proxyURL := "http://127.0.0.1:" + strconv.Itoa(proxyPort)
	appEnv := append(os.Environ(), "http_proxy="+proxyURL, "HTTPS_PROXY="+proxyURL, "grpc_proxy="+proxyURL, "NO_PROXY=", "no_proxy=")

	t.Run("curl", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "curl", "-sS", "--fail-with-body", "-X", "POST", "--data-binary", "from curl", "http://xp-web/echo/curl?x=1")
		cmd.Env = appEnv
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
		e := echoOf(t, out)
		if e.Path != "/echo/curl" || e.RawQuery != "x=1" || e.Body != "from curl" {
			t.Errorf("the app saw %+v", e)
		}
		if got := http.Header(e.Header).Get("Dapr-Caller-App-Id"); got != "xp-caller" {
			t.Errorf("the app saw dapr-caller-app-id %q, want the proven caller xp-caller", got)
		}
	})

	t.Run("grpc-go", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(appEnv, grpcClientEnv+"=xp-grpc:50051")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the gRPC client: %v\n%s", err, out)
		}
		for _, want := range []string{"unary: unary through the proxy", "stream: ping 0", "stream: ping 2"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("the gRPC client printed %q, want %q", out, want)
			}
		}
		md := grpcApp.Metadata("/grpc.testing.TestService/UnaryCall")
		if got := md.Get("dapr-caller-app-id"); len(got) != 1 || got[0] != "xp-caller" {
			t.Errorf("the gRPC app saw dapr-caller-app-id %v, want the proven caller xp-caller", got)
		}
	})

	t.Run("outside the mesh", func(t *testing.T) {
		outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "outside saw %s caller=%q", r.URL.Path, r.Header.Get("Dapr-Caller-App-Id"))
		}))
		defer outside.Close()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		// --noproxy '' makes curl use the proxy even for a loopback
		// address, as it would for any outside host.
		cmd := exec.CommandContext(ctx, "curl", "-sS", "--fail-with-body", "--noproxy", "", outside.URL+"/plain")
		cmd.Env = appEnv
		out, err := cmd.Output()
		if err != nil || string(out) != `outside saw /plain caller=""` {
			t.Fatalf("pass-through: %v %q", err, out)
		}
		if v := metricValue(t, caller, "outrigger_interception_requests_total", `kind="request",route="passthrough"`); v != 1 {
			t.Errorf("pass-through requests counted: %v, want 1 (curl went through the proxy)", v)
		}
		if v := metricValue(t, caller, "outrigger_interception_requests_total", `kind="connect",route="mesh"`); v < 1 {
			t.Errorf("gRPC tunnels to apps counted: %v, want at least 1", v)
		}
	})
}

// TestTransparentMode: an app in a network namespace of its own, as
// `outrigger run --transparent` makes one, with the interception rules
// installed by `outrigger transparent-init`, calls other apps by name
// (curl http://xp-web/..., a plain grpc-go client dialling xp-grpc:50051;
// the names resolve to virtual addresses through the namespace's hosts
// file) with no proxy settings at all; its sidecar, outside the namespace,
// carries the calls over the mesh with mutual TLS. A TCP destination
// outside the mesh passes through, the app's calls to its own sidecar's API
// work, calls to the app arrive through the sidecar only, and once the
// sidecar is gone the app's calls fail at once rather than go anywhere.
func TestTransparentMode(t *testing.T) {
	t.Parallel()
	cp := framework.StartControlPlane(t, framework.ControlPlaneOptions{})
	web := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	grpcApp := framework.StartGRPCApp(t)
	webSC := framework.StartSidecar(t, framework.SidecarOptions{AppID: "tp-web", AppPort: web.Port, MTLS: cp})
	grpcSC := framework.StartSidecar(t, framework.SidecarOptions{AppID: "tp-grpc", AppPort: grpcApp.Port, AppProtocol: "grpc", MTLS: cp})

	// An app that speaks no HTTP: it echoes what it reads, after a prefix.
	tcpL := framework.Listen(t)
	go func() {
		for {
			c, err := tcpL.Accept()
			if err != nil {
				return
			}
			go func() {
				b, _ := io.ReadAll(c)
				_, _ = c.Write(append([]byte("tcp echo: "), b...))
				c.Close()
			}()
		}
	}()
	tcpSC := framework.StartSidecar(t, framework.SidecarOptions{AppID: "tp-tcp", AppPort: tcpL.Addr().(*net.TCPAddr).Port, MTLS: cp})

	hosts := "127.0.0.1 localhost\n127.77.0.2 tp-web\n127.77.0.3 tp-grpc\n127.77.0.4 tp-nobody\n127.77.0.5 tp-tcp\n"
	ns := framework.NewAppNetns(t, hosts)
	// The app (here only a server the other apps call) listens inside.
	appL := framework.ListenIn(t, ns, "127.0.0.1:0")
	appPort := appL.Addr().(*net.TCPAddr).Port
	appSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app in its namespace saw %s from %s", r.URL.Path, r.Header.Get("Dapr-Caller-App-Id"))
	})}
	go func() { _ = appSrv.Serve(appL) }()
	t.Cleanup(func() { _ = appSrv.Close() })

	transparentPort := 15001
	init := exec.Command(framework.Binary(t), "transparent-init", "--netns", ns, "--transparent-port", strconv.Itoa(transparentPort),
		"--app-port", strconv.Itoa(appPort), "--redirect-loopback")
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("transparent-init: %v\n%s", err, out)
	}
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "tp-app", AppPort: appPort, MTLS: cp,
		Resolve: []framework.Endpoint{webSC.Endpoint(), grpcSC.Endpoint(), tcpSC.Endpoint()},
		Args: []string{"--enable-transparent", "--transparent-port", strconv.Itoa(transparentPort),
			"--app-netns", "/var/run/netns/" + ns, "--virtual-hosts", "/etc/netns/" + ns + "/hosts",
			"--intercept-tcp-ports", "7000"}})

	// inApp runs a command inside the app's namespace, with no proxy
	// settings.
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.Contains(strings.ToLower(k), "proxy") {
			env = append(env, kv)
		}
	}
	inApp := func(t *testing.T, extraEnv []string, args ...string) ([]byte, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
		cmd.Env = append(append([]string(nil), env...), extraEnv...)
		return cmd.CombinedOutput()
	}

	t.Run("curl by name", func(t *testing.T) {
		out, err := inApp(t, nil, "curl", "-sS", "--fail-with-body", "--data-binary", "from the namespace", "http://tp-web/echo/tp?y=2")
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
		e := echoOf(t, out)
		if e.Path != "/echo/tp" || e.RawQuery != "y=2" || e.Body != "from the namespace" {
			t.Errorf("the app saw %+v", e)
		}
		if got := http.Header(e.Header).Get("Dapr-Caller-App-Id"); got != "tp-app" {
			t.Errorf("the app saw dapr-caller-app-id %q, want the proven caller tp-app", got)
		}
	})

	t.Run("grpc-go by name", func(t *testing.T) {
		out, err := inApp(t, []string{grpcClientEnv + "=tp-grpc:50051"}, os.Args[0])
		if err != nil {
			t.Fatalf("the gRPC client: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "unary: unary through the proxy") || !strings.Contains(string(out), "stream: ping 2") {
			t.Errorf("the gRPC client printed %q", out)
		}
		if got := grpcApp.Metadata("/grpc.testing.TestService/UnaryCall").Get("dapr-caller-app-id"); len(got) != 1 || got[0] != "tp-app" {
			t.Errorf("the gRPC app saw dapr-caller-app-id %v, want tp-app", got)
		}
	})

	t.Run("TCP by name", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		c, err := framework.DialContext(ns)(ctx, "tcp", "127.77.0.5:7000")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("\x16\x03 no HTTP here")); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(callTimeout))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "tcp echo: \x16\x03 no HTTP here" {
			t.Fatalf("a TCP call to tp-tcp:7000: %q %v", got, err)
		}
		// The same bytes at a port not named for TCP meet HTTP: a 400.
		c2, err := framework.DialContext(ns)(ctx, "tcp", "127.77.0.5:7001")
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		_, _ = c2.Write([]byte("\x16\x03 no HTTP here\r\n\r\n"))
		_ = c2.SetReadDeadline(time.Now().Add(callTimeout))
		got, _ = io.ReadAll(c2)
		if !strings.HasPrefix(string(got), "HTTP/1.1 400") {
			t.Fatalf("non-HTTP bytes at a port not named for TCP: %q, want a 400", got)
		}
	})

	t.Run("pass-through and the sidecar's own API", func(t *testing.T) {
		outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "outside saw %s", r.URL.Path)
		}))
		defer outside.Close()
		// 127.0.0.1 in the app's namespace is its own loopback; the
		// sidecar, outside, reaches the machine's.
		out, err := inApp(t, nil, "curl", "-sS", "--fail-with-body", outside.URL+"/plain")
		if err != nil || string(out) != "outside saw /plain" {
			t.Fatalf("pass-through: %v %q", err, out)
		}
		out, err = inApp(t, nil, "curl", "-sS", "--fail-with-body", "http://127.0.0.1:"+strconv.Itoa(sc.HTTPPort)+"/v1.0/metadata")
		if err != nil || !strings.Contains(string(out), `"id":"tp-app"`) {
			t.Fatalf("the app's own sidecar API from its namespace: %v %q", err, out)
		}
		// A name of the hosts file that no running app has: Dapr's
		// error, from the sidecar.
		out, err = inApp(t, nil, "curl", "-sS", "--max-time", "20", "http://tp-nobody/")
		if err != nil || !strings.Contains(string(out), "ERR_DIRECT_INVOKE") {
			t.Fatalf("a call to an app that is not there: %v %q", err, out)
		}
		// A virtual address that names nothing goes nowhere.
		if out, err := inApp(t, nil, "curl", "-sS", "--max-time", "10", "http://127.77.0.99/"); err == nil {
			t.Fatalf("a call to a virtual address of no app answered: %q", out)
		}
	})

	t.Run("inbound only through the sidecar", func(t *testing.T) {
		in := framework.StartSidecar(t, framework.SidecarOptions{AppID: "tp-in", MTLS: cp, Resolve: []framework.Endpoint{sc.Endpoint()}})
		resp, body := call(t, http.MethodGet, in.URL("/v1.0/invoke/tp-app/method/hello"), nil, nil)
		if resp.StatusCode != http.StatusOK || string(body) != "app in its namespace saw /hello from tp-in" {
			t.Fatalf("a call to the app through its sidecar: %d %q", resp.StatusCode, body)
		}
		// The app's port is in its namespace: from outside, nothing is there.
		if framework.DialListener("127.0.0.1:"+strconv.Itoa(appPort)) == nil {
			t.Fatalf("the app's port answered from outside its namespace")
		}
	})

	t.Run("sidecar gone: calls fail at once", func(t *testing.T) {
		if err := syscall.Kill(sc.Pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-sc.Exited()
		start := time.Now()
		out, err := inApp(t, nil, "curl", "-sS", "--max-time", "20", "http://tp-web/echo/after")
		if err == nil {
			t.Fatalf("a call with the sidecar gone answered: %q", out)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the call took %v to fail, want at once", took)
		}
		if calls := web.Calls("after"); calls != 0 {
			t.Errorf("the web app saw %d calls after the sidecar stopped", calls)
		}
	})
}

// TestTransparentNeedsPrivilege: without root (or CAP_NET_ADMIN), the
// transparent mode's setup stops at once with a message that names the
// explicit proxy, which needs no privilege.
func TestTransparentNeedsPrivilege(t *testing.T) {
	t.Parallel()
	_, bin, home := nobodyFolder(t)
	nobody := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		out, err := asNobody(ctx, home, bin, args...).CombinedOutput()
		return string(out), err
	}
	out, err := nobody("transparent-init", "--app-port", "8080", "--redirect-loopback")
	if err == nil || !strings.Contains(out, "--enable-explicit-proxy") {
		t.Errorf("transparent-init as nobody: %v\n%s", err, out)
	}
	out, err = nobody("run", "--transparent", "--app-id", "np", "--", "true")
	if err == nil || !strings.Contains(out, "explicit proxy") {
		t.Errorf("run --transparent as nobody: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = nobody("stop") })
}

// TestTransparentPod: the pod layout, as in Kubernetes: the app and its
// sidecar share a network namespace (host 1 of a small network), the rules
// come from `outrigger transparent-init --proxy-uid 0` (the sidecar runs as
// root, the app as user 1000), and the sidecar's own traffic is left alone
// by its user. The app (curl, as user 1000) calls another app on host 2 by
// name; a TCP server on host 2 outside the mesh is reached through the
// sidecar; the app's port takes connections only through its sidecar.
func TestTransparentPod(t *testing.T) {
	t.Parallel()
	nw := framework.NewNet(t, 2)
	pod, other := nw.Hosts[0], nw.Hosts[1]

	// Host 2: an app, its sidecar, and a TCP server outside the mesh.
	webL := framework.ListenIn(t, other.Name, "127.0.0.1:0")
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod-web saw %s from %s", r.URL.Path, r.Header.Get("Dapr-Caller-App-Id"))
	})}
	go func() { _ = web.Serve(webL) }()
	t.Cleanup(func() { _ = web.Close() })
	webSC := framework.StartSidecar(t, framework.SidecarOptions{AppID: "pod-web", AppPort: webL.Addr().(*net.TCPAddr).Port, Netns: other.Name})
	outsideL := framework.ListenIn(t, other.Name, other.IP+":0")
	outside := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "outside saw %s", r.URL.Path)
	})}
	go func() { _ = outside.Serve(outsideL) }()
	t.Cleanup(func() { _ = outside.Close() })

	// Host 1, the pod: the app listens on every address of the pod.
	appL := framework.ListenIn(t, pod.Name, "0.0.0.0:0")
	appPort := appL.Addr().(*net.TCPAddr).Port
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod app saw %s", r.URL.Path)
	})}
	go func() { _ = app.Serve(appL) }()
	t.Cleanup(func() { _ = app.Close() })
	hostsDir := "/etc/netns/" + pod.Name
	if err := os.MkdirAll(hostsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(hostsDir) })
	if err := os.WriteFile(hostsDir+"/hosts", []byte("127.0.0.1 localhost\n127.77.0.2 pod-web\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	initOut, err := exec.Command(framework.Binary(t), "transparent-init", "--netns", pod.Name, "--app-port", strconv.Itoa(appPort), "--proxy-uid", "0").CombinedOutput()
	if err != nil {
		t.Fatalf("transparent-init: %v\n%s", err, initOut)
	}
	sc := framework.StartSidecar(t, framework.SidecarOptions{AppID: "pod-app", AppPort: appPort, Netns: pod.Name,
		Resolve: []framework.Endpoint{{AppID: "pod-web", Address: net.JoinHostPort(other.IP, strconv.Itoa(webSC.InternalPort))}},
		Args:    []string{"--enable-transparent", "--virtual-hosts", hostsDir + "/hosts"}})

	// asApp runs a command in the pod as user 1000, with no proxy settings.
	asApp := func(t *testing.T, args ...string) ([]byte, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", pod.Name, "setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		return cmd.CombinedOutput()
	}

	out, err := asApp(t, "curl", "-sS", "--fail-with-body", "http://pod-web/from-the-pod")
	if err != nil || string(out) != "pod-web saw /from-the-pod from pod-app" {
		t.Fatalf("the app's call by name: %v %q", err, out)
	}
	out, err = asApp(t, "curl", "-sS", "--fail-with-body", "http://"+outsideL.Addr().String()+"/plain")
	if err != nil || string(out) != "outside saw /plain" {
		t.Fatalf("pass-through from the pod: %v %q", err, out)
	}
	if v := metricValue(t, sc, "outrigger_interception_requests_total", `kind="transparent",route="passthrough"`); v < 1 {
		t.Errorf("pass-through connections counted: %v, want the app's (it went through the sidecar)", v)
	}
	// The sidecar's API is on the pod's loopback, not redirected.
	out, err = asApp(t, "curl", "-sS", "--fail-with-body", "http://127.0.0.1:"+strconv.Itoa(sc.HTTPPort)+"/v1.0/healthz/outbound")
	if err != nil {
		t.Fatalf("the app's own sidecar API: %v %q", err, out)
	}
	// Inbound: through the sidecar, yes; straight to the app's port from
	// host 2, reset.
	in := framework.StartSidecar(t, framework.SidecarOptions{AppID: "pod-in", Netns: other.Name,
		Resolve: []framework.Endpoint{{AppID: "pod-app", Address: net.JoinHostPort(pod.IP, strconv.Itoa(sc.InternalPort))}}})
	resp, err := framework.HTTPClient(other.Name, 10*time.Second).Get("http://127.0.0.1:" + strconv.Itoa(in.HTTPPort) + "/v1.0/invoke/pod-app/method/in")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "pod app saw /in" {
		t.Fatalf("a call to the pod's app through its sidecar: %d %q", resp.StatusCode, body)
	}
	if c, err := framework.DialContext(other.Name)(context.Background(), "tcp", net.JoinHostPort(pod.IP, strconv.Itoa(appPort))); err == nil {
		c.Close()
		t.Fatal("the pod app's port took a connection from host 2, not through its sidecar")
	}
}

// nobodyFolder makes a folder user nobody can use (not under t.TempDir,
// whose parent only root may enter) holding a copy of the binary and a home
// nobody owns; the test's cleanup removes it.
func nobodyFolder(t *testing.T) (dir, bin, home string) {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) runs a command as another user: %v", err)
	}
	dir, err := os.MkdirTemp("", "outrigger-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(framework.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	bin = dir + "/outrigger"
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	home = dir + "/home"
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return dir, bin, home
}

// asNobody is the command bin args run as user nobody, with no
// capabilities, home as its HOME and OUTRIGGER_HOME.
func asNobody(ctx context.Context, home, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "setpriv", append([]string{"--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", bin}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "OUTRIGGER_HOME=" + home, "HOME=" + home}
	return cmd
}

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"

	"github.com/outrigger/outrigger/e2e/framework"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Pub/sub under faults. The guarantees under test: a message whose publish
// was acknowledged is delivered to the subscribing app at least once, even
// when the app is killed while it holds messages or the broker is killed
// and restarted; the subscriber's sidecar acknowledges to the broker only
// once the app answered success. Duplicates are allowed; they are counted
// and logged.
//
// Every test runs brokers of its own (a redis-server, a nats-server with
// JetStream, a RabbitMQ node) on free ports with their data in temporary
// directories; the machine's shared brokers are not touched.

const (
	// faultDeliveryDeadline bounds the wait for every acknowledged message
	// to reach the app once the fault is over.
	faultDeliveryDeadline = 60 * time.Second
	// faultPublishTimeout bounds one publish; publishes during an outage
	// fail (or succeed late) within it.
	faultPublishTimeout = 3 * time.Second
	// faultPublishPause is the pause between two publishes of a loop.
	faultPublishPause = 15 * time.Millisecond
	// warmupID is the id of the messages published until the subscription
	// is in place; a group only gets what is published once it subscribed.
	warmupID = -1
)

// privateBroker is a broker process of the test's own that can be killed
// with SIGKILL and started again on the same port and data directory. Its
// output goes to a file in its directory, shown when the test fails.
type privateBroker struct {
	name    string
	port    int
	logPath string
	ready   time.Duration           // bound on the wait for its port to accept connections
	probe   func(addr string) error // readiness beyond the port, if set
	mk      func() *exec.Cmd

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	closed bool // the test is over: start no more
}

var errBrokerExited = errors.New("the process exited")

// newPrivateBroker prepares a broker; its cleanup, registered now (so it
// runs after that of the sidecars started later), kills whichever process
// is current.
func newPrivateBroker(t *testing.T, name string, port int, dir string, ready time.Duration, mk func() *exec.Cmd) *privateBroker {
	t.Helper()
	b := &privateBroker{name: name, port: port, logPath: filepath.Join(dir, name+".log"), ready: ready, mk: mk}
	t.Cleanup(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.kill()
		if t.Failed() {
			out, _ := os.ReadFile(b.logPath)
			if len(out) > 16<<10 {
				out = out[len(out)-16<<10:]
			}
			t.Logf("---- log of the private %s (port %d) ----\n%s\n---- end of log of the private %s ----", name, port, out, name)
		}
	})
	return b
}

// start starts the broker and waits until its port accepts connections.
func (b *privateBroker) start() error {
	f, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "==== %s: starting\n", time.Now().Format(time.RFC3339Nano))
	cmd := b.mk()
	cmd.Stdout, cmd.Stderr = f, f
	// A group of its own, so that a kill reaches the children too; the
	// broker dies with the test process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("the test is over")
	}
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		return fmt.Errorf("starting the private %s: %w", b.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	err = framework.Poll(b.ready, func() error {
		select {
		case <-exited:
			return errBrokerExited
		default:
		}
		if b.probe != nil {
			return b.probe(addr)
		}
		return framework.DialListener(addr)
	})
	if err != nil {
		return fmt.Errorf("the private %s did not listen on %s within %v: %w (its log: %s)", b.name, addr, b.ready, err, b.logPath)
	}
	return nil
}

// kill ends the current process, and its children, with SIGKILL.
func (b *privateBroker) kill() {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// startFaultBroker starts a private broker of kind and returns it with the
// component document (named pubsub) that reaches it.
func startFaultBroker(t *testing.T, kind string) (*privateBroker, string) {
	t.Helper()
	dir := framework.ShortTempDir(t)
	port := framework.FreePort(t)
	p := strconv.Itoa(port)
	switch kind {
	case "redis":
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			t.Fatalf("redis-server is needed for this test: %v", err)
		}
		// appendfsync always: an entry is in the append-only file before
		// the server answers XADD, so an acknowledged publish survives the
		// SIGKILL (with everysec Redis may answer before writing it).
		b := newPrivateBroker(t, "redis-server", port, dir, framework.WaitTimeout, func() *exec.Cmd {
			return exec.Command(bin, "--port", p, "--bind", "127.0.0.1", "--dir", dir,
				"--appendonly", "yes", "--appendfsync", "always", "--save", "")
		})
		if err := b.start(); err != nil {
			t.Fatal(err)
		}
		return b, pubsubComponent("pubsub.redis",
			"redisHost", "127.0.0.1:"+p,
			"processingTimeout", "1s",
			"redeliverInterval", "1s",
			"dialTimeout", "1s")
	case "jetstream":
		bin, err := exec.LookPath("nats-server")
		if err != nil {
			bin = "/usr/sbin/nats-server"
			if _, err := os.Stat(bin); err != nil {
				t.Fatalf("nats-server is needed for this test: %v", err)
			}
		}
		store := filepath.Join(dir, "js")
		b := newPrivateBroker(t, "nats-server", port, dir, framework.WaitTimeout, func() *exec.Cmd {
			return exec.Command(bin, "-js", "-sd", store, "-a", "127.0.0.1", "-p", p)
		})
		if err := b.start(); err != nil {
			t.Fatal(err)
		}
		return b, pubsubComponent("pubsub.jetstream",
			"natsURL", "nats://127.0.0.1:"+p,
			"ackWait", "2s")
	case "rabbitmq":
		return startPrivateRabbitMQ(t, dir, port)
	}
	t.Fatalf("unknown broker %q", kind)
	return nil, ""
}

// startPrivateRabbitMQ starts a RabbitMQ node of the test's own: its own
// node name, AMQP and distribution ports, Mnesia and log directories, an
// empty configuration (the machine's /etc/rabbitmq is not read) and no
// plugins. The node is ready when an AMQP handshake succeeds; the test
// fails when none does within a minute.
func startPrivateRabbitMQ(t *testing.T, dir string, port int) (*privateBroker, string) {
	t.Helper()
	// The script itself, not /usr/sbin's wrapper, which switches to the
	// rabbitmq user.
	script := "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("no private RabbitMQ node: %s is missing (.ci/run installs rabbitmq-server): %v", script, err)
	}
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "rabbitmq-env.conf"), "")
	writeFile(t, filepath.Join(dir, "rabbitmq.conf"), "")
	writeFile(t, filepath.Join(dir, "enabled_plugins"), "[].\n")
	node := fmt.Sprintf("ort%d@localhost", port)
	env := []string{
		"HOME=" + dir, // its Erlang cookie
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_NODENAME=" + node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(port),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(framework.FreePort(t)),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbitmq.pid"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		// The script then runs the Erlang VM in its own process (exec)
		// rather than under a shell that waits for it: the VM is the
		// child, and dies with the test process.
		"RUNNING_UNDER_SYSTEMD=true",
	}
	b := newPrivateBroker(t, "rabbitmq-server", port, dir, time.Minute, func() *exec.Cmd {
		cmd := exec.Command(script)
		cmd.Dir = dir
		for _, kv := range os.Environ() {
			k, _, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, "RABBITMQ_") || strings.HasPrefix(k, "ERL_") || k == "HOME" || k == "NOTIFY_SOCKET" {
				continue
			}
			cmd.Env = append(cmd.Env, kv)
		}
		cmd.Env = append(cmd.Env, env...)
		return cmd
	})
	// Ready is an AMQP handshake that succeeds, not a port that accepts.
	b.probe = func(addr string) error {
		c, err := amqp.DialConfig("amqp://guest:guest@"+addr+"/", amqp.Config{Dial: amqp.DefaultDial(time.Second)})
		if err != nil {
			return err
		}
		return c.Close()
	}
	// On failure the node's own log, where it writes once booted, goes
	// with the test's output too.
	nodeLog := filepath.Join(dir, "log", node+".log")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		out, _ := os.ReadFile(nodeLog)
		if len(out) > 16<<10 {
			out = out[len(out)-16<<10:]
		}
		t.Logf("---- %s ----\n%s\n---- end of %s ----", nodeLog, out, nodeLog)
	})
	if err := b.start(); err != nil {
		t.Fatalf("no private RabbitMQ node (%s) within a minute on this machine: %v", node, err)
	}
	return b, pubsubComponent("pubsub.rabbitmq",
		"connectionString", fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port),
		"reconnectWait", "1s")
}

// pubsubComponent is a component named pubsub of typ with the metadata
// given as name, value pairs.
func pubsubComponent(typ string, meta ...string) string {
	var b strings.Builder
	b.WriteString("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: " + typ + "\n  version: v1\n  metadata:\n")
	for i := 0; i+1 < len(meta); i += 2 {
		fmt.Fprintf(&b, "  - name: %s\n    value: %q\n", meta[i], meta[i+1])
	}
	return b.String()
}

// deliveries counts the deliveries of each message id.
type deliveries struct {
	mu sync.Mutex
	n  map[int]int
}

func (d *deliveries) add(id int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[int]int{}
	}
	d.n[id]++
}

func (d *deliveries) has(id int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[id] > 0
}

// count is the number of distinct ids, warm-ups left out.
func (d *deliveries) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for id := range d.n {
		if id != warmupID {
			n++
		}
	}
	return n
}

// duplicates is the number of deliveries beyond the first, and the number
// of ids delivered more than once, warm-ups left out.
func (d *deliveries) duplicates() (extra, ids int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, n := range d.n {
		if id != warmupID && n > 1 {
			extra += n - 1
			ids++
		}
	}
	return extra, ids
}

func (d *deliveries) snapshot() map[int]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[int]int, len(d.n))
	for id, n := range d.n {
		out[id] = n
	}
	return out
}

// publishLog records which publishes of a loop were acknowledged.
type publishLog struct {
	mu      sync.Mutex
	acked   []int
	failed  int
	lastErr error
}

func (p *publishLog) record(id int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failed++
		p.lastErr = err
		return
	}
	p.acked = append(p.acked, id)
}

func (p *publishLog) ackedIDs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.acked)
}

func (p *publishLog) counts() (acked, failed int, lastErr error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked), p.failed, p.lastErr
}

// publishOrder publishes {"id": id} to topic, bounded by faultPublishTimeout.
func publishOrder(ctx context.Context, client dapr.Client, topic string, id int) error {
	ctx, cancel := context.WithTimeout(ctx, faultPublishTimeout)
	defer cancel()
	return client.PublishEvent(ctx, "pubsub", topic, map[string]any{"id": id})
}

// warmUp publishes warm-up messages until one is delivered: the group's
// subscription is then in place.
func warmUp(t *testing.T, client dapr.Client, topic string, delivered func(id int) bool) {
	t.Helper()
	var last time.Time
	framework.WaitFor(t, "a warm-up message to be delivered (the subscription in place)", func() error {
		if delivered(warmupID) {
			return nil
		}
		if time.Since(last) > 500*time.Millisecond {
			last = time.Now()
			if err := publishOrder(t.Context(), client, topic, warmupID); err != nil {
				return err
			}
		}
		return errors.New("no warm-up message delivered yet")
	})
}

// waitDelivered polls until every id in acked was delivered, within
// faultDeliveryDeadline; it fails the test with the missing ids otherwise.
func waitDelivered(t *testing.T, what string, acked []int, delivered func(id int) bool) {
	t.Helper()
	var missing []int
	err := framework.Poll(faultDeliveryDeadline, func() error {
		missing = missing[:0]
		for _, id := range acked {
			if !delivered(id) {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d acknowledged messages not delivered", len(missing))
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s: %d of %d acknowledged messages never delivered within %v: ids %s",
			what, len(missing), len(acked), faultDeliveryDeadline, idRanges(missing))
	}
}

// idRanges writes ids compactly: 3-7,9,12-13.
func idRanges(ids []int) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	var b strings.Builder
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ids[i], ids[j])
		} else {
			fmt.Fprintf(&b, "%d", ids[i])
		}
		i = j + 1
	}
	return b.String()
}

// wantOutbound checks that a sidecar still answers /v1.0/healthz/outbound 204.
func wantOutbound(t *testing.T, sc *framework.Sidecar) {
	t.Helper()
	resp, body := call(t, http.MethodGet, sc.URL("/v1.0/healthz/outbound"), nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("sidecar %s: /v1.0/healthz/outbound %d %q, want 204", sc.AppID, resp.StatusCode, truncate(body))
	}
}

// orderApp is a process of the orders example's subscriber
// (examples/orders/subscriber); the ids it logs are collected from its output.
type orderApp struct {
	name   string
	cmd    *exec.Cmd
	got    deliveries // each id once: the example logs an order the first time it gets it
	mu     sync.Mutex
	out    strings.Builder
	exited chan struct{} // the process exited and its output is read
}

var orderLine = regexp.MustCompile(`^received order (-?[0-9]+) \(`)

// startOrderApp starts the subscriber example on port. expect is its
// -expect: it exits once it has that many distinct orders.
func startOrderApp(t *testing.T, bin, name string, port, expect int) *orderApp {
	t.Helper()
	a := &orderApp{name: name, exited: make(chan struct{})}
	a.cmd = exec.Command(bin, "-port", strconv.Itoa(port), "-expect", strconv.Itoa(expect), "-pubsub", "pubsub")
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// The example logs with the log package, to stderr.
	a.cmd.Stdout, a.cmd.Stderr = pw, pw
	if err := a.cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	_ = pw.Close()
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			a.out.WriteString(line + "\n")
			a.mu.Unlock()
			if m := orderLine.FindStringSubmatch(line); m != nil {
				if id, err := strconv.Atoi(m[1]); err == nil {
					a.got.add(id)
				}
			}
		}
	}()
	go func() {
		_ = a.cmd.Wait()
		<-scanned
		close(a.exited)
	}()
	t.Cleanup(func() {
		a.kill(t)
		if t.Failed() {
			a.mu.Lock()
			t.Logf("---- output of %s (pid %d) ----\n%s---- end of output of %s ----", name, a.cmd.Process.Pid, a.out.String(), name)
			a.mu.Unlock()
		}
	})
	return a
}

// kill ends the app with SIGKILL and waits until it is gone.
func (a *orderApp) kill(t *testing.T) {
	t.Helper()
	select {
	case <-a.exited:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-a.exited:
	case <-time.After(framework.WaitTimeout):
		t.Errorf("%s (pid %d) still running %v after SIGKILL", a.name, a.cmd.Process.Pid, framework.WaitTimeout)
	}
}

// buildOrderSubscriber builds examples/orders/subscriber into dir.
func buildOrderSubscriber(t *testing.T, dir string) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "order-subscriber")
	build := exec.Command("go", "build", "-o", bin, "./examples/orders/subscriber")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the orders subscriber example: %v\n%s", err, out)
	}
	return bin
}

// TestPubSubSubscriberKilled: the subscriber app (the orders example, a
// process of its own) is killed with SIGKILL while orders are being
// published, and stays down for a while; a new process takes its port. The
// sidecar keeps running: the deliveries it could not make (the one in
// flight at the kill, if any, and those while the app was down) go back to
// the broker, which redelivers them. Every order whose publish was
// acknowledged reaches one of the two processes.
func TestPubSubSubscriberKilled(t *testing.T) {
	t.Parallel()
	bin := buildOrderSubscriber(t, t.TempDir())
	const orders = 200
	for _, kind := range []string{"redis", "jetstream"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			_, comp := startFaultBroker(t, kind)
			res := stateStores(t, comp)
			port := framework.FreePort(t)
			// -expect covers the orders and the warm-up: a process exits
			// on its own only once it has every one of them.
			first := startOrderApp(t, bin, "subscriber #1", port, orders+1)
			sub := framework.StartSidecar(t, framework.SidecarOptions{
				AppID: "killed-sub-" + kind, AppPort: port, AppProtocol: "http",
				Args: []string{"--resources-path", res},
			})
			pub := framework.StartSidecar(t, framework.SidecarOptions{AppID: "killed-pub-" + kind, Args: []string{"--resources-path", res}})
			client, err := dapr.NewClientWithPort(strconv.Itoa(pub.GRPCPort))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(client.Close)
			warmUp(t, client, "orders", first.got.has)

			var pubs publishLog
			published := make(chan struct{})
			go func() {
				defer close(published)
				for i := range orders {
					if t.Context().Err() != nil {
						return
					}
					pubs.record(i, publishOrder(t.Context(), client, "orders", i))
					time.Sleep(faultPublishPause)
				}
			}()

			framework.WaitFor(t, "the first subscriber to log 30 orders", func() error {
				if n := first.got.count(); n < 30 {
					return fmt.Errorf("%d so far", n)
				}
				return nil
			})
			ackedAtKill, _, _ := pubs.counts()
			first.kill(t)
			t.Logf("subscriber #1 killed after logging %d orders, with %d publishes acknowledged", first.got.count(), ackedAtKill)
			// The app stays down for longer than the sidecar's own retries
			// of a delivery (about 1.5 s): the messages it failed to
			// deliver meanwhile go back to the broker, which redelivers.
			time.Sleep(2500 * time.Millisecond)
			second := startOrderApp(t, bin, "subscriber #2", port, orders+1)

			select {
			case <-published:
			case <-time.After(faultDeliveryDeadline):
				acked, failed, lastErr := pubs.counts()
				t.Fatalf("the publish loop did not end within %v (%d acknowledged, %d failed, last error %v)", faultDeliveryDeadline, acked, failed, lastErr)
			}
			acked, failed, lastErr := pubs.counts()
			if failed > 0 {
				t.Logf("%d publishes failed (last: %v)", failed, lastErr)
			}
			if acked == 0 {
				t.Fatalf("no publish was acknowledged (last error: %v)", lastErr)
			}
			delivered := func(id int) bool { return first.got.has(id) || second.got.has(id) }
			waitDelivered(t, kind, pubs.ackedIDs(), delivered)

			// The example logs an order once per process, so the
			// duplicates seen are the orders both processes got: those
			// #1 logged but was killed before answering.
			one, two := first.got.snapshot(), second.got.snapshot()
			var both []int
			for id := range one {
				if id != warmupID && two[id] > 0 {
					both = append(both, id)
				}
			}
			t.Logf("%s: %d of %d publishes acknowledged; subscriber #1 got %d orders, subscriber #2 got %d; duplicates (delivered to both): %d %s",
				kind, acked, orders, first.got.count(), second.got.count(), len(both), idRanges(both))
			if acked == orders && ackedAtKill == orders && second.got.count() == 0 {
				t.Logf("note: every order was published before the kill and #2 got none: the kill found nothing in flight")
			}
			wantOutbound(t, sub)
			wantOutbound(t, pub)
		})
	}
}

// TestPubSubBrokerRestart: the broker is killed with SIGKILL in the middle of
// a publish loop and started again on the same port and data; publishes
// during the outage may fail. Every message whose publish was acknowledged
// reaches the subscriber (the SDK's HTTP service in this process), and both
// sidecars serve on.
func TestPubSubBrokerRestart(t *testing.T) {
	t.Parallel()
	const messages = 300
	// The app takes appDelay per message: with the sidecar's 16 deliveries
	// in flight, about a dozen messages are in its hands at any time.
	const appDelay = 200 * time.Millisecond
	for _, kind := range []string{"redis", "jetstream", "rabbitmq"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			broker, comp := startFaultBroker(t, kind)
			res := stateStores(t, comp)
			topic := "restart-" + kind

			got := &deliveries{}
			port := framework.StartSDKService(t, func(addr string) (common.Service, error) {
				svc := daprhttp.NewService(addr)
				return svc, svc.AddTopicEventHandler(&common.Subscription{PubsubName: "pubsub", Topic: topic, Route: "/deliver"},
					func(ctx context.Context, e *common.TopicEvent) (bool, error) {
						var m struct {
							ID *int `json:"id"`
						}
						if err := json.Unmarshal(e.RawData, &m); err != nil || m.ID == nil {
							t.Errorf("an event that is not one of the test's: %q", e.RawData)
							return false, nil
						}
						// A slow app: at the kill, the subscriber's sidecar
						// holds messages the app has not answered yet.
						select {
						case <-time.After(appDelay):
						case <-ctx.Done():
							return true, ctx.Err()
						}
						got.add(*m.ID)
						return false, nil
					})
			})

			sub := framework.StartSidecar(t, framework.SidecarOptions{
				AppID: "restart-sub-" + kind, AppPort: port, AppProtocol: "http",
				Args: []string{"--resources-path", res},
			})
			pub := framework.StartSidecar(t, framework.SidecarOptions{AppID: "restart-pub-" + kind, Args: []string{"--resources-path", res}})
			client, err := dapr.NewClientWithPort(strconv.Itoa(pub.GRPCPort))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(client.Close)
			warmUp(t, client, topic, got.has)

			var pubs publishLog
			var back atomic.Bool // the broker listens again
			var afterRestart atomic.Int64
			restarted := make(chan error, 1)
			var longest time.Duration // the longest publish: one that waited out the outage
			killAt := messages / 3
			loopDeadline := time.Now().Add(faultDeliveryDeadline)
			for i := range messages {
				if time.Now().After(loopDeadline) {
					acked, failed, lastErr := pubs.counts()
					t.Fatalf("the publish loop is still at message %d after %v (%d acknowledged, %d failed, last error %v): is the broker back?",
						i, faultDeliveryDeadline, acked, failed, lastErr)
				}
				if i == killAt {
					broker.kill()
					t.Logf("broker killed after %d publishes (%d of them acknowledged, %d delivered)", i, len(pubs.ackedIDs()), got.count())
					go func() {
						// A short outage, then the same port and data.
						time.Sleep(1500 * time.Millisecond)
						err := broker.start()
						back.Store(err == nil)
						restarted <- err
					}()
				}
				wasBack := back.Load()
				began := time.Now()
				err := publishOrder(t.Context(), client, topic, i)
				longest = max(longest, time.Since(began))
				pubs.record(i, err)
				if err == nil && wasBack {
					afterRestart.Add(1)
				}
				time.Sleep(faultPublishPause)
			}
			select {
			case err := <-restarted:
				if err != nil {
					t.Fatalf("restarting the broker: %v", err)
				}
			case <-time.After(90 * time.Second):
				t.Fatal("the broker did not restart within 90 s")
			}
			// One more message once the loop is over: the publisher's
			// sidecar publishes again now that the broker is back.
			framework.WaitFor(t, "a publish to be acknowledged after the broker restart", func() error {
				err := publishOrder(t.Context(), client, topic, messages)
				pubs.record(messages, err)
				return err
			})

			acked, failed, lastErr := pubs.counts()
			t.Logf("%s: %d publishes acknowledged (%d of them after the restart, and the final one), %d failed (last: %v); the longest publish took %v",
				kind, acked, afterRestart.Load(), failed, lastErr, longest.Round(time.Millisecond))
			waitDelivered(t, kind, pubs.ackedIDs(), got.has)

			extra, dupIDs := got.duplicates()
			ackedSet := map[int]bool{}
			for _, id := range pubs.ackedIDs() {
				ackedSet[id] = true
			}
			var unacked []int
			for id := range got.snapshot() {
				if id != warmupID && !ackedSet[id] {
					unacked = append(unacked, id)
				}
			}
			t.Logf("%s: %d distinct messages delivered; duplicates: %d extra deliveries of %d ids; delivered although their publish failed: %d %s",
				kind, got.count(), extra, dupIDs, len(unacked), idRanges(unacked))
			wantOutbound(t, sub)
			wantOutbound(t, pub)
		})
	}
}

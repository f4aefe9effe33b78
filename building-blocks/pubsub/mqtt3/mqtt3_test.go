package mqtt3

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/building-blocks/pubsub/pubsubtest"
	"github.com/outrigger/outrigger/config/metadata"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

// serverURL is the Mosquitto the tests use. It is shared with other tests,
// so every test makes its own topics and groups. The tests fail, not skip,
// when it does not answer.
const serverURL = "tcp://127.0.0.1:1883"

// RedeliveryWithin for the suite: a nacked message is retried in process
// within backOffMaxInterval (5s); a session left with a message is taken
// over as soon as the registry mark reaches the group (under a second).
const redeliveryWithin = 5 * time.Second

func TestConformance(t *testing.T) {
	pubsubtest.Run(t, func(t *testing.T) pubsub.Broker {
		b, _, err := New(map[string]string{"url": serverURL})
		if err != nil {
			t.Fatalf("New: %v (a Mosquitto must listen on 127.0.0.1:1883)", err)
		}
		return b
	}, pubsubtest.Options{RedeliveryWithin: redeliveryWithin})
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", Type, Metadata{})
}

// decode is New's metadata step.
func decode(meta map[string]string) (Metadata, error) {
	var m Metadata
	if _, err := metadata.Decode(meta, &m); err != nil {
		return m, err
	}
	return m, m.Validate()
}

func TestMetadataDefaults(t *testing.T) {
	m, err := decode(map[string]string{"url": serverURL})
	if err != nil {
		t.Fatal(err)
	}
	if m.QoS != 1 || m.Retain || m.CleanSession || m.BackOffMaxRetries != -1 ||
		m.BackOffInitialInterval != 100*time.Millisecond || m.BackOffMaxInterval != 5*time.Second || m.ConsumerID != "" {
		t.Errorf("defaults %+v", m)
	}
	if cfg, err := m.tlsConfig(); err != nil || cfg != nil {
		t.Errorf("tcp:// gave TLS config %v, %v", cfg, err)
	}
}

func TestMetadataErrors(t *testing.T) {
	cert, key, otherKey := testCerts(t)
	ca := cert
	tests := []struct {
		name string
		meta map[string]string
		want string
	}{
		{"no url", map[string]string{}, "metadata url: required"},
		{"no scheme", map[string]string{"url": "localhost:1883"}, "want tcp, mqtt, ssl"},
		{"http", map[string]string{"url": "http://localhost:1883"}, `scheme "http"`},
		{"no port", map[string]string{"url": "tcp://localhost"}, "want tcp://host:port"},
		{"bad port", map[string]string{"url": "tcp://localhost:mqtt"}, "want scheme://host:port"},
		{"no host", map[string]string{"url": "tcp://:1883"}, "want tcp://host:port"},
		{"path", map[string]string{"url": "tcp://localhost:1883/x"}, "want tcp://host:port"},
		{"qos 0", map[string]string{"url": serverURL, "qos": "0"}, "metadata qos 0: at most once"},
		{"qos 3", map[string]string{"url": serverURL, "qos": "3"}, "metadata qos 3: want 1 or 2"},
		{"qos word", map[string]string{"url": serverURL, "qos": "one"}, "metadata qos"},
		{"retain word", map[string]string{"url": serverURL, "retain": "sometimes"}, "metadata retain"},
		{"consumerID slash", map[string]string{"url": serverURL, "consumerID": "a/b"}, "metadata consumerID \"a/b\": must not contain"},
		{"consumerID plus", map[string]string{"url": serverURL, "consumerID": "a+"}, "must not contain"},
		{"retries", map[string]string{"url": serverURL, "backOffMaxRetries": "-2"}, "metadata backOffMaxRetries -2"},
		{"initial", map[string]string{"url": serverURL, "backOffInitialInterval": "0s"}, "metadata backOffInitialInterval 0s: must be positive"},
		{"max below initial", map[string]string{"url": serverURL, "backOffMaxInterval": "10ms"}, "metadata backOffMaxInterval 10ms: must not be below"},
		{"certificates without TLS", map[string]string{"url": serverURL, "caCert": ca}, "need a TLS scheme"},
		{"bad CA", map[string]string{"url": "ssl://localhost:8883", "caCert": "junk"}, "metadata caCert: no PEM certificate"},
		{"cert without key", map[string]string{"url": "ssl://localhost:8883", "clientCert": cert}, "metadata clientCert: needs clientKey"},
		{"key without cert", map[string]string{"url": "ssl://localhost:8883", "clientKey": key}, "metadata clientKey: needs clientCert"},
		{"mismatched pair", map[string]string{"url": "ssl://localhost:8883", "clientCert": cert, "clientKey": otherKey}, "metadata clientCert, clientKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := New(tt.meta)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	t.Run("password not shown", func(t *testing.T) {
		_, _, err := New(map[string]string{"url": "tcp://user:s3cret@localhost"})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %v: want one without the password", err)
		}
	})
}

func TestMetadataAccepted(t *testing.T) {
	cert, key, _ := testCerts(t)
	ca := cert
	m, err := decode(map[string]string{
		"url": "mqtts://user:pw@mqtt.example:8883", "consumerID": "app-1", "qos": "2", "retain": "true",
		"cleanSession": "true", "caCert": ca, "clientCert": cert, "clientKey": key,
		"backOffMaxRetries": "3", "backOffInitialInterval": "1s", "backOffMaxInterval": "30",
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.QoS != 2 || !m.Retain || !m.CleanSession || m.BackOffMaxRetries != 3 || m.BackOffMaxInterval != 30*time.Second {
		t.Errorf("metadata %+v", m)
	}
	cfg, err := m.tlsConfig()
	if err != nil || cfg == nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.InsecureSkipVerify {
		t.Errorf("TLS config %+v, %v", cfg, err)
	}
	for _, u := range []string{"tcp://h:1", "mqtt://h:1883", "ssl://h:8883", "tls://h:8883", "tcps://[::1]:8883", "ws://h/mqtt", "wss://h:443/mqtt"} {
		if _, err := decode(map[string]string{"url": u}); err != nil {
			t.Errorf("url %s: %v", u, err)
		}
	}
	_, unknown, err := New(map[string]string{"url": serverURL, "producerID": "x", "other": "y"})
	if err != nil || strings.Join(unknown, ",") != "other,producerID" {
		t.Errorf("unknown keys %v, %v", unknown, err)
	}
}

// testCerts makes a self-signed certificate (CA and client certificate at
// once), its key, and another key, PEM.
func testCerts(t *testing.T) (cert, key, otherKey string) {
	t.Helper()
	keyPEM := func(k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), keyPEM(k), keyPEM(k2)
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	start := time.Now()
	b, _, err := New(map[string]string{"url": "tcp://" + addr})
	if err == nil {
		_ = b.Close()
		t.Fatalf("New on %s, where nothing listens, succeeded", addr)
	}
	if !strings.Contains(err.Error(), "connecting to tcp://"+addr) {
		t.Errorf("error %v, want one naming the server", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("New took %v to fail", d)
	}
}

func TestRequestChecks(t *testing.T) {
	b := openBroker(t, nil, defaultTiming)
	ctx := t.Context()
	for _, topic := range []string{"", "a/+", "a/#", "a\x00"} {
		if err := b.Publish(ctx, topic, pubsub.Message{Data: []byte("x")}); err == nil {
			t.Errorf("Publish to %q succeeded", topic)
		}
	}
	nop := func(context.Context, *pubsub.Message) error { return nil }
	for _, req := range []pubsub.SubscribeRequest{
		{Topic: "", Group: "g"},
		{Topic: "a/#/b", Group: "g"},
		{Topic: "a/b+", Group: "g"},
		{Topic: "$share/g/a", Group: "g"},
		{Topic: "a", Group: ""},
		{Topic: "a", Group: "x/y"},
	} {
		if err := b.Subscribe(ctx, req, nop); err == nil {
			t.Errorf("Subscribe(%+v) succeeded", req)
		}
	}
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "a", Group: "g"}, nil); err == nil {
		t.Error("Subscribe without a handler succeeded")
	}
	_ = b.Close()
	if err := b.Publish(ctx, "a", pubsub.Message{}); !errors.Is(err, errClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "a", Group: "g"}, nop); !errors.Is(err, errClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
}

// fastTiming shortens the waits of the session registry for tests.
var fastTiming = func() timing {
	t := defaultTiming
	t.op = 3 * time.Second
	t.grace = 2 * time.Second
	t.lostDelay = time.Second
	t.retry = time.Second
	return t
}()

// openBroker opens a broker on the test server, closed when t ends.
func openBroker(t *testing.T, extra map[string]string, tm timing) *Broker {
	t.Helper()
	meta := map[string]string{"url": serverURL}
	for k, v := range extra {
		meta[k] = v
	}
	m, err := decode(meta)
	if err != nil {
		t.Fatal(err)
	}
	b, err := open(m, tm)
	if err != nil {
		t.Fatalf("open: %v (a Mosquitto must listen on 127.0.0.1:1883)", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func unique(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func publish(t *testing.T, b *Broker, topic string, data ...string) {
	t.Helper()
	for _, d := range data {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := b.Publish(ctx, topic, pubsub.Message{Data: []byte(d)})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// recorder records deliveries.
type recorder struct {
	mu  sync.Mutex
	got map[string][]time.Time
	ch  chan string
}

func newRecorder() *recorder {
	return &recorder{got: map[string][]time.Time{}, ch: make(chan string, 1000)}
}

func (r *recorder) add(m *pubsub.Message) {
	r.mu.Lock()
	r.got[string(m.Data)] = append(r.got[string(m.Data)], time.Now())
	r.mu.Unlock()
	r.ch <- string(m.Data)
}

func (r *recorder) calls(payload string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.got[payload]...)
}

// waitFor waits until every payload was recorded.
func (r *recorder) waitFor(t *testing.T, within time.Duration, payloads ...string) {
	t.Helper()
	deadline := time.After(within)
	for {
		missing := ""
		for _, p := range payloads {
			if len(r.calls(p)) == 0 {
				missing = p
				break
			}
		}
		if missing == "" {
			return
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("%q not delivered within %v", missing, within)
		}
	}
}

func TestRedeliveryAfterHandlerError(t *testing.T) {
	b := openBroker(t, map[string]string{"backOffInitialInterval": "100ms", "backOffMaxInterval": "300ms"}, fastTiming)
	topic, group := unique("retry"), unique("g")
	rec := newRecorder()
	err := b.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		n := len(rec.calls(string(m.Data)))
		rec.add(m)
		if n < 3 {
			m.Data[0] = 'X' // a retry must not see a handler's changes
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "m1")
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.calls("m1")) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls of the handler, want 4 (3 failures then a success)", len(rec.calls("m1")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	calls := rec.calls("m1")
	if len(calls) != 4 {
		t.Fatalf("%d calls, want exactly 4: an acknowledged message came back", len(calls))
	}
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
		if gap := calls[i+1].Sub(calls[i]); gap < want-10*time.Millisecond || gap > want+time.Second {
			t.Errorf("retry %d came %v after the failure, want about %v", i+1, gap, want)
		}
	}
	if n := len(rec.calls("X1")); n > 0 {
		t.Errorf("a retry saw the payload a handler changed")
	}
}

// A message whose handler keeps failing stays unacknowledged with the
// server: when its subscriber goes, it reaches another of the group.
func TestFailingMessageLeftToGroup(t *testing.T) {
	b1 := openBroker(t, nil, fastTiming)
	b2 := openBroker(t, nil, fastTiming)
	topic, group := unique("failing"), unique("g")
	var mu sync.Mutex
	failures := 0
	if err := b1.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		mu.Lock()
		failures++
		mu.Unlock()
		return errors.New("always")
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b1, topic, "stuck")
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := failures
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failing handler was not retried")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	if err := b2.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec.add(m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 10*time.Second, "stuck")
}

func TestBackOffMaxRetries(t *testing.T) {
	b1 := openBroker(t, map[string]string{"backOffMaxRetries": "2", "backOffInitialInterval": "50ms"}, fastTiming)
	topic, group := unique("drop"), unique("g")
	rec := newRecorder()
	if err := b1.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec.add(m)
		return errors.New("always")
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b1, topic, "doomed")
	time.Sleep(1500 * time.Millisecond)
	if n := len(rec.calls("doomed")); n != 3 {
		t.Fatalf("%d calls, want 3 (the first and 2 retries)", n)
	}
	_ = b1.Close()
	// It was acknowledged (dropped): no one else of the group gets it.
	b2 := openBroker(t, nil, fastTiming)
	rec2 := newRecorder()
	if err := b2.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec2.add(m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(rec2.calls("doomed")); n > 0 {
		t.Errorf("a dropped message was delivered again %d times", n)
	}
}

// takeAndHold subscribes to b a handler that takes one message and holds
// it until its subscription ends, and publishes (through pub) until it has
// one; it returns the payload taken and all those published.
func takeAndHold(t *testing.T, b *Broker, ctx context.Context, topic, group string, pub *Broker) (string, []string) {
	t.Helper()
	taken := make(chan string, 1)
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: group, MaxInFlight: 1}, func(ctx context.Context, m *pubsub.Message) error {
		select {
		case taken <- string(m.Data):
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	var published []string
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("the holding subscriber got none of 20 messages")
		}
		p := fmt.Sprintf("m%d", i)
		publish(t, pub, topic, p)
		published = append(published, p)
		select {
		case h := <-taken:
			// A few more, some of which queue up behind the one held.
			for j := range 4 {
				p := fmt.Sprintf("n%d", j)
				publish(t, pub, topic, p)
				published = append(published, p)
			}
			return h, published
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// rawClient is a plain client of the test server.
func rawClient(t *testing.T, id string, clean bool) (mqtt.Client, bool) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(serverURL).SetClientID(id).SetCleanSession(clean).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting: %v", tok.Error())
	}
	return c, tok.(*mqtt.ConnectToken).SessionPresent()
}

// marks lists the registry marks retained for group and topic.
func marks(t *testing.T, group, topic string) []string {
	t.Helper()
	c, _ := rawClient(t, unique("inspect"), true)
	defer c.Disconnect(100)
	var mu sync.Mutex
	var out []string
	tok := c.Subscribe(registryRoot+"/"+registryKey(group, topic)+"/+", 1, func(_ mqtt.Client, m mqtt.Message) {
		if m.Retained() && len(m.Payload()) > 0 {
			mu.Lock()
			out = append(out, m.Topic())
			mu.Unlock()
		}
	})
	tok.Wait()
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	return out
}

// sessionExists reports whether the server keeps a session for client id
// (and removes the one the check makes).
func sessionExists(t *testing.T, id string) bool {
	t.Helper()
	c, present := rawClient(t, id, false)
	c.Disconnect(100)
	c, _ = rawClient(t, id, true)
	c.Disconnect(100)
	return present
}

// A subscription cancelled with a message in hand leaves its session to a
// live member of the group, which delivers the message, clears the mark
// and removes the session.
func TestAbandonedSessionTakenOver(t *testing.T) {
	b1 := openBroker(t, nil, fastTiming)
	b2 := openBroker(t, nil, fastTiming)
	topic, group := unique("abandon"), unique("g")
	rec := newRecorder()
	if err := b2.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec.add(m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx1, cancel1 := context.WithCancel(t.Context())
	defer cancel1()
	held, published := takeAndHold(t, b1, ctx1, topic, group, b2)
	var b1ID string
	b1.mu.Lock()
	for id := range b1.live {
		b1ID = id
	}
	b1.mu.Unlock()
	cancel1()
	rec.waitFor(t, 10*time.Second, held)
	rec.waitFor(t, 10*time.Second, published...)
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(marks(t, group, topic)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the mark of the session taken over is still there: %v", marks(t, group, topic))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if sessionExists(t, b1ID) {
		t.Errorf("the abandoned session %s was not removed", b1ID)
	}
}

// A subscription whose session holds nothing removes it on the way out.
func TestCleanExitRemovesSession(t *testing.T) {
	b := openBroker(t, nil, fastTiming)
	topic, group := unique("exit"), unique("g")
	rec := newRecorder()
	ctx, cancel := context.WithCancel(t.Context())
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec.add(m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var id string
	b.mu.Lock()
	for k := range b.live {
		id = k
	}
	b.mu.Unlock()
	publish(t, b, topic, "one")
	rec.waitFor(t, 10*time.Second, "one")
	cancel()
	_ = b.Close()
	if sessionExists(t, id) {
		t.Errorf("session %s left on the server", id)
	}
	if m := marks(t, group, topic); len(m) > 0 {
		t.Errorf("marks left: %v", m)
	}
}

// proxy is a TCP proxy to the test server whose connections can be cut,
// as a network failure or the crash of a process would, and which can
// refuse new ones.
type proxy struct {
	url    string
	mu     sync.Mutex
	conns  []net.Conn
	refuse bool
}

func newProxy(t *testing.T) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	p := &proxy{url: "tcp://" + l.Addr().String()}
	target := strings.TrimPrefix(serverURL, "tcp://")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			refuse := p.refuse
			p.mu.Unlock()
			if refuse {
				_ = c.Close()
				continue
			}
			s, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); _ = s.Close(); _ = c.Close() }()
			go func() { _, _ = io.Copy(c, s); _ = s.Close(); _ = c.Close() }()
		}
	}()
	return p
}

// cut closes every connection through the proxy; with refuse, new ones
// are refused from then on.
func (p *proxy) cut(refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = refuse
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// A subscriber whose connection dies (its process crashed) leaves its
// session marked by its will: another member of the group takes it over
// after lostDelay, with the message it held and those the server queued
// for it meanwhile.
func TestLostSessionTakenOver(t *testing.T) {
	p := newProxy(t)
	b1 := openBroker(t, map[string]string{"url": p.url}, fastTiming)
	b2 := openBroker(t, nil, fastTiming)
	topic, group := unique("crash"), unique("g")
	rec := newRecorder()
	if err := b2.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec.add(m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	held, published := takeAndHold(t, b1, t.Context(), topic, group, b2)
	p.cut(true)
	// Published after the crash: the server shares them between b2 and
	// the dead session until b2 takes it over.
	var after []string
	for i := range 10 {
		after = append(after, fmt.Sprintf("after-%d", i))
	}
	publish(t, b2, topic, after...)
	rec.waitFor(t, 15*time.Second, held)
	rec.waitFor(t, 15*time.Second, append(published, after...)...)
}

// Two subscriptions of one broker in one group: when one ends with
// messages in hand, the other takes its session over.
func TestSiblingTakesOver(t *testing.T) {
	b := openBroker(t, nil, fastTiming)
	topic, group := unique("sibling"), unique("g")
	rec := newRecorder()
	if err := b.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec.add(m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	held, published := takeAndHold(t, b, ctx, topic, group, b)
	cancel()
	rec.waitFor(t, 10*time.Second, held)
	rec.waitFor(t, 10*time.Second, published...)
}

// A subscriber whose connection drops and comes back keeps its session:
// the other member of the group leaves it alone, and the subscriber gets
// the message it held again.
func TestReconnectKeepsSession(t *testing.T) {
	p := newProxy(t)
	b1 := openBroker(t, map[string]string{"url": p.url}, defaultTiming)
	b2 := openBroker(t, nil, defaultTiming)
	topic, group := unique("blip"), unique("g")
	rec1, rec2 := newRecorder(), newRecorder()
	var first sync.Once
	cut := make(chan struct{})
	if err := b1.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec1.add(m)
		var wait bool
		first.Do(func() { wait = true })
		if wait {
			<-cut // the connection is cut while the message is in hand
			return errors.New("failed while disconnected")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b2, topic, "held")
	rec1.waitFor(t, 10*time.Second, "held")
	if err := b2.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec2.add(m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p.cut(false)
	close(cut)
	deadline := time.Now().Add(15 * time.Second)
	for len(rec1.calls("held")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the message held when the connection dropped did not come back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(defaultTiming.lostDelay + time.Second)
	if n := len(rec2.calls("held")); n > 0 {
		t.Errorf("the other member took over a session whose owner came back (%d deliveries)", n)
	}
	if m := marks(t, group, topic); len(m) > 0 {
		t.Errorf("the reconnected session is still marked: %v", m)
	}
	// Both members still share the topic.
	var more []string
	for i := range 10 {
		more = append(more, fmt.Sprintf("later-%d", i))
	}
	publish(t, b2, topic, more...)
	deadline = time.Now().Add(10 * time.Second)
	for {
		n1, n2 := 0, 0
		for _, m := range more {
			n1 += len(rec1.calls(m))
			n2 += len(rec2.calls(m))
		}
		if n1+n2 >= len(more) {
			if n1 == 0 || n2 == 0 {
				t.Errorf("split %d / %d after the reconnect, want both members served", n1, n2)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d later messages delivered", n1+n2, len(more))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestQoS2(t *testing.T) {
	b := openBroker(t, map[string]string{"qos": "2", "backOffInitialInterval": "50ms"}, fastTiming)
	topic, group := unique("qos2"), unique("g")
	rec := newRecorder()
	if err := b.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec.add(m)
		if len(rec.calls(string(m.Data))) == 1 {
			return errors.New("once")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "a", "b")
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.calls("a")) < 2 || len(rec.calls("b")) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("calls a %d, b %d; want 2 each", len(rec.calls("a")), len(rec.calls("b")))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCleanSession(t *testing.T) {
	b := openBroker(t, map[string]string{"cleanSession": "true"}, fastTiming)
	topic, group := unique("clean"), unique("g")
	rec := newRecorder()
	ctx, cancel := context.WithCancel(t.Context())
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
		rec.add(m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "x")
	rec.waitFor(t, 10*time.Second, "x")
	b.mu.Lock()
	watched := len(b.watches)
	b.mu.Unlock()
	if watched != 0 {
		t.Errorf("a clean-session subscription watches the registry")
	}
	cancel()
}

func TestConsumerIDIsGroup(t *testing.T) {
	group := unique("app")
	b1 := openBroker(t, map[string]string{"consumerID": group}, fastTiming)
	b2 := openBroker(t, map[string]string{"consumerID": group}, fastTiming)
	topic := unique("cid")
	rec := newRecorder()
	for i, b := range []*Broker{b1, b2} {
		// Different request groups: consumerID replaces them, so the two
		// compete.
		if err := b.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: topic, Group: fmt.Sprintf("req%d", i)}, func(ctx context.Context, m *pubsub.Message) error {
			rec.add(m)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("c%d", i))
	}
	publish(t, b1, topic, want...)
	rec.waitFor(t, 10*time.Second, want...)
	time.Sleep(300 * time.Millisecond)
	for _, w := range want {
		if n := len(rec.calls(w)); n != 1 {
			t.Errorf("%s delivered %d times, want once (one group)", w, n)
		}
	}
}

func TestBulkPublishErrors(t *testing.T) {
	b := openBroker(t, nil, fastTiming)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := b.BulkPublish(ctx, unique("bulk"), []pubsub.Message{{Data: []byte("a")}, {Data: []byte("b")}})
	var be *pubsub.BulkError
	if err != nil && (!errors.As(err, &be) || len(be.Failed) == 0) {
		t.Errorf("BulkPublish with a cancelled context: %v, want nil or a BulkError", err)
	}
	if err := b.BulkPublish(t.Context(), "a/#", []pubsub.Message{{}}); err == nil {
		t.Error("BulkPublish to a wildcard topic succeeded")
	}
}

func TestRetain(t *testing.T) {
	b := openBroker(t, nil, fastTiming)
	topic := unique("retain")
	if err := b.Publish(t.Context(), topic, pubsub.Message{Data: []byte("x"), Metadata: map[string]string{"retain": "maybe"}}); err == nil {
		t.Error("a bad retain value was accepted")
	}
	err := b.BulkPublish(t.Context(), topic, []pubsub.Message{{Data: []byte("a")}, {Data: []byte("b"), Metadata: map[string]string{"retain": "maybe"}}})
	var be *pubsub.BulkError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[1] == nil {
		t.Errorf("BulkPublish with a bad retain at index 1: %v", err)
	}
	if err := b.Publish(t.Context(), topic, pubsub.Message{Data: []byte("kept"), Metadata: map[string]string{"retain": "true"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // clear the retained message off the shared server
		_ = b.Publish(context.Background(), topic, pubsub.Message{Metadata: map[string]string{"retain": "true"}})
	})
	c, _ := rawClient(t, unique("inspect"), true)
	defer c.Disconnect(100)
	got := make(chan mqtt.Message, 1)
	c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m:
		default:
		}
	}).Wait()
	select {
	case m := <-got:
		if !m.Retained() || string(m.Payload()) != "kept" {
			t.Errorf("got %q retained %v", m.Payload(), m.Retained())
		}
	case <-time.After(5 * time.Second):
		t.Error("the message published with retain true was not retained")
	}
}

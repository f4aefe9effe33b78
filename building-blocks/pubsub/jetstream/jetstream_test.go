package jetstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/building-blocks/pubsub/pubsubtest"
	"github.com/outrigger/outrigger/config/metadata"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

// testURL is the NATS server (with JetStream) the tests share with others;
// OUTRIGGER_TEST_NATS_URL overrides it. The tests fail when it does not
// answer.
func testURL() string {
	if u := os.Getenv("OUTRIGGER_TEST_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

func unique(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// admin is a plain JetStream client of url, closed with t.
func admin(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("NATS at %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// deleteStreams deletes the named streams of url (those that exist).
func deleteStreams(t *testing.T, url string, names []string) {
	t.Helper()
	if len(names) == 0 {
		return
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Errorf("deleting streams %v: %v", names, err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range names {
		if err := js.DeleteStream(ctx, n); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("deleting stream %q: %v", n, err)
		}
	}
}

// testBroker opens a broker on url with meta added to natsURL, closed with
// t; the streams it creates are deleted after.
func testBroker(t *testing.T, url string, meta map[string]string) *Broker {
	t.Helper()
	m := map[string]string{"natsURL": url, "name": "outrigger-test"}
	for k, v := range meta {
		m[k] = v
	}
	b, unknown, err := New(m)
	if err != nil {
		t.Fatalf("NATS JetStream at %s: %v", url, err)
	}
	if len(unknown) > 0 {
		t.Fatalf("unknown keys %v", unknown)
	}
	t.Cleanup(func() { deleteStreams(t, url, b.createdStreams()) })
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// conformance runs the suite with brokers of meta; every test's streams
// are deleted after its last broker closed.
func conformance(t *testing.T, meta func(t *testing.T) map[string]string) {
	url := testURL()
	var mu sync.Mutex
	brokers := map[*testing.T]*[]*Broker{}
	pubsubtest.Run(t, func(t *testing.T) pubsub.Broker {
		m := map[string]string{"natsURL": url, "ackWait": "2s", "name": "outrigger-conformance"}
		for k, v := range meta(t) {
			m[k] = v
		}
		b, _, err := New(m)
		if err != nil {
			t.Fatalf("NATS JetStream at %s: %v", url, err)
		}
		mu.Lock()
		defer mu.Unlock()
		list := brokers[t]
		if list == nil {
			// Registered before the suite's Close of this first broker,
			// so it runs after every Close of the test.
			list = new([]*Broker)
			brokers[t] = list
			extra := meta(t)["streamName"]
			t.Cleanup(func() {
				mu.Lock()
				var names []string
				for _, b := range *list {
					names = append(names, b.createdStreams()...)
				}
				mu.Unlock()
				if extra != "" && !slices.Contains(names, extra) {
					names = append(names, extra)
				}
				deleteStreams(t, url, names)
			})
		}
		*list = append(*list, b)
		return b
	}, pubsubtest.Options{RedeliveryWithin: 2 * time.Second})
}

// TestConformance: a stream per topic, created by the broker.
func TestConformance(t *testing.T) {
	conformance(t, func(*testing.T) map[string]string { return nil })
}

// TestConformanceOneStream: every topic of a test in one stream, named by
// streamName.
func TestConformanceOneStream(t *testing.T) {
	var mu sync.Mutex
	names := map[*testing.T]string{}
	conformance(t, func(t *testing.T) map[string]string {
		mu.Lock()
		defer mu.Unlock()
		if names[t] == "" {
			names[t] = unique("outrigger-test-stream")
		}
		return map[string]string{"streamName": names[t]}
	})
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", Type, Metadata{})
}

func TestMetadataErrors(t *testing.T) {
	const url = "nats://127.0.0.1:4222"
	with := func(kv ...string) map[string]string {
		m := map[string]string{"natsURL": url}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		meta map[string]string
		want string
	}{
		{"no URL", map[string]string{}, "metadata natsURL: required"},
		{"bad scheme", with("natsURL", "http://localhost:4222"), `scheme "http"`},
		{"empty URL in a list", with("natsURL", "nats://a:4222,,nats://b:4222"), "an empty address"},
		{"stream name with a dot", with("streamName", "a.b"), `metadata streamName "a.b"`},
		{"zero ack wait", with("ackWait", "0"), "metadata ackWait 0s: must be positive"},
		{"bad ack wait", with("ackWait", "soon"), `metadata ackWait "soon"`},
		{"ack policy none", with("ackPolicy", "none"), `metadata ackPolicy "none": not supported`},
		{"ack policy all", with("ackPolicy", "all"), `metadata ackPolicy "all": not supported`},
		{"unknown ack policy", with("ackPolicy", "some"), "want explicit"},
		{"unknown deliver policy", with("deliverPolicy", "first"), `metadata deliverPolicy "first": want all, last, new, sequence or time`},
		{"sequence without start", with("deliverPolicy", "sequence"), "deliverPolicy sequence: needs startSequence"},
		{"time without start", with("deliverPolicy", "time"), "deliverPolicy time: needs startTime"},
		{"two starts", with("startSequence", "4", "startTime", "1630349391"), "set at most one"},
		{"deliverAll against new", with("deliverAll", "true", "deliverPolicy", "new"), "conflicts with deliverAll"},
		{"start sequence against last", with("startSequence", "4", "deliverPolicy", "last"), "conflicts with startSequence"},
		{"negative start sequence", with("startSequence", "-1"), "startSequence -1"},
		{"negative start time", with("startTime", "-1"), "startTime -1"},
		{"bad back-off", with("backOff", "1s, later"), `metadata backOff "later"`},
		{"zero back-off", with("backOff", "0s"), `metadata backOff "0s": must be positive`},
		{"back-off beyond max deliver", with("backOff", "1s,2s,3s", "maxDeliver", "2"), "3 delays but maxDeliver 2"},
		{"max deliver", with("maxDeliver", "-2"), "metadata maxDeliver -2"},
		{"max ack pending", with("maxAckPending", "-3"), "metadata maxAckPending -3"},
		{"replicas", with("replicas", "7"), "metadata replicas 7"},
		{"rate limit", with("rateLimit", "-1"), "metadata rateLimit -1"},
		{"two heartbeats", with("hearbeat", "1s", "heartbeat", "2s"), "two spellings of one setting"},
		{"tiny heartbeat", with("hearbeat", "1ms"), "want at least 100ms"},
		{"domain and prefix", with("domain", "hub", "apiPrefix", "$JS.hub.API"), "metadata domain and apiPrefix"},
		{"jwt without seed", with("jwt", "eyJ0eXAiOiJKV1QifQ"), "metadata jwt: needs seedKey"},
		{"bad seed", with("seedKey", "SUNOTASEED"), "metadata seedKey: not an NKey seed"},
		{"token and jwt", with("token", "t", "jwt", "j", "seedKey", userSeed(t)), "either token or jwt/seedKey"},
		{"cert without key", with("tls_client_cert", "/tmp/c.pem"), "set both or neither"},
		{"missing cert files", with("tls_client_cert", "/nonexistent/c.pem", "tls_client_key", "/nonexistent/k.pem"), `metadata tls_client_cert "/nonexistent/c.pem"`},
		{"bad PEM", with("tls_client_cert", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----", "tls_client_key", "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----"), "metadata tls_client_cert and tls_client_key"},
		{"bad bool", with("deliverAll", "maybe"), `metadata deliverAll "maybe"`},
		{"bad number", with("maxDeliver", "five"), `metadata maxDeliver "five"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _, err := New(tt.meta)
			if err == nil {
				_ = b.Close()
				t.Fatalf("New(%v) succeeded, want an error containing %q", tt.meta, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%v) = %v, want an error containing %q", tt.meta, err, tt.want)
			}
		})
	}
}

func userSeed(t *testing.T) string {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(seed)
}

func decode(t *testing.T, meta map[string]string) (Metadata, []string) {
	t.Helper()
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m, unknown
}

func TestMetadataAccepted(t *testing.T) {
	m, unknown := decode(t, map[string]string{
		"natsURL":         "nats://a:4222, tls://b:4222",
		"name":            "conn",
		"streamName":      "my-stream",
		"durableName":     "my-durable",
		"queueGroupName":  "my-queue",
		"flowControl":     "true",
		"ackWait":         "10",
		"maxDeliver":      "5",
		"backOff":         "50ms, 1s, 10s",
		"maxAckPending":   "5000",
		"replicas":        "1",
		"memoryStorage":   "false",
		"rateLimit":       "1024",
		"hearbeat":        "15s",
		"ackPolicy":       "explicit",
		"domain":          "hub",
		"jwt":             "eyJ0eXAiOiJKV1QifQ",
		"seedKey":         userSeed(t),
		"tls_client_cert": "/path/to/tls.crt",
		"tls_client_key":  "/path/to/tls.key",
		"concurrency":     "parallel",
	})
	if !slices.Equal(unknown, []string{"concurrency"}) {
		t.Errorf("unknown = %v, want [concurrency]", unknown)
	}
	if m.AckWait != 10*time.Second || m.deliverPolicy != jetstream.DeliverNewPolicy || m.heartbeat != 15*time.Second {
		t.Errorf("ackWait %v, deliver policy %v, heartbeat %v", m.AckWait, m.deliverPolicy, m.heartbeat)
	}
	if !slices.Equal(m.backOff, []time.Duration{50 * time.Millisecond, time.Second, 10 * time.Second}) {
		t.Errorf("backOff %v", m.backOff)
	}

	m, _ = decode(t, map[string]string{"natsURL": "localhost:4222"})
	if m.AckWait != 30*time.Second || m.Name != "outrigger - pubsub.jetstream" || m.deliverPolicy != jetstream.DeliverNewPolicy || m.AckPolicy != "explicit" {
		t.Errorf("defaults: %+v", m)
	}
	m, _ = decode(t, map[string]string{"natsURL": "localhost:4222", "heartbeat": "2s"})
	if m.heartbeat != 2*time.Second {
		t.Errorf("heartbeat %v", m.heartbeat)
	}
}

func TestDeliverPolicies(t *testing.T) {
	tests := []struct {
		meta map[string]string
		want jetstream.DeliverPolicy
		seq  uint64
		time int64
	}{
		{map[string]string{}, jetstream.DeliverNewPolicy, 0, 0},
		{map[string]string{"deliverAll": "true"}, jetstream.DeliverAllPolicy, 0, 0},
		{map[string]string{"deliverAll": "true", "deliverPolicy": "all"}, jetstream.DeliverAllPolicy, 0, 0},
		{map[string]string{"deliverPolicy": "LAST"}, jetstream.DeliverLastPolicy, 0, 0},
		{map[string]string{"startSequence": "7"}, jetstream.DeliverByStartSequencePolicy, 7, 0},
		{map[string]string{"deliverPolicy": "sequence", "startSequence": "7"}, jetstream.DeliverByStartSequencePolicy, 7, 0},
		{map[string]string{"startTime": "1630349391"}, jetstream.DeliverByStartTimePolicy, 0, 1630349391},
		{map[string]string{"deliverPolicy": "time", "startTime": "1630349391"}, jetstream.DeliverByStartTimePolicy, 0, 1630349391},
	}
	for _, tt := range tests {
		tt.meta["natsURL"] = "nats://localhost:4222"
		m, _ := decode(t, tt.meta)
		if m.deliverPolicy != tt.want || m.optStartSeq != tt.seq {
			t.Errorf("%v: policy %v sequence %d, want %v %d", tt.meta, m.deliverPolicy, m.optStartSeq, tt.want, tt.seq)
		}
		if (m.optStartTime == nil) != (tt.time == 0) || m.optStartTime != nil && m.optStartTime.Unix() != tt.time {
			t.Errorf("%v: start time %v, want Unix %d", tt.meta, m.optStartTime, tt.time)
		}
	}
}

func TestNames(t *testing.T) {
	for _, topic := range []string{"orders", "orders.created", "a-b_c", "orders/eu", "ü"} {
		if got, err := subjectFor(topic); err != nil || got != topic {
			t.Errorf("subjectFor(%q) = %q, %v", topic, got, err)
		}
	}
	for _, topic := range []string{"", "a b", "a\tb", ".a", "a.", "a..b", "a.*", "a.>", ">", "$JS.API.STREAM.LIST", "_INBOX.x", "_OUTRIGGER.chunks.s"} {
		if _, err := subjectFor(topic); err == nil {
			t.Errorf("subjectFor(%q) accepted it", topic)
		}
	}

	if got := streamNameFor("orders-v1_x"); got != "orders-v1_x" {
		t.Errorf("streamNameFor kept no plain name: %q", got)
	}
	a, b := streamNameFor("a.b"), streamNameFor("a_b")
	if a == b || !strings.HasPrefix(a, "a_b_") || b != "a_b" {
		t.Errorf("streamNameFor: a.b -> %q, a_b -> %q", a, b)
	}
	long := streamNameFor(strings.Repeat("x", 300))
	if len(long) > maxName || long == streamNameFor(strings.Repeat("x", 301)) {
		t.Errorf("long names: %q", long)
	}
	for _, n := range []string{a, long, consumerName("app.id", "t.x", false)} {
		if strings.ContainsAny(n, ".*>/\\ ") {
			t.Errorf("name %q has a character NATS forbids", n)
		}
	}

	if got := consumerName("myapp", "orders", true); got != "myapp" {
		t.Errorf("consumer of a dedicated stream: %q", got)
	}
	x, y := consumerName("g_t", "x", false), consumerName("g", "t_x", false)
	if x == y || !strings.HasPrefix(x, "g_t_x_") {
		t.Errorf("consumers in a shared stream: %q, %q", x, y)
	}

	matches := []struct {
		pattern, subject string
		want             bool
	}{
		{"a", "a", true}, {"a", "b", false}, {"a.*", "a.b", true}, {"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true}, {"a.>", "a", false}, {">", "a", true}, {"*.b", "a.b", true},
		{"a.b", "a", false}, {"a", "a.b", false},
	}
	for _, m := range matches {
		if got := subjectMatches(m.pattern, m.subject); got != m.want {
			t.Errorf("subjectMatches(%q, %q) = %v", m.pattern, m.subject, got)
		}
	}

	if got := ttlHeader(1500 * time.Millisecond); got != "2s" {
		t.Errorf("ttlHeader(1.5s) = %q", got)
	}
	if got := ttlHeader(-time.Second); got != "1s" {
		t.Errorf("ttlHeader(-1s) = %q", got)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	b, _, err := New(map[string]string{"natsURL": "nats://" + addr})
	if err == nil {
		_ = b.Close()
		t.Fatalf("New on %s, where nothing listens, succeeded", addr)
	}
	if !strings.Contains(err.Error(), "connecting to nats://"+addr) {
		t.Errorf("error %v, want one naming the address", err)
	}
}

// nextRaw reads the next message of subject in stream with a plain
// consumer, as any NATS client would.
func nextRaw(t *testing.T, s jetstream.Stream, subject string, startSeq uint64) jetstream.Msg {
	t.Helper()
	cfg := jetstream.ConsumerConfig{FilterSubject: subject, AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute}
	if startSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, startSeq
	}
	c, err := s.CreateConsumer(ctxFor(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("reading %s with a plain consumer: %v", subject, err)
	}
	return m
}

// TestLayout checks what other NATS clients see: the stream, the
// consumer, and a message's headers.
func TestLayout(t *testing.T) {
	url := testURL()
	b := testBroker(t, url, map[string]string{"ackWait": "2s"})
	js := admin(t, url)
	ctx := ctxFor(t, 60*time.Second)
	topic, group := unique("layout"), unique("g")

	got := make(chan *pubsub.Message, 10)
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: group}, func(_ context.Context, m *pubsub.Message) error {
		got <- m
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	s, err := js.Stream(ctx, topic)
	if err != nil {
		t.Fatalf("the topic's stream: %v", err)
	}
	sc := s.CachedInfo().Config
	if !slices.Equal(sc.Subjects, []string{topic, "_OUTRIGGER.chunks." + topic}) || !strings.HasPrefix(sc.Description, managedMark) ||
		sc.Retention != jetstream.LimitsPolicy || sc.Storage != jetstream.FileStorage {
		t.Errorf("stream config %+v", sc)
	}
	c, err := s.Consumer(ctx, group)
	if err != nil {
		t.Fatalf("the group's consumer: %v", err)
	}
	cc := c.CachedInfo().Config
	if cc.Durable != group || cc.FilterSubject != topic || cc.DeliverPolicy != jetstream.DeliverNewPolicy ||
		cc.AckPolicy != jetstream.AckExplicitPolicy || cc.AckWait != 2*time.Second || cc.DeliverSubject != "" {
		t.Errorf("consumer config %+v", cc)
	}

	expires := time.Now().Add(time.Hour)
	meta := map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "key with space": "line 1\nline 2"}
	if err := b.Publish(ctx, topic, pubsub.Message{Data: []byte(`{"hello":"world"}`), ContentType: "application/json", Expires: expires, Metadata: meta}); err != nil {
		t.Fatal(err)
	}

	raw := nextRaw(t, s, topic, 0)
	h := raw.Headers()
	if raw.Subject() != topic || string(raw.Data()) != `{"hello":"world"}` {
		t.Errorf("subject %q data %q", raw.Subject(), raw.Data())
	}
	if v := h.Get("Content-Type"); v != "application/json" {
		t.Errorf("Content-Type %q", v)
	}
	if v := h.Get("Outrigger-Expires"); v != expires.UTC().Format(time.RFC3339Nano) {
		t.Errorf("Outrigger-Expires %q, want %q", v, expires.UTC().Format(time.RFC3339Nano))
	}
	var gotMeta map[string]string
	if err := json.Unmarshal([]byte(h.Get("Outrigger-Metadata")), &gotMeta); err != nil || !mapsEqual(gotMeta, meta) {
		t.Errorf("Outrigger-Metadata %q (%v)", h.Get("Outrigger-Metadata"), err)
	}
	if h.Get("Nats-Msg-Id") == "" || h.Get("Outrigger-Chunks") != "" {
		t.Errorf("headers %v", h)
	}
	if (h.Get("Nats-TTL") != "") != sc.AllowMsgTTL {
		t.Errorf("Nats-TTL %q on a stream with AllowMsgTTL %v", h.Get("Nats-TTL"), sc.AllowMsgTTL)
	}

	select {
	case m := <-got:
		md, _ := raw.Metadata()
		if m.Topic != topic || string(m.Data) != `{"hello":"world"}` || m.ContentType != "application/json" ||
			!m.Expires.Equal(expires) || !mapsEqual(m.Metadata, meta) || m.ID != fmt.Sprintf("%s/%d", topic, md.Sequence.Stream) {
			t.Errorf("delivered %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not delivered")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestLargeMessages: messages beyond max_payload go in parts, singly and
// in bulk.
func TestLargeMessages(t *testing.T) {
	url := testURL()
	b := testBroker(t, url, map[string]string{"ackWait": "5s"})
	js := admin(t, url)
	ctx := ctxFor(t, 60*time.Second)
	topic := unique("large")

	var mu sync.Mutex
	got := map[string][]byte{}
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: unique("g")}, func(_ context.Context, m *pubsub.Message) error {
		mu.Lock()
		got[m.ContentType] = m.Data
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3*int(b.nc.MaxPayload())+12345)
	_, _ = rand.Read(big)
	if err := b.Publish(ctx, topic, pubsub.Message{Data: big, ContentType: "big"}); err != nil {
		t.Fatal(err)
	}
	bulk := []pubsub.Message{
		{Data: []byte("small"), ContentType: "small"},
		{Data: big[:int(b.nc.MaxPayload())], ContentType: "exactly max_payload"},
		{Data: []byte("after"), ContentType: "after"},
	}
	if err := b.BulkPublish(ctx, topic, bulk); err != nil {
		t.Fatal(err)
	}

	s, err := js.Stream(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	head := nextRaw(t, s, topic, 0)
	parts := strings.Split(head.Headers().Get("Outrigger-Chunks"), ",")
	if len(head.Data()) != 0 || len(parts) < 4 || head.Headers().Get("Outrigger-Size") != strconv.Itoa(len(big)) {
		t.Errorf("head of a large message: %d bytes of data, headers %v", len(head.Data()), head.Headers())
	}
	first, _ := strconv.ParseUint(parts[0], 10, 64)
	if part := nextRaw(t, s, "_OUTRIGGER.chunks."+topic, first); len(part.Data()) == 0 || !bytes.Equal(part.Data(), big[:len(part.Data())]) {
		t.Errorf("the first part holds %d bytes, not the start of the message", len(part.Data()))
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		done := len(got) == 4
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(got["big"], big) || !bytes.Equal(got["exactly max_payload"], bulk[1].Data) ||
		string(got["small"]) != "small" || string(got["after"]) != "after" {
		t.Errorf("delivered: big %d bytes, max_payload %d, small %q, after %q", len(got["big"]), len(got["exactly max_payload"]), got["small"], got["after"])
	}
}

// TestExistingStream: a stream made by someone else is used as Dapr does
// (found by subject, or named), and left as it is.
func TestExistingStream(t *testing.T) {
	url := testURL()
	js := admin(t, url)
	ctx := ctxFor(t, 60*time.Second)
	name, prefix := unique("outrigger-test-user"), unique("user")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteStreams(t, url, []string{name}) })

	b := testBroker(t, url, map[string]string{"ackWait": "2s"})
	topic, group := prefix+".orders", unique("g")
	got := make(chan string, 1)
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: group}, func(_ context.Context, m *pubsub.Message) error {
		got <- string(m.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, topic, pubsub.Message{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d != "x" {
			t.Errorf("got %q", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered")
	}
	if created := b.createdStreams(); len(created) > 0 {
		t.Errorf("created %v although %s takes the topic", created, name)
	}
	s, _ := js.Stream(ctx, name)
	if _, err := s.Consumer(ctx, consumerName(group, topic, false)); err != nil {
		t.Errorf("the group's consumer in a shared stream: %v", err)
	}
	big := make([]byte, b.nc.MaxPayload()+1)
	if err := b.Publish(ctx, topic, pubsub.Message{Data: big}); err == nil || !strings.Contains(err.Error(), "does not take subject \"_OUTRIGGER.chunks.") {
		t.Errorf("a large message to a stream without a subject for parts: %v", err)
	}

	named := testBroker(t, url, map[string]string{"streamName": name})
	if err := named.Publish(ctx, unique("elsewhere"), pubsub.Message{Data: []byte("x")}); err == nil || !strings.Contains(err.Error(), "does not take subject") {
		t.Errorf("a topic the named stream does not take: %v", err)
	}
	if s, _ := js.Stream(ctx, name); !slices.Equal(s.CachedInfo().Config.Subjects, []string{prefix + ".>"}) {
		t.Errorf("the stream's subjects changed: %v", s.CachedInfo().Config.Subjects)
	}
}

// TestAbandonedAfterAckWait: a subscriber whose process dies holding a
// message (no answer reaches the server) loses it to another of its group
// once ackWait has passed.
func TestAbandonedAfterAckWait(t *testing.T) {
	url := testURL()
	b1 := testBroker(t, url, map[string]string{"ackWait": "1s"})
	b2 := testBroker(t, url, map[string]string{"ackWait": "1s"})
	ctx := ctxFor(t, 60*time.Second)
	topic, group := unique("abandoned"), unique("g")

	taken := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	if err := b1.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: group, MaxInFlight: 1}, func(context.Context, *pubsub.Message) error {
		taken <- struct{}{}
		<-release
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b1.Publish(ctx, topic, pubsub.Message{Data: []byte("orphan")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-taken:
	case <-time.After(10 * time.Second):
		t.Fatal("the first subscriber did not get the message")
	}
	start := time.Now()
	b1.nc.Close() // the process is gone: no nak, no ack

	got := make(chan string, 1)
	if err := b2.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: group}, func(_ context.Context, m *pubsub.Message) error {
		got <- string(m.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		t.Logf("%q came back to the group after %v", d, time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("the abandoned message never reached the other subscriber")
	}
}

// embedded runs a NATS server with JetStream, its store in dir, on port
// (0: any), until stopped.
func embedded(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	s, err := startEmbedded(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startEmbedded(dir string, port int) (*server.Server, error) {
	if port == 0 {
		port = -1
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("the embedded NATS server did not start on port %d", port)
	}
	return s, nil
}

func stop(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// TestServerRestart restarts the server (same store) in the middle of a
// publish loop: every publish that returned nil is delivered, at least
// once, after the restart.
func TestServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv := embedded(t, dir, 0)
	port := srv.Addr().(*net.TCPAddr).Port
	var srvMu sync.Mutex
	t.Cleanup(func() { srvMu.Lock(); stop(srv); srvMu.Unlock() })
	url := "nats://127.0.0.1:" + strconv.Itoa(port)

	b, _, err := New(map[string]string{"natsURL": url, "ackWait": "2s"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	ctx := ctxFor(t, 90*time.Second)
	const topic = "restart"

	var mu sync.Mutex
	got := map[string]int{}
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: "g"}, func(_ context.Context, m *pubsub.Message) error {
		mu.Lock()
		got[string(m.Data)]++
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	restart, restarted := make(chan struct{}), make(chan error, 1)
	go func() {
		<-restart
		srvMu.Lock()
		defer srvMu.Unlock()
		stop(srv)
		time.Sleep(300 * time.Millisecond)
		s, err := startEmbedded(dir, port)
		if err == nil {
			srv = s
		}
		restarted <- err
	}()

	var acked []string
	failed, after, back := 0, 0, false
	for i := 0; after < 100; i++ {
		if i == 100 {
			close(restart)
		}
		if !back {
			select {
			case err := <-restarted:
				if err != nil {
					t.Fatal(err)
				}
				back = true
			default:
			}
		}
		if back {
			after++
		}
		if i > 100000 {
			t.Fatal("the server did not come back")
		}
		data := "m-" + strconv.Itoa(i)
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := b.Publish(pctx, topic, pubsub.Message{Data: []byte(data)})
		cancel()
		if err != nil {
			failed++
			t.Logf("publish %d failed (allowed; it may or may not be delivered): %v", i, err)
			continue
		}
		acked = append(acked, data)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for _, d := range acked {
			if got[d] == 0 {
				missing++
			}
		}
		dups := 0
		for _, n := range got {
			dups += n - 1
		}
		mu.Unlock()
		if missing == 0 {
			t.Logf("%d publishes acknowledged (%d failed) across the restart; all delivered, %d duplicate deliveries", len(acked), failed, dups)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged publishes not delivered after the restart", missing, len(acked))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPerMessageTTL: on a server with per-message TTLs (2.11 and later),
// the streams the broker creates allow them and an expiring message
// carries one, so the server drops it itself.
func TestPerMessageTTL(t *testing.T) {
	srv := embedded(t, t.TempDir(), 0)
	t.Cleanup(func() { stop(srv) })
	url := srv.ClientURL()
	b := testBroker(t, url, nil)
	js := admin(t, url)
	ctx := ctxFor(t, 30*time.Second)

	if err := b.Publish(ctx, "ttl", pubsub.Message{Data: []byte("short"), Expires: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "ttl", pubsub.Message{Data: []byte("none")}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "ttl")
	if err != nil {
		t.Fatal(err)
	}
	if !s.CachedInfo().Config.AllowMsgTTL {
		t.Fatalf("the stream does not allow per-message TTLs (server %s)", srv.ID())
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Header.Get("Nats-TTL"); v != "1s" {
		t.Errorf("Nats-TTL %q, want 1s", v)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.GetMsg(ctx, 1)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the expired message is still in the stream (%v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := s.GetMsg(ctx, 2); err != nil {
		t.Errorf("the message without expiry: %v", err)
	}
}

// TestStreamDeleted: a topic's stream deleted under the broker is created
// again by the next publish, and the subscription picks up again.
func TestStreamDeleted(t *testing.T) {
	url := testURL()
	b := testBroker(t, url, map[string]string{"ackWait": "2s"})
	js := admin(t, url)
	ctx := ctxFor(t, 60*time.Second)
	topic := unique("deleted")

	got := make(chan string, 100)
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: unique("g")}, func(_ context.Context, m *pubsub.Message) error {
		got <- string(m.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, topic); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; ; i++ {
		if err := b.Publish(ctx, topic, pubsub.Message{Data: []byte("after-" + strconv.Itoa(i))}); err != nil {
			t.Fatalf("publish after the stream was deleted: %v", err)
		}
		select {
		case d := <-got:
			t.Logf("the subscription got %q %v after the stream was deleted", d, time.Since(start).Round(time.Millisecond))
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("the subscription did not pick up again")
		}
	}
}

// TestRateLimitAndHeartbeat: rateLimit spreads deliveries (in progress
// meanwhile, so a short ack wait does not redeliver), with pull heartbeats
// on.
func TestRateLimitAndHeartbeat(t *testing.T) {
	url := testURL()
	b := testBroker(t, url, map[string]string{"ackWait": "1s", "rateLimit": "80000", "hearbeat": "1s"})
	ctx := ctxFor(t, 60*time.Second)
	topic := unique("rate")

	var mu sync.Mutex
	var times []time.Time
	count := map[string]int{}
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic, Group: unique("g")}, func(_ context.Context, m *pubsub.Message) error {
		mu.Lock()
		times = append(times, time.Now())
		count[string(m.Data[:1])]++
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	msgs := make([]pubsub.Message, 5)
	for i := range msgs {
		msgs[i] = pubsub.Message{Data: bytes.Repeat([]byte{byte('a' + i)}, 5000)} // 40000 bits: half a second each
	}
	if err := b.BulkPublish(ctx, topic, msgs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(count)
		mu.Unlock()
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 5 messages delivered", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // a redelivery would show by now
	mu.Lock()
	defer mu.Unlock()
	if spread := times[len(times)-1].Sub(times[0]); spread < 1800*time.Millisecond {
		t.Errorf("5 messages of 40000 bits at 80000 bits/s delivered within %v", spread)
	}
	for k, n := range count {
		if n != 1 {
			t.Errorf("message %s delivered %d times", k, n)
		}
	}
}

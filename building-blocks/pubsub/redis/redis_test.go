package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/building-blocks/pubsub/pubsubtest"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

// redisAddr is the Redis server the tests use. It is shared with other
// tests, so the brokers of a test put their streams under a prefix of its
// own, and the streams are deleted when the test ends. The tests fail, not
// skip, when it does not answer.
const redisAddr = "127.0.0.1:6379"

// fast is the metadata of brokers whose redelivery tests wait for.
var fast = map[string]string{"processingTimeout": "1s", "redeliverInterval": "1s"}

// testPrefix is a fresh stream name prefix whose keys are deleted when t
// ends. Call it before opening brokers, so that they are closed before the
// deletion.
func testPrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "outrigger-test:pubsub-redis:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		c := goredis.NewClient(&goredis.Options{Addr: redisAddr})
		defer func() { _ = c.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator() // the prefix holds no glob characters
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup: scanning %s*: %v", prefix, err)
			return
		}
		for chunk := range slices.Chunk(keys, 500) {
			if err := c.Del(ctx, chunk...).Err(); err != nil {
				t.Errorf("cleanup: deleting streams: %v", err)
			}
		}
	})
	return prefix
}

// newBroker opens a broker on redisAddr with streams under prefix and meta
// added to the metadata. The caller closes it.
func newBroker(t *testing.T, prefix string, meta map[string]string) *Broker {
	t.Helper()
	m := map[string]string{"redisHost": redisAddr}
	maps.Copy(m, meta)
	b, unknown, err := open(m, prefix)
	if err != nil {
		t.Fatalf("opening a broker on %s (a Redis server must run there): %v", redisAddr, err)
	}
	if len(unknown) != 0 {
		t.Fatalf("unknown metadata %q", unknown)
	}
	return b
}

// openBroker is newBroker, closed when t ends.
func openBroker(t *testing.T, prefix string, meta map[string]string) *Broker {
	t.Helper()
	b := newBroker(t, prefix, meta)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// rawClient is a plain client of redisAddr, closed when t ends.
func rawClient(t *testing.T) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// inbox collects deliveries.
type inbox struct {
	mu   sync.Mutex
	msgs []pubsub.Message
	ch   chan pubsub.Message
}

func newInbox() *inbox { return &inbox{ch: make(chan pubsub.Message, 100)} }

func (in *inbox) handler(_ context.Context, m *pubsub.Message) error {
	in.mu.Lock()
	in.msgs = append(in.msgs, *m)
	in.mu.Unlock()
	in.ch <- *m
	return nil
}

func (in *inbox) next(t *testing.T, within time.Duration) pubsub.Message {
	t.Helper()
	select {
	case m := <-in.ch:
		return m
	case <-time.After(within):
		t.Fatalf("nothing delivered within %v", within)
		return pubsub.Message{}
	}
}

func (in *inbox) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.msgs)
}

func TestConformance(t *testing.T) {
	var mu sync.Mutex
	prefixes := map[*testing.T]string{}
	pubsubtest.Run(t, func(t *testing.T) pubsub.Broker {
		mu.Lock()
		p, ok := prefixes[t]
		if !ok {
			p = testPrefix(t)
			prefixes[t] = p
		}
		mu.Unlock()
		return newBroker(t, p, fast)
	}, pubsubtest.Options{RedeliveryWithin: 5 * time.Second})
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", Type, Metadata{})
}

func TestMetadataErrors(t *testing.T) {
	tests := []struct {
		name string
		meta map[string]string
		want string
	}{
		{"no host", map[string]string{}, "redisHost: required"},
		{"no port", map[string]string{"redisHost": "localhost"}, "want host:port"},
		{"no host name", map[string]string{"redisHost": ":6379"}, "want host:port"},
		{"bad port", map[string]string{"redisHost": "localhost:0"}, "want host:port"},
		{"negative db", map[string]string{"redisHost": redisAddr, "redisDB": "-1"}, "redisDB -1"},
		{"bad duration", map[string]string{"redisHost": redisAddr, "processingTimeout": "soon"}, "processingTimeout"},
		{"negative processing timeout", map[string]string{"redisHost": redisAddr, "processingTimeout": "-1s"}, "processingTimeout -1s"},
		{"negative redeliver interval", map[string]string{"redisHost": redisAddr, "redeliverInterval": "-1s"}, "redeliverInterval -1s"},
		{"negative stream ttl", map[string]string{"redisHost": redisAddr, "streamTTL": "-1m"}, "streamTTL -1m"},
		{"sub-millisecond stream ttl", map[string]string{"redisHost": redisAddr, "streamTTL": "10us"}, "at least 1ms"},
		{"negative queue depth", map[string]string{"redisHost": redisAddr, "queueDepth": "-1"}, "queueDepth -1"},
		{"zero concurrency", map[string]string{"redisHost": redisAddr, "concurrency": "0"}, "concurrency 0"},
		{"negative max len", map[string]string{"redisHost": redisAddr, "maxLenApprox": "-5"}, "maxLenApprox -5"},
		{"negative pool", map[string]string{"redisHost": redisAddr, "poolSize": "-1"}, "poolSize -1"},
		{"bad bool", map[string]string{"redisHost": redisAddr, "enableTLS": "maybe"}, "enableTLS"},
		{"cluster", map[string]string{"redisHost": redisAddr, "redisType": "cluster"}, "not supported"},
		{"failover", map[string]string{"redisHost": redisAddr, "failover": "true"}, "Sentinel"},
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

func TestMetadataDefaults(t *testing.T) {
	b, unknown, err := New(map[string]string{"redisHost": redisAddr, "redisMaxRetries": "5"})
	if err != nil {
		t.Fatalf("New on %s (a Redis server must run there): %v", redisAddr, err)
	}
	defer func() { _ = b.Close() }()
	if !slices.Equal(unknown, []string{"redisMaxRetries"}) {
		t.Errorf("unknown = %q, want [redisMaxRetries]", unknown)
	}
	want := Metadata{
		RedisHost: redisAddr, ProcessingTimeout: time.Minute, RedeliverInterval: time.Minute,
		QueueDepth: 100, Concurrency: 10, MaxRetries: 3, MaxRetryBackoff: 2 * time.Second,
		DialTimeout: 5 * time.Second, ReadTimeout: 3 * time.Second, RedisType: "node",
	}
	if b.md != want {
		t.Errorf("defaults\n got %+v\nwant %+v", b.md, want)
	}
	if f := b.Features(); f != (pubsub.Features{MessageTTL: true, Ordered: true}) {
		t.Errorf("Features() = %+v", f)
	}
}

// Dapr reads a bare number of processingTimeout and redeliverInterval as
// milliseconds; every other duration, and a number with a unit, as Go
// durations or seconds.
func TestMetadataDaprMillis(t *testing.T) {
	b := openBroker(t, "", map[string]string{
		"ProcessingTimeout": "1500", "redeliverinterval": " 250 ", "dialTimeout": "2",
		"consumerID": "grp", "queueDepth": "7", "concurrency": "3", "maxLenApprox": "1000", "streamTTL": "1h",
	})
	if b.md.ProcessingTimeout != 1500*time.Millisecond || b.md.RedeliverInterval != 250*time.Millisecond {
		t.Errorf("processingTimeout %v, redeliverInterval %v; want 1.5s and 250ms", b.md.ProcessingTimeout, b.md.RedeliverInterval)
	}
	if b.md.DialTimeout != 2*time.Second {
		t.Errorf("dialTimeout %v, want 2s (whole seconds)", b.md.DialTimeout)
	}
	if b.md.ConsumerID != "grp" || b.md.QueueDepth != 7 || b.md.Concurrency != 3 || b.md.MaxLenApprox != 1000 || b.md.StreamTTL != time.Hour {
		t.Errorf("metadata %+v", b.md)
	}
	m := openBroker(t, "", map[string]string{"processingTimeout": "2m", "redeliverInterval": "0"})
	if m.md.ProcessingTimeout != 2*time.Minute || m.md.RedeliverInterval != 0 {
		t.Errorf("processingTimeout %v, redeliverInterval %v; want 2m and 0", m.md.ProcessingTimeout, m.md.RedeliverInterval)
	}
}

func TestOptions(t *testing.T) {
	m := Metadata{
		RedisHost: "redis.example:6380", RedisUsername: "u", RedisPassword: "p", RedisDB: 3,
		EnableTLS: true, MaxRetries: 0, MaxRetryBackoff: -time.Second, DialTimeout: time.Second,
		ReadTimeout: -time.Second, WriteTimeout: 0, PoolSize: 7,
	}
	o := m.options()
	if o.Addr != "redis.example:6380" || o.Username != "u" || o.Password != "p" || o.DB != 3 || o.PoolSize != 7 {
		t.Errorf("options %+v", o)
	}
	if o.MaxRetries != -1 || o.MaxRetryBackoff != -1 || o.ReadTimeout != -1 || o.WriteTimeout != 0 {
		t.Errorf("0 retries and negative durations must be go-redis's -1 (none): retries %d backoff %v read %v write %v",
			o.MaxRetries, o.MaxRetryBackoff, o.ReadTimeout, o.WriteTimeout)
	}
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.example" || o.TLSConfig.InsecureSkipVerify {
		t.Errorf("TLS config %+v", o.TLSConfig)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	b, _, err := New(map[string]string{"redisHost": addr, "maxRetries": "0", "dialTimeout": "1s"})
	if err == nil {
		_ = b.Close()
		t.Fatalf("New on %s, where nothing listens, succeeded", addr)
	}
	if !strings.Contains(err.Error(), "connecting to "+addr) {
		t.Errorf("error %v, want one naming the address", err)
	}
}

// The stream entry: data is the payload (what Dapr's subscribers read),
// metadata a JSON object of the message metadata (as Dapr writes it), and
// the content type and expiry in Outrigger's own fields. An entry as Dapr
// writes it is delivered with its data and metadata.
func TestStreamLayout(t *testing.T) {
	prefix := testPrefix(t)
	b := openBroker(t, prefix, nil)
	raw := rawClient(t)
	ctx := ctxFor(t)

	in := newInbox()
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "orders", Group: "app"}, in.handler); err != nil {
		t.Fatal(err)
	}
	expires := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	msg := pubsub.Message{
		Data:        []byte(`{"id":1}`),
		ContentType: "application/cloudevents+json",
		Metadata:    map[string]string{"traceparent": "00-abc-def-01", "data": "not the payload"},
		Expires:     expires,
	}
	if err := b.Publish(ctx, "orders", msg); err != nil {
		t.Fatal(err)
	}
	entries, err := raw.XRange(ctx, prefix+"orders", "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("XRANGE: %v %v", entries, err)
	}
	v := entries[0].Values
	if v["data"] != `{"id":1}` {
		t.Errorf("field data = %q, want the payload", v["data"])
	}
	var md map[string]string
	if err := json.Unmarshal([]byte(v["metadata"].(string)), &md); err != nil || !maps.Equal(md, msg.Metadata) {
		t.Errorf("field metadata = %q (%v), want the metadata as JSON", v["metadata"], err)
	}
	if v["outrigger-content-type"] != "application/cloudevents+json" {
		t.Errorf("field outrigger-content-type = %q", v["outrigger-content-type"])
	}
	if v["outrigger-expires"] != strconv.FormatInt(expires.UnixMilli(), 10) {
		t.Errorf("field outrigger-expires = %q, want %d", v["outrigger-expires"], expires.UnixMilli())
	}
	if len(v) != 4 {
		t.Errorf("fields %v, want exactly data, metadata, outrigger-content-type, outrigger-expires", v)
	}

	got := in.next(t, 10*time.Second)
	if string(got.Data) != `{"id":1}` || got.ContentType != msg.ContentType || !got.Expires.Equal(expires) ||
		!maps.Equal(got.Metadata, msg.Metadata) || got.Topic != "orders" || got.ID != entries[0].ID {
		t.Errorf("delivered %+v", got)
	}

	// An entry as Dapr's publisher writes it.
	id, err := raw.XAdd(ctx, &goredis.XAddArgs{Stream: prefix + "orders", Values: map[string]any{
		"data": []byte("from dapr"), "metadata": `{"k":"v"}`,
	}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	got = in.next(t, 10*time.Second)
	if string(got.Data) != "from dapr" || !maps.Equal(got.Metadata, map[string]string{"k": "v"}) ||
		got.ContentType != "" || !got.Expires.IsZero() || got.ID != id {
		t.Errorf("Dapr's entry delivered as %+v", got)
	}

	// A message without metadata, content type or expiry is data alone.
	if err := b.Publish(ctx, "orders", pubsub.Message{Data: []byte("bare")}); err != nil {
		t.Fatal(err)
	}
	last, err := raw.XRevRangeN(ctx, prefix+"orders", "+", "-", 1).Result()
	if err != nil || len(last) != 1 || len(last[0].Values) != 1 || last[0].Values["data"] != "bare" {
		t.Errorf("bare message stored as %v (%v), want only data", last, err)
	}
	in.next(t, 10*time.Second)
}

// waitPending waits until the group's pending entries number n.
func waitPending(t *testing.T, raw *goredis.Client, stream, group string, n int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p, err := raw.XPending(t.Context(), stream, group).Result()
		if err != nil {
			t.Fatal(err)
		}
		if p.Count == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries pending in group %s after %v, want %d", p.Count, group, within, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A consumer that took an entry and died (here: a plain XREADGROUP that
// never acknowledges) loses it to a subscriber of the group once it has
// been idle for processingTimeout, not before.
func TestReclaimAfterConsumerDies(t *testing.T) {
	prefix := testPrefix(t)
	b := openBroker(t, prefix, map[string]string{"processingTimeout": "1500ms", "redeliverInterval": "200ms"})
	raw := rawClient(t)
	ctx := ctxFor(t)
	stream, group := prefix+"jobs", "workers"

	if err := raw.XGroupCreateMkStream(ctx, stream, group, "$").Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "jobs", pubsub.Message{Data: []byte("job-1")}); err != nil {
		t.Fatal(err)
	}
	// Before the read: the server delivers the entry (and starts its idle
	// time) after this, somewhere within the read's round trip.
	taken := time.Now()
	res, err := raw.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: group, Consumer: "dead", Streams: []string{stream, ">"}, Count: 1, Block: -1}).Result()
	if err != nil || len(res) != 1 || len(res[0].Messages) != 1 {
		t.Fatalf("the dead consumer's read: %v %v", res, err)
	}

	in := newInbox()
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "jobs", Group: group}, in.handler); err != nil {
		t.Fatal(err)
	}
	got := in.next(t, 10*time.Second)
	if string(got.Data) != "job-1" {
		t.Fatalf("delivered %q", got.Data)
	}
	// Redis counts idle time in whole milliseconds of its own clock.
	if d := time.Since(taken); d < 1500*time.Millisecond-2*time.Millisecond {
		t.Errorf("taken over after %v, before processingTimeout (1.5s)", d)
	}
	waitPending(t, raw, stream, group, 0, 5*time.Second)
}

// While a handler runs longer than processingTimeout, its subscription
// keeps the entry fresh: another subscriber of the group does not take it.
func TestSlowHandlerKeepsItsMessage(t *testing.T) {
	prefix := testPrefix(t)
	b1 := openBroker(t, prefix, fast)
	b2 := openBroker(t, prefix, fast)
	ctx := ctxFor(t)
	var calls atomic.Int32
	started := make(chan struct{})
	slow := func(ctx context.Context, m *pubsub.Message) error {
		if calls.Add(1) == 1 {
			close(started)
		}
		select {
		case <-time.After(3500 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := b1.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "slow", Group: "g", MaxInFlight: 1}, slow); err != nil {
		t.Fatal(err)
	}
	if err := b1.Publish(ctx, "slow", pubsub.Message{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered")
	}
	in := newInbox()
	if err := b2.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "slow", Group: "g"}, in.handler); err != nil {
		t.Fatal(err)
	}
	waitPending(t, rawClient(t), prefix+"slow", "g", 0, 10*time.Second)
	time.Sleep(1500 * time.Millisecond) // let a late takeover show
	if n := in.count(); n > 0 || calls.Load() != 1 {
		t.Errorf("the message of a running handler was delivered again: %d times elsewhere, %d handler calls", n, calls.Load())
	}
}

// A failed message is retried by its subscription even with taking over
// disabled (redeliverInterval 0).
func TestRetryWithoutReclaim(t *testing.T) {
	prefix := testPrefix(t)
	b := openBroker(t, prefix, map[string]string{"redeliverInterval": "0"})
	ctx := ctxFor(t)
	var calls atomic.Int32
	done := make(chan time.Time, 1)
	start := time.Now()
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "retry", Group: "g"}, func(ctx context.Context, m *pubsub.Message) error {
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		done <- time.Now()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "retry", pubsub.Message{Data: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-done:
		// Backoffs of 250ms and 500ms.
		if d := at.Sub(start); d < 700*time.Millisecond {
			t.Errorf("third attempt after %v, want the backoff (750ms) first", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("not retried: %d calls", calls.Load())
	}
	waitPending(t, rawClient(t), prefix+"retry", "g", 0, 5*time.Second)
}

// An expired message is acknowledged without reaching the handler.
func TestExpiredIsAcknowledged(t *testing.T) {
	prefix := testPrefix(t)
	b := openBroker(t, prefix, nil)
	ctx := ctxFor(t)
	in := newInbox()
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "ttl", Group: "g"}, in.handler); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "ttl", pubsub.Message{Data: []byte("old"), Expires: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "ttl", pubsub.Message{Data: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if got := in.next(t, 10*time.Second); string(got.Data) != "new" {
		t.Errorf("delivered %q, want only the live message", got.Data)
	}
	waitPending(t, rawClient(t), prefix+"ttl", "g", 0, 5*time.Second)
}

// consumerID replaces the request's group; a subscription that ends with
// nothing pending deletes its consumer.
func TestConsumerIDAndLeaving(t *testing.T) {
	prefix := testPrefix(t)
	b := openBroker(t, prefix, map[string]string{"consumerID": "shared"})
	raw := rawClient(t)
	ctx := ctxFor(t)
	sctx, cancel := context.WithCancel(ctx)
	in := newInbox()
	if err := b.Subscribe(sctx, pubsub.SubscribeRequest{Topic: "t", Group: "ignored"}, in.handler); err != nil {
		t.Fatal(err)
	}
	groups, err := raw.XInfoGroups(ctx, prefix+"t").Result()
	if err != nil || len(groups) != 1 || groups[0].Name != "shared" {
		t.Fatalf("groups %+v (%v), want one named shared", groups, err)
	}
	if err := b.Publish(ctx, "t", pubsub.Message{Data: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	in.next(t, 10*time.Second)
	consumers, err := raw.XInfoConsumers(ctx, prefix+"t", "shared").Result()
	if err != nil || len(consumers) != 1 {
		t.Fatalf("consumers %+v (%v), want one", consumers, err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		consumers, err = raw.XInfoConsumers(ctx, prefix+"t", "shared").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(consumers) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers %+v remain after the subscription ended", consumers)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// maxLenApprox and streamTTL trim the stream on publish (approximately:
// whole nodes of 100 entries).
func TestTrimming(t *testing.T) {
	prefix := testPrefix(t)
	raw := rawClient(t)
	ctx := ctxFor(t)
	batch := func(n int) []pubsub.Message {
		msgs := make([]pubsub.Message, n)
		for i := range msgs {
			msgs[i] = pubsub.Message{Data: []byte(strconv.Itoa(i))}
		}
		return msgs
	}
	for _, tt := range []struct {
		name string
		meta map[string]string
	}{
		{"maxLenApprox", map[string]string{"maxLenApprox": "10"}},
		{"streamTTL", map[string]string{"streamTTL": "50ms"}},
		{"both", map[string]string{"maxLenApprox": "100000", "streamTTL": "50ms"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := openBroker(t, prefix, tt.meta)
			topic := tt.name
			if err := b.BulkPublish(ctx, topic, batch(500)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if err := b.Publish(ctx, topic, pubsub.Message{Data: []byte("last")}); err != nil {
				t.Fatal(err)
			}
			n, err := raw.XLen(ctx, prefix+topic).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n >= 400 {
				t.Errorf("%d entries after 501 publishes, want the stream trimmed", n)
			}
		})
	}
}

// A bulk publish reports the messages that failed by index.
func TestBulkPublishFailure(t *testing.T) {
	prefix := testPrefix(t)
	b := openBroker(t, prefix, nil)
	raw := rawClient(t)
	ctx := ctxFor(t)
	if err := raw.Set(ctx, prefix+"not-a-stream", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := b.BulkPublish(ctx, "not-a-stream", []pubsub.Message{{Data: []byte("a")}, {Data: []byte("b")}})
	var be *pubsub.BulkError
	if !errors.As(err, &be) || len(be.Failed) != 2 || be.Failed[0] == nil || be.Failed[1] == nil {
		t.Fatalf("BulkPublish to a string key = %v, want a BulkError for both messages", err)
	}
	if !strings.Contains(be.Failed[0].Error(), "WRONGTYPE") {
		t.Errorf("failure %v, want Redis's WRONGTYPE", be.Failed[0])
	}
	if err := b.BulkPublish(ctx, "ok", nil); err != nil {
		t.Errorf("empty bulk publish: %v", err)
	}
}

func TestClosed(t *testing.T) {
	b := newBroker(t, testPrefix(t), nil)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := ctxFor(t)
	if err := b.Publish(ctx, "t", pubsub.Message{Data: []byte("x")}); err == nil {
		t.Error("Publish after Close succeeded")
	}
	if err := b.Subscribe(ctx, pubsub.SubscribeRequest{Topic: "t", Group: "g"}, newInbox().handler); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
	var be *pubsub.BulkError
	if err := b.BulkPublish(ctx, "t", []pubsub.Message{{}}); !errors.As(err, &be) {
		t.Errorf("BulkPublish after Close = %v, want a BulkError", err)
	}
}

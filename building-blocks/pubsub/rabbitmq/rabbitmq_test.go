package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/building-blocks/pubsub/pubsubtest"
	"github.com/outrigger/outrigger/config/metadata"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

// amqpURL is the RabbitMQ server the tests use. It is shared with other
// tests, so every test uses exchanges and queues of its own and deletes
// them when it ends. The tests fail, not skip, when it does not answer.
const amqpURL = "amqp://guest:guest@127.0.0.1:5672/"

func unique(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "outrigger-test-" + prefix + "-" + hex.EncodeToString(b)
}

// rawChannel is a channel on a connection of its own, both closed when t
// ends.
func rawChannel(t *testing.T) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	c, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("connecting to RabbitMQ at %s (a server must run there): %v", address(amqpURL), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return c, ch
}

// cleanup deletes, when t ends, the exchanges and queues named to it.
type cleanup struct {
	mu        sync.Mutex
	exchanges map[string]bool
	queues    map[string]bool
}

func newCleanup(t *testing.T) *cleanup {
	cl := &cleanup{exchanges: map[string]bool{}, queues: map[string]bool{}}
	t.Cleanup(func() {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		if len(cl.exchanges)+len(cl.queues) == 0 {
			return
		}
		c, err := amqp.Dial(amqpURL)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer func() { _ = c.Close() }()
		var ch *amqp.Channel
		do := func(kind, name string, f func(*amqp.Channel) error) {
			if ch == nil || ch.IsClosed() {
				if ch, err = c.Channel(); err != nil {
					t.Errorf("cleanup: %v", err)
					return
				}
			}
			if err := f(ch); err != nil {
				var ae *amqp.Error
				if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
					t.Errorf("cleanup: deleting %s %s: %v", kind, name, err)
				}
			}
		}
		for _, q := range slices.Sorted(maps.Keys(cl.queues)) {
			do("queue", q, func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
		}
		for _, x := range slices.Sorted(maps.Keys(cl.exchanges)) {
			do("exchange", x, func(ch *amqp.Channel) error { return ch.ExchangeDelete(x, false, false) })
		}
	})
	return cl
}

func (cl *cleanup) add(kind, name string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if kind == "queue" {
		cl.queues[name] = true
	} else {
		cl.exchanges[name] = true
	}
}

// newBroker makes a broker on amqpURL with meta added to the metadata,
// whose exchanges and queues are deleted when t ends (after the broker is
// closed, if the caller closes it in a cleanup registered later).
func newBroker(t *testing.T, meta map[string]string) *Broker {
	t.Helper()
	m := map[string]string{"connectionString": amqpURL, "reconnectWait": "200ms"}
	maps.Copy(m, meta)
	cl := newCleanup(t)
	b, unknown, err := New(m)
	if err != nil {
		t.Fatalf("connecting to RabbitMQ at %s (a server must run there): %v", address(amqpURL), err)
	}
	if len(unknown) > 0 {
		t.Fatalf("unknown metadata %q", unknown)
	}
	b.nackDelay = 100 * time.Millisecond
	b.declared = cl.add
	return b
}

// openBroker is newBroker, closed when t ends.
func openBroker(t *testing.T, meta map[string]string) *Broker {
	t.Helper()
	b := newBroker(t, meta)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// breakConnection cuts the socket of the broker's connection, as a network
// failure would, and returns the connection it cut.
func (b *Broker) breakConnection() *conn {
	b.mu.Lock()
	c := b.cur
	b.mu.Unlock()
	if c != nil {
		_ = c.raw.Close()
	}
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// inbox collects delivered messages.
type inbox struct {
	ch chan *pubsub.Message
}

func newInbox() *inbox { return &inbox{ch: make(chan *pubsub.Message, 100)} }

func (in *inbox) handler(_ context.Context, m *pubsub.Message) error {
	in.ch <- m
	return nil
}

func (in *inbox) next(t *testing.T, within time.Duration) *pubsub.Message {
	t.Helper()
	select {
	case m := <-in.ch:
		return m
	case <-time.After(within):
		t.Fatalf("no message within %s", within)
		return nil
	}
}

func (in *inbox) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case m := <-in.ch:
		t.Fatalf("unexpected delivery of %q", m.Data)
	case <-time.After(within):
	}
}

func TestConformance(t *testing.T) {
	pubsubtest.Run(t, func(t *testing.T) pubsub.Broker {
		return newBroker(t, nil)
	}, pubsubtest.Options{RedeliveryWithin: 10 * time.Second})
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", Type, Metadata{})
}

func TestMetadataErrors(t *testing.T) {
	const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	tests := []struct {
		name string
		meta map[string]string
		want string
	}{
		{"bad connection string", map[string]string{"connectionString": "http://localhost"}, "metadata connectionString: not an AMQP URI"},
		{"protocol mismatch", map[string]string{"connectionString": amqpURL, "protocol": "amqps"}, `metadata protocol "amqps": the connection string's scheme is amqp`},
		{"bad protocol", map[string]string{"protocol": "http"}, `metadata protocol "http": want amqp or amqps`},
		{"host and connection string", map[string]string{"connectionString": amqpURL, "host": "amqp://other:5672"}, "metadata host: a URI here is Dapr's deprecated connectionString"},
		{"host and hostname", map[string]string{"hostname": "a", "host": "b"}, "metadata host: a host name here is hostname"},
		{"delivery mode", map[string]string{"deliveryMode": "3"}, "metadata deliveryMode 3: want 0, 1 (transient) or 2 (persistent)"},
		{"negative delivery mode", map[string]string{"deliveryMode": "-1"}, "metadata deliveryMode -1"},
		{"negative prefetch", map[string]string{"prefetchCount": "-1"}, "metadata prefetchCount -1: want 0 to 65535"},
		{"huge prefetch", map[string]string{"prefetchCount": "70000"}, "metadata prefetchCount 70000"},
		{"zero reconnect wait", map[string]string{"reconnectWait": "0"}, "metadata reconnectWait 0s: must be positive"},
		{"negative reconnect wait", map[string]string{"reconnectWait": "-1s"}, "metadata reconnectWait -1s: must be positive"},
		{"negative reconnectWaitSeconds", map[string]string{"reconnectWaitSeconds": "-1"}, "metadata reconnectWaitSeconds -1s: must not be negative"},
		{"both reconnect waits", map[string]string{"reconnectWait": "1s", "reconnectWaitSeconds": "2"}, "give only one of them"},
		{"concurrency", map[string]string{"concurrencyMode": "many"}, `metadata concurrencyMode "many": want parallel or single`},
		{"max len", map[string]string{"maxLen": "-1"}, "metadata maxLen -1: must not be negative"},
		{"max len bytes", map[string]string{"maxLenBytes": "-5"}, "metadata maxLenBytes -5: must not be negative"},
		{"exchange kind", map[string]string{"exchangeKind": "x-consistent-hash"}, `metadata exchangeKind "x-consistent-hash": want fanout, topic, direct or headers`},
		{"heartbeat", map[string]string{"heartBeat": "-1s"}, "metadata heartBeat -1s: must not be negative"},
		{"ttl", map[string]string{"ttlInSeconds": "-1"}, "metadata ttlInSeconds -1: must not be negative"},
		{"ttl not a number", map[string]string{"ttlInSeconds": "1.5"}, `metadata ttlInSeconds "1.5"`},
		{"bad bool", map[string]string{"durable": "maybe"}, `metadata durable "maybe"`},
		{"cert without key", map[string]string{"connectionString": "amqps://localhost", "clientCert": pem}, "metadata clientCert, clientKey: give both or neither"},
		{"sasl external without certs", map[string]string{"saslExternal": "true"}, "metadata saslExternal: needs caCert, clientCert and clientKey"},
		{"tls material on amqp", map[string]string{"connectionString": amqpURL, "caCert": pem}, "TLS needs the amqps protocol"},
		{"bad ca cert", map[string]string{"connectionString": "amqps://localhost", "caCert": "not pem"}, "metadata caCert: no PEM certificate in it"},
		{"bad key pair", map[string]string{"protocol": "amqps", "clientCert": pem, "clientKey": "nope"}, "metadata clientCert, clientKey:"},
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
	var m Metadata
	if _, err := metadata.Decode(map[string]string{}, &m); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Metadata{
		Durable: true, DeliveryMode: 2, RequeueInFailure: true, ReconnectWait: 3 * time.Second,
		ConcurrencyMode: "parallel", ExchangeKind: "fanout", PublisherConfirm: true, HeartBeat: 10 * time.Second,
	}
	if m != want {
		t.Errorf("defaults %+v,\nwant %+v", m, want)
	}
	if uri, _ := m.uri(); uri != "amqp://localhost/" {
		t.Errorf("default URI %q", uri)
	}
	if m.reconnectWait() != 3*time.Second {
		t.Errorf("reconnect wait %v", m.reconnectWait())
	}
	m.ReconnectWaitSeconds = 7 * time.Second
	if m.reconnectWait() != 7*time.Second {
		t.Errorf("reconnectWaitSeconds not used: %v", m.reconnectWait())
	}
}

func TestConnectionURI(t *testing.T) {
	tests := []struct {
		meta map[string]string
		want string
	}{
		{map[string]string{"connectionString": amqpURL, "hostname": "ignored"}, amqpURL},
		{map[string]string{"host": amqpURL}, amqpURL},
		{map[string]string{"host": "rabbit:5673"}, "amqp://rabbit:5673/"},
		{map[string]string{"hostname": "rabbit", "username": "u", "password": "p@ss/word"}, "amqp://u:p%40ss%2Fword@rabbit/"},
		{map[string]string{"hostname": "rabbit", "username": "u", "protocol": "amqps"}, "amqps://u@rabbit/"},
		{map[string]string{"connectionString": "amqps://u:p@rabbit:5671/vh", "protocol": "AMQPS"}, "amqps://u:p@rabbit:5671/vh"},
	}
	for _, tt := range tests {
		var m Metadata
		if _, err := metadata.Decode(tt.meta, &m); err != nil {
			t.Fatal(err)
		}
		got, err := m.uri()
		if err != nil || got != tt.want {
			t.Errorf("%v: URI %q, %v; want %q", tt.meta, got, err, tt.want)
		}
	}
	u, err := amqp.ParseURI("amqp://u:p%40ss%2Fword@rabbit/")
	if err != nil || u.Password != "p@ss/word" || u.Vhost != "/" {
		t.Errorf("the built URI parses as %+v, %v", u, err)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	b, _, err := New(map[string]string{"connectionString": "amqp://guest:guest@" + addr + "/"})
	if err == nil {
		_ = b.Close()
		t.Fatalf("New on %s, where nothing listens, succeeded", addr)
	}
	if !strings.Contains(err.Error(), "connecting to "+addr) || strings.Contains(err.Error(), "guest") {
		t.Errorf("error %v, want one naming the address and not the credentials", err)
	}
}

func TestUnknownKeys(t *testing.T) {
	b, unknown, err := New(map[string]string{"connectionString": amqpURL, "someOtherKey": "x", "consumerID": "c"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	if !slices.Equal(unknown, []string{"someOtherKey"}) {
		t.Errorf("unknown = %q", unknown)
	}
	if f := b.Features(); f != (pubsub.Features{MessageTTL: true, Ordered: true}) {
		t.Errorf("Features() = %+v", f)
	}
}

// TestTopology checks Dapr's layout: a durable fanout exchange named after
// the topic, and a durable queue <group>-<topic> (or <consumerID>-<topic>)
// bound to it, consumed by the subscriber.
func TestTopology(t *testing.T) {
	conn, _ := rawChannel(t)
	channel := func() *amqp.Channel {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ch.Close() })
		return ch
	}
	for _, tt := range []struct {
		name       string
		consumerID string
	}{{"group", ""}, {"consumerID", unique("cid")}} {
		t.Run(tt.name, func(t *testing.T) {
			b := openBroker(t, map[string]string{"consumerID": tt.consumerID})
			topic, group := unique("topo"), unique("g")
			in := newInbox()
			if err := b.Subscribe(ctxFor(t), pubsub.SubscribeRequest{Topic: topic, Group: group}, in.handler); err != nil {
				t.Fatal(err)
			}
			queue := group + "-" + topic
			if tt.consumerID != "" {
				queue = tt.consumerID + "-" + topic
			}
			q, err := channel().QueueDeclarePassive(queue, true, false, false, false, nil)
			if err != nil {
				t.Fatalf("queue %s: %v", queue, err)
			}
			if q.Consumers != 1 {
				t.Errorf("queue %s has %d consumers, want 1", queue, q.Consumers)
			}
			// Redeclaring with the same properties succeeds; with others
			// it fails (PRECONDITION_FAILED).
			if _, err := channel().QueueDeclare(queue, true, false, false, false, nil); err != nil {
				t.Errorf("queue %s is not durable, non-auto-delete, without arguments: %v", queue, err)
			}
			if _, err := channel().QueueDeclare(queue, false, false, false, false, nil); err == nil {
				t.Errorf("queue %s redeclared as transient", queue)
			}
			if err := channel().ExchangeDeclare(topic, "fanout", true, false, false, false, nil); err != nil {
				t.Errorf("exchange %s is not a durable fanout exchange: %v", topic, err)
			}
			if err := channel().ExchangeDeclare(topic, "topic", true, false, false, false, nil); err == nil {
				t.Errorf("exchange %s redeclared as a topic exchange", topic)
			}
			// The queue is bound: a message published to the exchange by
			// another client arrives.
			if err := channel().PublishWithContext(ctxFor(t), topic, "", false, false, amqp.Publishing{Body: []byte("raw")}); err != nil {
				t.Fatal(err)
			}
			if m := in.next(t, 10*time.Second); string(m.Data) != "raw" || m.Topic != topic {
				t.Errorf("got %q on %q", m.Data, m.Topic)
			}
		})
	}
}

// TestMessageProperties checks what a published message carries: the
// content type, the metadata as headers, the expiry as the AMQP expiration
// (ms) and a header, persistence; and that they come back on delivery.
func TestMessageProperties(t *testing.T) {
	b := openBroker(t, nil)
	_, ch := rawChannel(t)
	cl := newCleanup(t)
	topic := unique("props")
	if err := ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cl.add("exchange", topic)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", topic, false, nil); err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(time.Hour)
	if err := b.Publish(ctxFor(t), topic, pubsub.Message{
		Data: []byte(`{"a":1}`), ContentType: "application/json",
		Metadata: map[string]string{"traceparent": "00-abc-def-01"}, Expires: expires,
	}); err != nil {
		t.Fatal(err)
	}
	var d amqp.Delivery
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		if d, ok, err = ch.Get(q.Name, true); err != nil {
			t.Fatal(err)
		} else if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the message did not reach the queue")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.ContentType != "application/json" || string(d.Body) != `{"a":1}` || d.DeliveryMode != amqp.Persistent {
		t.Errorf("content type %q, body %q, delivery mode %d", d.ContentType, d.Body, d.DeliveryMode)
	}
	if d.Headers["traceparent"] != "00-abc-def-01" {
		t.Errorf("headers %v", d.Headers)
	}
	if ms, err := strconv.ParseInt(d.Expiration, 10, 64); err != nil || ms < 3590_000 || ms > 3600_000 {
		t.Errorf("expiration %q, want about 3600000 ms", d.Expiration)
	}
	if h, _ := d.Headers[expiresHeader].(string); h != expires.UTC().Format(time.RFC3339Nano) {
		t.Errorf("%s header %q", expiresHeader, h)
	}
	if d.MessageId == "" {
		t.Error("no message id")
	}

	m := toMessage(topic, &d)
	if !m.Expires.Equal(expires) || m.ContentType != "application/json" || m.Topic != topic || m.ID != d.MessageId {
		t.Errorf("delivered as %+v", m)
	}
	if !maps.Equal(m.Metadata, map[string]string{"traceparent": "00-abc-def-01"}) {
		t.Errorf("metadata %v", m.Metadata)
	}
}

func TestExpiration(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b := &Broker{meta: Metadata{DeliveryMode: 2}}
	for _, tt := range []struct {
		name    string
		ttl     int
		expires time.Time
		want    string
	}{
		{"none", 0, time.Time{}, ""},
		{"ten seconds", 0, now.Add(10 * time.Second), "10000"},
		{"rounded up", 0, now.Add(1500 * time.Microsecond), "2"},
		{"past", 0, now.Add(-time.Minute), "1"},
		{"default ttl", 60, time.Time{}, "60000"},
		{"own expiry over the default", 60, now.Add(time.Second), "1000"},
	} {
		b.meta.TTLInSeconds = tt.ttl
		p, _ := b.publishing(pubsub.Message{Expires: tt.expires}, now)
		if p.Expiration != tt.want {
			t.Errorf("%s: expiration %q, want %q", tt.name, p.Expiration, tt.want)
		}
		h, has := p.Headers[expiresHeader]
		if (tt.want != "") != has {
			t.Errorf("%s: header %v", tt.name, h)
		}
	}
	p, key := b.publishing(pubsub.Message{Metadata: map[string]string{"routingKey": "a.b"}}, now)
	if key != "a.b" || p.Headers["routingKey"] != "a.b" {
		t.Errorf("routing key %q, headers %v", key, p.Headers)
	}
}

// TestExpiredOnDelivery checks that a message whose expires header has
// passed is acknowledged without reaching the handler, even when RabbitMQ
// still delivers it (it has no AMQP expiration).
func TestExpiredOnDelivery(t *testing.T) {
	b := openBroker(t, nil)
	topic, group := unique("expired"), unique("g")
	in := newInbox()
	if err := b.Subscribe(ctxFor(t), pubsub.SubscribeRequest{Topic: topic, Group: group, MaxInFlight: 1}, in.handler); err != nil {
		t.Fatal(err)
	}
	_, ch := rawChannel(t)
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	for _, p := range []amqp.Publishing{
		{Body: []byte("expired"), Headers: amqp.Table{expiresHeader: past}},
		{Body: []byte("live")},
	} {
		if err := ch.PublishWithContext(ctxFor(t), topic, "", false, false, p); err != nil {
			t.Fatal(err)
		}
	}
	if m := in.next(t, 10*time.Second); string(m.Data) != "live" {
		t.Fatalf("got %q first", m.Data)
	}
	in.none(t, 300*time.Millisecond)
	q, err := ch.QueueDeclarePassive(group+"-"+topic, true, false, false, false, nil)
	if err != nil || q.Messages != 0 {
		t.Errorf("queue holds %d messages (%v), want none: the expired one was not acknowledged", q.Messages, err)
	}
}

// TestReconnect cuts the broker's connection and deletes its exchange and
// queue meanwhile: the broker reconnects, declares them again, and
// publishing and consuming resume.
func TestReconnect(t *testing.T) {
	b := openBroker(t, map[string]string{"reconnectWait": "500ms"})
	topic, group := unique("reconnect"), unique("g")
	queue := group + "-" + topic
	in := newInbox()
	if err := b.Subscribe(ctxFor(t), pubsub.SubscribeRequest{Topic: topic, Group: group}, in.handler); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctxFor(t), topic, pubsub.Message{Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	if m := in.next(t, 10*time.Second); string(m.Data) != "before" {
		t.Fatalf("got %q", m.Data)
	}

	old := b.breakConnection()
	conn, _ := rawChannel(t)
	del := func(f func(*amqp.Channel) error) {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = ch.Close() }()
		if err := f(ch); err != nil {
			t.Fatal(err)
		}
	}
	// The queue may still have the old consumer for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		_ = ch.Close()
		if err != nil {
			t.Fatal(err)
		}
		if q.Consumers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the old consumer stays")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The exchange first: a subscription coming back in between then
	// loses its queue, and sets it up again.
	del(func(ch *amqp.Channel) error { return ch.ExchangeDelete(topic, false, false) })
	del(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(queue, false, false, false); return err })

	// Wait until the subscription is back: its queue exists again, with a
	// consumer.
	deadline = time.Now().Add(20 * time.Second)
	for {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err == nil {
			_ = ch.Close()
			if q.Consumers == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the subscription did not come back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := b.Publish(ctxFor(t), topic, pubsub.Message{Data: []byte("after")}); err != nil {
		t.Fatalf("publishing after the reconnection: %v", err)
	}
	if m := in.next(t, 10*time.Second); string(m.Data) != "after" {
		t.Fatalf("got %q", m.Data)
	}
	b.mu.Lock()
	cur := b.cur
	b.mu.Unlock()
	if cur == old || cur == nil {
		t.Error("the broker still uses the connection that was cut")
	}

	// A publish while the connection is down waits for the next one.
	b.breakConnection()
	if err := b.Publish(ctxFor(t), topic, pubsub.Message{Data: []byte("during")}); err != nil {
		t.Fatalf("publishing during the reconnection: %v", err)
	}
	// "after" may come again first: its ack can be lost with the cut
	// connection (at least once).
	m := in.next(t, 20*time.Second)
	for string(m.Data) == "after" {
		m = in.next(t, 20*time.Second)
	}
	if string(m.Data) != "during" {
		t.Fatalf("got %q", m.Data)
	}
}

// TestDeadLetter checks that with enableDeadLetter and requeueInFailure
// false, a failed message lands in dlq-<queue>.
func TestDeadLetter(t *testing.T) {
	b := openBroker(t, map[string]string{"enableDeadLetter": "true", "requeueInFailure": "false"})
	topic, group := unique("dead"), unique("g")
	queue := group + "-" + topic
	var mu sync.Mutex
	calls := 0
	if err := b.Subscribe(ctxFor(t), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(context.Context, *pubsub.Message) error {
		mu.Lock()
		calls++
		mu.Unlock()
		return errors.New("refused")
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctxFor(t), topic, pubsub.Message{Data: []byte("poison")}); err != nil {
		t.Fatal(err)
	}
	_, ch := rawChannel(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, ok, err := ch.Get("dlq-"+queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if string(d.Body) != "poison" {
				t.Errorf("dead letter %q", d.Body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing reached the dead-letter queue")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("handler called %d times, want 1", calls)
	}
}

// TestRoutingKeys checks a topic exchange: a subscription binds with its
// routingKey metadata, and a message goes where its routingKey matches.
func TestRoutingKeys(t *testing.T) {
	b := openBroker(t, map[string]string{"exchangeKind": "topic"})
	topic := unique("routed")
	eu, us := newInbox(), newInbox()
	if err := b.Subscribe(ctxFor(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g"), Metadata: map[string]string{"routingKey": "eu.*"}}, eu.handler); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctxFor(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g"), Metadata: map[string]string{"routingKey": "us.*, ca.*"}}, us.handler); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"eu.fr", "ca.qc"} {
		if err := b.Publish(ctxFor(t), topic, pubsub.Message{Data: []byte(k), Metadata: map[string]string{"routingKey": k}}); err != nil {
			t.Fatal(err)
		}
	}
	if m := eu.next(t, 10*time.Second); string(m.Data) != "eu.fr" {
		t.Errorf("eu got %q", m.Data)
	}
	if m := us.next(t, 10*time.Second); string(m.Data) != "ca.qc" {
		t.Errorf("us got %q", m.Data)
	}
	eu.none(t, 200*time.Millisecond)
	us.none(t, 0)
}

func TestClosed(t *testing.T) {
	b := newBroker(t, nil)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := b.Publish(t.Context(), unique("closed"), pubsub.Message{Data: []byte("x")}); err == nil {
		t.Error("Publish after Close succeeded")
	}
	if err := b.Subscribe(t.Context(), pubsub.SubscribeRequest{Topic: unique("closed"), Group: "g"}, newInbox().handler); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
	if err := b.Publish(t.Context(), "", pubsub.Message{}); err == nil {
		t.Error("Publish without a topic succeeded")
	}
}

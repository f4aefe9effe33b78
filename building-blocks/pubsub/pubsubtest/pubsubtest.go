// Package pubsubtest is the conformance suite of the pub/sub building
// block: Run checks that a pubsub.Broker behaves as the runtime relies on.
// Every backend runs it from its own tests, against a real broker.
package pubsubtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
)

// Factory returns a new broker client. Brokers made by one factory for one
// test share the broker, as several sidecars do; topics and groups are
// unique to each test. Run closes every broker it gets; the factory
// registers any other cleanup with t. Redelivery of an unacknowledged
// message must happen within Options.RedeliveryWithin.
type Factory func(t *testing.T) pubsub.Broker

// Options describes the broker's timing.
type Options struct {
	// RedeliveryWithin bounds how long a nacked or abandoned message takes
	// to come back (default 30s).
	RedeliveryWithin time.Duration
}

// collector records deliveries.
type collector struct {
	mu      sync.Mutex
	got     map[string]int // payload -> deliveries
	order   []string
	changed chan struct{}
}

func newCollector() *collector {
	return &collector{got: map[string]int{}, changed: make(chan struct{}, 1)}
}

func (c *collector) add(m *pubsub.Message) {
	c.mu.Lock()
	c.got[string(m.Data)]++
	c.order = append(c.order, string(m.Data))
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *collector) handler(ctx context.Context, m *pubsub.Message) error {
	c.add(m)
	return nil
}

// waitFor waits until every payload in want was delivered at least once.
func (c *collector) waitFor(t *testing.T, want []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		missing := 0
		first := ""
		for _, w := range want {
			if c.got[w] == 0 {
				if missing == 0 {
					first = w
				}
				missing++
			}
		}
		c.mu.Unlock()
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages not delivered within %s (first: %.40q)", missing, len(want), within, first)
		}
		select {
		case <-c.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *collector) count(payload string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[payload]
}

func (c *collector) duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := 0
	for _, n := range c.got {
		if n > 1 {
			d += n - 1
		}
	}
	return d
}

func unique(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func payloads(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "-" + strconv.Itoa(i)
	}
	return out
}

// Run runs the conformance suite against brokers made by newBroker.
func Run(t *testing.T, newBroker Factory, opts Options) {
	t.Helper()
	if opts.RedeliveryWithin <= 0 {
		opts.RedeliveryWithin = 30 * time.Second
	}
	const delivery = 30 * time.Second
	open := func(t *testing.T) pubsub.Broker {
		t.Helper()
		b := newBroker(t)
		if b == nil {
			t.Fatal("factory returned a nil broker")
		}
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return b
	}
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithCancel(t.Context())
		t.Cleanup(cancel)
		return ctx
	}
	publish := func(t *testing.T, b pubsub.Broker, topic string, data []string) {
		t.Helper()
		for _, d := range data {
			pctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			err := b.Publish(pctx, topic, pubsub.Message{Data: []byte(d), ContentType: "text/plain"})
			cancel()
			if err != nil {
				t.Fatalf("Publish(%q): %v", topic, err)
			}
		}
	}

	t.Run("Publish and subscribe", func(t *testing.T) {
		b := open(t)
		topic := unique("basic")
		c := newCollector()
		var mu sync.Mutex
		var bad []string
		err := b.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g")}, func(ctx context.Context, m *pubsub.Message) error {
			if m.Topic != topic {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("delivered with topic %q", m.Topic))
				mu.Unlock()
			}
			c.add(m)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := payloads("m", 20)
		publish(t, b, topic, want)
		c.waitFor(t, want, delivery)
		mu.Lock()
		defer mu.Unlock()
		if len(bad) > 0 {
			t.Error(bad[0])
		}
	})

	t.Run("Redelivery after a nack", func(t *testing.T) {
		b := open(t)
		topic := unique("nack")
		c := newCollector()
		var mu sync.Mutex
		attempts := map[string]int{}
		err := b.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g")}, func(ctx context.Context, m *pubsub.Message) error {
			mu.Lock()
			attempts[string(m.Data)]++
			n := attempts[string(m.Data)]
			mu.Unlock()
			if n <= 2 {
				return errors.New("not yet")
			}
			c.add(m)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := payloads("r", 3)
		publish(t, b, topic, want)
		c.waitFor(t, want, 3*opts.RedeliveryWithin+delivery)
	})

	t.Run("A subscriber that goes away", func(t *testing.T) {
		// The first subscriber takes a message and vanishes without an
		// answer; another of its group gets it.
		b1, b2 := open(t), open(t)
		topic, group := unique("abandon"), unique("g")
		first, cancelFirst := context.WithCancel(t.Context())
		defer cancelFirst()
		taken := make(chan struct{}, 1)
		err := b1.Subscribe(first, pubsub.SubscribeRequest{Topic: topic, Group: group, MaxInFlight: 1}, func(ctx context.Context, m *pubsub.Message) error {
			select {
			case taken <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return ctx.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		publish(t, b1, topic, []string{"orphan"})
		select {
		case <-taken:
		case <-time.After(delivery):
			t.Fatal("the first subscriber never got the message")
		}
		cancelFirst()
		if err := b1.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		c := newCollector()
		if err := b2.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: group}, c.handler); err != nil {
			t.Fatal(err)
		}
		c.waitFor(t, []string{"orphan"}, opts.RedeliveryWithin+delivery)
	})

	t.Run("Competing consumers", func(t *testing.T) {
		b1, b2 := open(t), open(t)
		topic, group := unique("compete"), unique("g")
		c := newCollector()
		var mu sync.Mutex
		per := map[int]int{}
		for i, b := range []pubsub.Broker{b1, b2} {
			if err := b.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: group}, func(ctx context.Context, m *pubsub.Message) error {
				mu.Lock()
				per[i]++
				mu.Unlock()
				c.add(m)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		want := payloads("c", 100)
		publish(t, b1, topic, want)
		c.waitFor(t, want, delivery)
		time.Sleep(500 * time.Millisecond) // let late duplicates show
		if d := c.duplicates(); d > 0 {
			t.Errorf("%d duplicate deliveries within one group, with every delivery acknowledged", d)
		}
		mu.Lock()
		t.Logf("split between the two consumers: %d / %d", per[0], per[1])
		mu.Unlock()
	})

	t.Run("Fan-out", func(t *testing.T) {
		b1, b2 := open(t), open(t)
		topic := unique("fanout")
		c1, c2 := newCollector(), newCollector()
		if err := b1.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g1")}, c1.handler); err != nil {
			t.Fatal(err)
		}
		if err := b2.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g2")}, c2.handler); err != nil {
			t.Fatal(err)
		}
		want := payloads("f", 30)
		publish(t, b1, topic, want)
		c1.waitFor(t, want, delivery)
		c2.waitFor(t, want, delivery)
	})

	t.Run("Ordering", func(t *testing.T) {
		b := open(t)
		if !b.Features().Ordered {
			t.Skip("the broker does not claim ordering")
		}
		topic := unique("order")
		c := newCollector()
		if err := b.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g"), MaxInFlight: 1}, c.handler); err != nil {
			t.Fatal(err)
		}
		want := payloads("o", 50)
		publish(t, b, topic, want)
		c.waitFor(t, want, delivery)
		c.mu.Lock()
		defer c.mu.Unlock()
		if got := strings.Join(c.order[:len(want)], ","); got != strings.Join(want, ",") {
			t.Errorf("delivered out of order: %s", got)
		}
	})

	t.Run("Large message", func(t *testing.T) {
		b := open(t)
		topic := unique("large")
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		got := make(chan []byte, 1)
		if err := b.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g")}, func(ctx context.Context, m *pubsub.Message) error {
			select {
			case got <- m.Data:
			default:
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		pctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := b.Publish(pctx, topic, pubsub.Message{Data: big, ContentType: "application/octet-stream"}); err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-got:
			if !bytes.Equal(d, big) {
				t.Errorf("a 1 MiB message came back as %d bytes", len(d))
			}
		case <-time.After(delivery):
			t.Fatal("the 1 MiB message was not delivered")
		}
	})

	t.Run("Many topics", func(t *testing.T) {
		b := open(t)
		base := unique("many")
		var mu sync.Mutex
		wrong := 0
		cs := make([]*collector, 20)
		for i := range cs {
			topic := fmt.Sprintf("%s-%d", base, i)
			cs[i] = newCollector()
			c := cs[i]
			if err := b.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g")}, func(ctx context.Context, m *pubsub.Message) error {
				if string(m.Data) != topic {
					mu.Lock()
					wrong++
					mu.Unlock()
				}
				c.add(m)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range cs {
			topic := fmt.Sprintf("%s-%d", base, i)
			publish(t, b, topic, []string{topic})
		}
		for i, c := range cs {
			c.waitFor(t, []string{fmt.Sprintf("%s-%d", base, i)}, delivery)
		}
		mu.Lock()
		defer mu.Unlock()
		if wrong > 0 {
			t.Errorf("%d messages reached the subscriber of another topic", wrong)
		}
	})

	t.Run("Expired messages", func(t *testing.T) {
		b := open(t)
		if !b.Features().MessageTTL {
			t.Skip("the broker does not claim message TTLs (the runtime drops expired messages on delivery)")
		}
		topic := unique("ttl")
		c := newCollector()
		if err := b.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g")}, c.handler); err != nil {
			t.Fatal(err)
		}
		pctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := b.Publish(pctx, topic, pubsub.Message{Data: []byte("expired"), Expires: time.Now().Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(pctx, topic, pubsub.Message{Data: []byte("live"), Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		c.waitFor(t, []string{"live"}, delivery)
		time.Sleep(time.Second)
		if n := c.count("expired"); n > 0 {
			t.Errorf("an expired message was delivered %d times", n)
		}
	})

	t.Run("Bulk publish", func(t *testing.T) {
		b := open(t)
		bp, ok := b.(pubsub.BulkPublisher)
		if !ok {
			t.Skip("the broker has no bulk publish (the runtime publishes one by one)")
		}
		topic := unique("bulk")
		c := newCollector()
		if err := b.Subscribe(ctx(t), pubsub.SubscribeRequest{Topic: topic, Group: unique("g")}, c.handler); err != nil {
			t.Fatal(err)
		}
		want := payloads("b", 100)
		msgs := make([]pubsub.Message, len(want))
		for i, w := range want {
			msgs[i] = pubsub.Message{Data: []byte(w), ContentType: "text/plain"}
		}
		pctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := bp.BulkPublish(pctx, topic, msgs); err != nil {
			t.Fatal(err)
		}
		c.waitFor(t, want, delivery)
	})

	t.Run("Unsubscribe", func(t *testing.T) {
		b := open(t)
		topic, group := unique("unsub"), unique("g")
		sctx, cancel := context.WithCancel(t.Context())
		c := newCollector()
		if err := b.Subscribe(sctx, pubsub.SubscribeRequest{Topic: topic, Group: group}, c.handler); err != nil {
			t.Fatal(err)
		}
		publish(t, b, topic, []string{"before"})
		c.waitFor(t, []string{"before"}, delivery)
		cancel()
		time.Sleep(500 * time.Millisecond)
		publish(t, b, topic, []string{"after"})
		time.Sleep(2 * time.Second)
		if n := c.count("after"); n > 0 {
			t.Errorf("a cancelled subscription still got a message")
		}
	})
}

// Package inmemory is the pubsub.in-memory broker: messages live in the
// sidecar's memory, and reach the subscribers of that sidecar only, as with
// Dapr's in-memory pub/sub. It is for tests and development.
package inmemory

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this broker implements, version v1.
const Type = "pubsub.in-memory"

// Metadata is the broker's component metadata.
type Metadata struct {
	// RedeliveryDelay is how long a nacked message waits before it is
	// delivered again.
	RedeliveryDelay time.Duration `meta:"redeliveryDelay" default:"100ms"`
}

// Bus is the shared state of the brokers made from it: topics, their
// consumer groups and the groups' queues. Every component gets its own;
// tests share one between several brokers to stand for several sidecars.
type Bus struct {
	mu     sync.Mutex
	groups map[string]map[string]*group // topic -> group name -> group
	delay  time.Duration
}

// NewBus makes an empty bus that redelivers nacked messages after delay.
func NewBus(delay time.Duration) *Bus {
	return &Bus{groups: map[string]map[string]*group{}, delay: delay}
}

// group is one consumer group's queue of a topic.
type group struct {
	mu     sync.Mutex
	queue  []*pubsub.Message
	notify chan struct{} // closed and replaced when the queue grows
}

func newGroup() *group { return &group{notify: make(chan struct{})} }

func (g *group) push(m *pubsub.Message) {
	g.mu.Lock()
	g.queue = append(g.queue, m)
	close(g.notify)
	g.notify = make(chan struct{})
	g.mu.Unlock()
}

// pop takes the next live message, waiting for one until ctx is done.
func (g *group) pop(ctx context.Context) (*pubsub.Message, bool) {
	for {
		g.mu.Lock()
		for len(g.queue) > 0 {
			m := g.queue[0]
			g.queue[0] = nil
			g.queue = g.queue[1:]
			if !m.Expires.IsZero() && !time.Now().Before(m.Expires) {
				continue // past its TTL
			}
			g.mu.Unlock()
			return m, true
		}
		wait := g.notify
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// Broker is one component's view of a bus. It is safe for concurrent use.
type Broker struct {
	bus    *Bus
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ pubsub.Broker        = (*Broker)(nil)
	_ pubsub.BulkPublisher = (*Broker)(nil)
)

// New builds a broker on a bus of its own from its component metadata;
// unknown lists the keys it does not read.
func New(meta map[string]string) (*Broker, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, unknown, err
	}
	if m.RedeliveryDelay < 0 {
		return nil, unknown, errors.New("metadata redeliveryDelay: must not be negative")
	}
	return NewBus(m.RedeliveryDelay).Broker(), unknown, nil
}

// Broker makes a broker on b.
func (b *Bus) Broker() *Broker {
	ctx, cancel := context.WithCancel(context.Background())
	return &Broker{bus: b, ctx: ctx, cancel: cancel}
}

// Features implements pubsub.Broker.
func (b *Broker) Features() pubsub.Features {
	return pubsub.Features{MessageTTL: true, Ordered: true}
}

// Publish implements pubsub.Broker: every group of the topic gets a copy.
func (b *Broker) Publish(ctx context.Context, topic string, msg pubsub.Message) error {
	if err := b.ctx.Err(); err != nil {
		return errors.New("pubsub/inmemory: the broker is closed")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.bus.mu.Lock()
	groups := make([]*group, 0, len(b.bus.groups[topic]))
	for _, g := range b.bus.groups[topic] {
		groups = append(groups, g)
	}
	b.bus.mu.Unlock()
	for _, g := range groups {
		m := msg
		m.Topic = topic
		m.Data = append([]byte(nil), msg.Data...)
		g.push(&m)
	}
	return nil
}

// BulkPublish implements pubsub.BulkPublisher.
func (b *Broker) BulkPublish(ctx context.Context, topic string, msgs []pubsub.Message) error {
	failed := map[int]error{}
	for i, m := range msgs {
		if err := b.Publish(ctx, topic, m); err != nil {
			failed[i] = err
		}
	}
	if len(failed) > 0 {
		return &pubsub.BulkError{Failed: failed}
	}
	return nil
}

// Subscribe implements pubsub.Broker.
func (b *Broker) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, handler pubsub.Handler) error {
	if err := b.ctx.Err(); err != nil {
		return errors.New("pubsub/inmemory: the broker is closed")
	}
	b.bus.mu.Lock()
	byName := b.bus.groups[req.Topic]
	if byName == nil {
		byName = map[string]*group{}
		b.bus.groups[req.Topic] = byName
	}
	g := byName[req.Group]
	if g == nil {
		g = newGroup()
		byName[req.Group] = g
	}
	b.bus.mu.Unlock()

	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	workers := max(req.MaxInFlight, 1)
	var running sync.WaitGroup
	for range workers {
		running.Add(1)
		b.wg.Go(func() {
			defer running.Done()
			for {
				m, ok := g.pop(sctx)
				if !ok {
					return
				}
				if err := handler(sctx, m); err != nil || sctx.Err() != nil {
					b.redeliver(g, m)
				}
			}
		})
	}
	b.wg.Go(func() {
		running.Wait()
		stop()
		cancel()
	})
	return nil
}

// redeliver puts m back in its group's queue after the bus's delay.
func (b *Broker) redeliver(g *group, m *pubsub.Message) {
	if b.bus.delay <= 0 {
		g.push(m)
		return
	}
	time.AfterFunc(b.bus.delay, func() { g.push(m) })
}

// Close implements pubsub.Broker: it stops this broker's subscriptions.
func (b *Broker) Close() error {
	b.cancel()
	b.wg.Wait()
	return nil
}

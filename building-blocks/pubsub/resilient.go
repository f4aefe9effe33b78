package pubsub

import (
	"context"
	"errors"

	"github.com/outrigger/outrigger/resiliency"
)

// WithResiliency is c with its publishes run under the runner that runner
// returns at the time of the call (the component's outbound Resiliency
// policy; nil publishes once, as given). Subscriptions are the broker's,
// unchanged: deliveries follow the inbound policy (Subscriber.Inbound).
func WithResiliency(c *Component, runner func() *resiliency.Runner) *Component {
	cc := *c
	rb := &resilientBroker{Broker: c.Broker, runner: runner}
	if bp, ok := c.Broker.(BulkPublisher); ok {
		cc.Broker = &resilientBulkBroker{resilientBroker: rb, bulk: bp}
	} else {
		cc.Broker = rb
	}
	return &cc
}

type resilientBroker struct {
	Broker
	runner func() *resiliency.Runner
}

func cancelled(err error) bool { return errors.Is(err, context.Canceled) }

func (b *resilientBroker) Publish(ctx context.Context, topic string, msg Message) error {
	return b.runner().Do(ctx, func(ctx context.Context) error { return b.Broker.Publish(ctx, topic, msg) }, cancelled)
}

// Close leaves the broker to the component's owner.
func (b *resilientBroker) Close() error { return nil }

type resilientBulkBroker struct {
	*resilientBroker
	bulk BulkPublisher
}

// BulkPublish sends the batch again whole when it fails: a message taken
// by the broker before the failure may be delivered twice (at least once).
func (b *resilientBulkBroker) BulkPublish(ctx context.Context, topic string, msgs []Message) error {
	return b.runner().Do(ctx, func(ctx context.Context) error { return b.bulk.BulkPublish(ctx, topic, msgs) }, cancelled)
}

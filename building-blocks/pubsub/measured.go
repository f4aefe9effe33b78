package pubsub

import (
	"context"
	"errors"
	"time"
)

// WithMetrics is c with its publishes counted and timed in m under the
// component name name: each Publish is one egress, each BulkPublish one
// bulk egress (a broker without BulkPublish is sent the messages one by
// one, as the API would, and they count as that one bulk publish, as daprd
// counts them). A publish succeeds when the broker returns no error.
// Subscriptions are the broker's, unchanged (deliveries are recorded by the
// Subscriber's IngressRecorder). Wrap outside WithResiliency, so a publish
// with its retries is measured once.
func WithMetrics(c *Component, name string, m *Metrics) *Component {
	cc := *c
	bp, _ := c.Broker.(BulkPublisher)
	cc.Broker = &measuredBroker{Broker: c.Broker, bulk: bp, name: name, m: m}
	return &cc
}

type measuredBroker struct {
	Broker
	bulk BulkPublisher // nil when the broker has no bulk publish
	name string
	m    *Metrics
}

func (b *measuredBroker) Publish(ctx context.Context, topic string, msg Message) error {
	start := time.Now()
	err := b.Broker.Publish(ctx, topic, msg)
	b.m.published(b.name, topic, err == nil, time.Since(start))
	return err
}

// BulkPublish is the broker's, or one Publish per message; a message that
// failed is in the *BulkError returned.
func (b *measuredBroker) BulkPublish(ctx context.Context, topic string, msgs []Message) error {
	start := time.Now()
	var err error
	if b.bulk != nil {
		err = b.bulk.BulkPublish(ctx, topic, msgs)
	} else {
		failed := map[int]error{}
		for i, m := range msgs {
			if perr := b.Broker.Publish(ctx, topic, m); perr != nil {
				failed[i] = perr
			}
		}
		if len(failed) > 0 {
			err = &BulkError{Failed: failed}
		}
	}
	published := len(msgs)
	var be *BulkError
	switch {
	case errors.As(err, &be):
		published -= len(be.Failed)
	case err != nil:
		published = 0
	}
	b.m.bulkPublished(b.name, topic, err == nil, published, time.Since(start))
	return err
}

// Close leaves the broker to the component's owner.
func (b *measuredBroker) Close() error { return nil }

var (
	_ Broker        = (*measuredBroker)(nil)
	_ BulkPublisher = (*measuredBroker)(nil)
)

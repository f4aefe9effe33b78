package pubsub

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger/outrigger/telemetry"
)

// deliver makes one delivery to the app and returns its status; with a
// Tracer it is a span named as daprd names it ("pubsub/<topic>"), a child
// of the trace context the publisher put in the event, and the app gets the
// span's context.
func (sub *Subscriber) deliver(ctx context.Context, s *Subscription, path string, event map[string]any) (string, error) {
	if sub.Tracer == nil {
		return sub.deliverApp(ctx, s, path, event)
	}
	tp, _ := event["traceparent"].(string)
	ts, _ := event["tracestate"].(string)
	ctx = telemetry.FromW3C(ctx, tp, ts)
	ctx, span := sub.Tracer.Start(ctx, "pubsub/"+s.Topic, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	status, err := sub.deliverApp(ctx, s, path, event)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("messaging.system", "pubsub"),
			attribute.String("messaging.destination.name", s.Topic),
		)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	return status, err
}

// deliveryTrace is the trace context a delivery hands the app: the
// delivery's span, else the one the event carries.
func deliveryTrace(ctx context.Context, event map[string]any) (traceparent, tracestate string) {
	if tp, ts := telemetry.W3C(ctx); tp != "" {
		return tp, ts
	}
	tp, _ := event["traceparent"].(string)
	ts, _ := event["tracestate"].(string)
	return tp, ts
}

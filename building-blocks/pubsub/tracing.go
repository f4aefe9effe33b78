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
func (sub *Subscriber) deliver(ctx context.Context, s *Subscription, path string, event *cloudEvent) (string, error) {
	if sub.Tracer == nil {
		return sub.deliverApp(ctx, s, path, event)
	}
	tp := event.str("traceparent")
	ts := event.str("tracestate")
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
func deliveryTrace(ctx context.Context, event *cloudEvent) (traceparent, tracestate string) {
	if tp, ts := telemetry.W3C(ctx); tp != "" {
		return tp, ts
	}
	tp := event.str("traceparent")
	ts := event.str("tracestate")
	return tp, ts
}

// deliverySpan starts the span of one event's delivery, named as daprd
// names it ("pubsub/<topic>"), a child of the trace context the publisher
// put in the event; nil without a tracer. Bulk batches and streaming
// subscriptions, whose app sees the event as published, use it.
func deliverySpan(ctx context.Context, tracer trace.Tracer, topic string, event *cloudEvent, batch int) trace.Span {
	if tracer == nil {
		return nil
	}
	tp := event.str("traceparent")
	ts := event.str("tracestate")
	_, span := tracer.Start(telemetry.FromW3C(ctx, tp, ts), "pubsub/"+topic, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		attrs := []attribute.KeyValue{
			attribute.String("messaging.system", "pubsub"),
			attribute.String("messaging.destination.name", topic),
		}
		if batch > 0 {
			attrs = append(attrs, attribute.Int("messaging.batch.message_count", batch))
		}
		span.SetAttributes(attrs...)
	}
	return span
}

// endDeliverySpan ends a delivery's span with how it went: statusSuccess
// or statusDrop is not an error.
func endDeliverySpan(span trace.Span, status string, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		switch {
		case err != nil:
			span.SetStatus(codes.Error, err.Error())
		case status != statusSuccess && status != statusDrop:
			span.SetStatus(codes.Error, "the app asked for a retry")
		}
		span.SetAttributes(attribute.String("messaging.operation.result", status))
	}
	span.End()
}

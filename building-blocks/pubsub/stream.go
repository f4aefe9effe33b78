package pubsub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// SubscribeTopicEventsAlpha1 is dapr.proto.runtime.v1.Dapr's streaming
// subscription: the app opens the stream with the pub/sub and topic, the
// sidecar subscribes in the app's consumer group and sends each event down
// the stream, and the app answers each with its status. A message is
// acknowledged to the broker only after the app answered SUCCESS (or DROP);
// RETRY, or the stream ending first, leaves it to be redelivered.
func (a *API) SubscribeTopicEventsAlpha1(stream runtimev1pb.Dapr_SubscribeTopicEventsAlpha1Server) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	init := first.GetInitialRequest()
	if init == nil {
		return status.Error(codes.InvalidArgument, "the first message of a subscription stream must be its initial request")
	}
	if init.GetTopic() == "" {
		return status.Error(codes.InvalidArgument, "topic is required")
	}
	if a.Lookup == nil || (a.Configured != nil && !a.Configured()) {
		return errNotConfigured(init.GetPubsubName(), nil)
	}
	c, ok := a.Lookup(init.GetPubsubName())
	if !ok {
		return errNotFound(init.GetPubsubName(), nil)
	}
	if !c.CanSubscribe(a.AppID, init.GetTopic()) {
		return status.Errorf(codes.PermissionDenied, "topic %s is not allowed for app id %s", init.GetTopic(), a.AppID)
	}
	s := &Subscription{PubsubName: init.GetPubsubName(), Topic: init.GetTopic(), Metadata: init.GetMetadata(), DeadLetterTopic: init.GetDeadLetterTopic(), Source: "a streaming subscription", Kind: KindStreaming}

	var sendMu sync.Mutex
	send := func(m *runtimev1pb.SubscribeTopicEventsResponseAlpha1) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var mu sync.Mutex
	waiting := map[string]chan runtimev1pb.TopicEventResponse_TopicEventResponseStatus{}
	// The app hears of the subscription once the broker has it, so an
	// event published after the initial response is delivered; no event
	// goes down the stream before that response.
	ready := make(chan struct{})
	handler := func(hctx context.Context, m *Message) error {
		select {
		case <-ready:
		case <-hctx.Done():
			return hctx.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
		event, err := eventOf(m, s)
		if err != nil {
			return nil // not a CloudEvent: nothing will change it
		}
		if eventExpired(event) {
			return nil
		}
		req, err := topicEventRequest(s, "", event)
		if err != nil {
			return nil
		}
		if req.Id == "" {
			req.Id = newID()
		}
		answer := make(chan runtimev1pb.TopicEventResponse_TopicEventResponseStatus, 1)
		mu.Lock()
		if _, busy := waiting[req.Id]; busy {
			mu.Unlock()
			return errors.New("an event with the same id is in flight on this stream")
		}
		waiting[req.Id] = answer
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(waiting, req.Id)
			mu.Unlock()
		}()
		start := time.Now()
		span := deliverySpan(hctx, a.Tracer, s.Topic, event, 0)
		if err := send(&runtimev1pb.SubscribeTopicEventsResponseAlpha1{
			SubscribeTopicEventsResponseType: &runtimev1pb.SubscribeTopicEventsResponseAlpha1_EventMessage{EventMessage: req},
		}); err != nil {
			endDeliverySpan(span, statusRetry, err)
			return err
		}
		select {
		case st := <-answer:
			a.recordStreamed(s, st, time.Since(start))
			switch st {
			case runtimev1pb.TopicEventResponse_SUCCESS:
				endDeliverySpan(span, statusSuccess, nil)
				return nil
			case runtimev1pb.TopicEventResponse_DROP:
				endDeliverySpan(span, statusDrop, nil)
				return nil
			}
			endDeliverySpan(span, statusRetry, nil)
			return errors.New("the app asked for a retry")
		case <-hctx.Done():
			endDeliverySpan(span, statusRetry, hctx.Err())
			return hctx.Err()
		case <-ctx.Done():
			endDeliverySpan(span, statusRetry, ctx.Err())
			return ctx.Err()
		}
	}
	if err := c.Broker.Subscribe(ctx, SubscribeRequest{Topic: s.Topic, Group: a.AppID, MaxInFlight: 16, Metadata: s.Metadata}, handler); err != nil {
		return status.Errorf(codes.Internal, "subscribing to topic %s of pubsub %s: %v", s.Topic, s.PubsubName, err)
	}
	if err := send(&runtimev1pb.SubscribeTopicEventsResponseAlpha1{
		SubscribeTopicEventsResponseType: &runtimev1pb.SubscribeTopicEventsResponseAlpha1_InitialResponse{
			InitialResponse: &runtimev1pb.SubscribeTopicEventsResponseInitialAlpha1{},
		},
	}); err != nil {
		return err
	}
	close(ready)
	defer a.openStream(*s)()
	for {
		in, err := stream.Recv()
		if err != nil {
			return nil // the app closed the stream; unanswered events are redelivered
		}
		p := in.GetEventProcessed()
		if p == nil {
			continue
		}
		mu.Lock()
		ch := waiting[p.GetId()]
		mu.Unlock()
		if ch != nil {
			select {
			case ch <- p.GetStatus().GetStatus():
			default:
			}
		}
	}
}

// topicEventRequest is the gRPC form of an event, as OnTopicEvent and the
// streaming subscription carry it.
func topicEventRequest(s *Subscription, path string, event *cloudEvent) (*runtimev1pb.TopicEventRequest, error) {
	req := &runtimev1pb.TopicEventRequest{
		Id: event.str("id"), Source: event.str("source"), Type: event.str("type"), SpecVersion: event.str("specversion"),
		DataContentType: event.str("datacontenttype"), Topic: s.Topic, PubsubName: s.PubsubName, Path: path,
	}
	switch {
	case event.has("data_base64"):
		b, err := base64.StdEncoding.DecodeString(event.str("data_base64"))
		if err != nil {
			return nil, fmt.Errorf("data_base64: %w", err)
		}
		req.Data = b
	case event.has("data"):
		data := []byte(event.fields["data"])
		if data[0] == '"' && !isJSON(req.GetDataContentType()) {
			var d string
			if err := json.Unmarshal(data, &d); err != nil {
				return nil, err
			}
			req.Data = []byte(d)
		} else {
			var b bytes.Buffer
			if err := json.Compact(&b, data); err != nil {
				return nil, err
			}
			req.Data = b.Bytes()
		}
	}
	ext := map[string]any{}
	for k, v := range event.fields {
		if ceCoreFields[k] {
			continue
		}
		var x any
		if json.Unmarshal([]byte(v), &x) == nil {
			ext[k] = x
		}
	}
	if st, err := structpb.NewStruct(ext); err == nil {
		req.Extensions = st
	}
	return req, nil
}

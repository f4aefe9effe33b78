package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	kiterrors "github.com/dapr/kit/errors"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/outrigger/outrigger/telemetry"
)

// API serves Dapr's publish API over the brokers Lookup finds: HTTP
// /v1.0/publish/{pubsub}/{topic}, the bulk routes, and gRPC PublishEvent,
// BulkPublishEvent and BulkPublishEventAlpha1, with daprd's envelopes,
// errors and statuses. Fields must not change while it serves.
type API struct {
	// Lookup finds a pub/sub component by name.
	Lookup func(name string) (*Component, bool)
	// Configured reports whether any pub/sub component is loaded.
	Configured func() bool
	// AppID is the publisher: the events' source, and the app the scopes
	// are checked for.
	AppID string
	// Logger gets a debug line per failed call; nil discards.
	Logger *slog.Logger
	// Ingress, when set, learns how each event sent down a streaming
	// subscription ended (the metrics); nil records nothing.
	Ingress IngressRecorder
	// Tracer, when set, gives each event sent down a streaming
	// subscription a span (as Subscriber.Tracer does for deliveries).
	Tracer trace.Tracer

	streamMu  sync.Mutex
	streams   map[uint64]Subscription
	streamSeq uint64
}

// Streams lists the streaming subscriptions open now, oldest first.
func (a *API) Streams() []Subscription {
	a.streamMu.Lock()
	defer a.streamMu.Unlock()
	ids := make([]uint64, 0, len(a.streams))
	for id := range a.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]Subscription, len(ids))
	for i, id := range ids {
		out[i] = a.streams[id]
	}
	return out
}

// openStream records a streaming subscription until the returned func is
// called.
func (a *API) openStream(s Subscription) func() {
	a.streamMu.Lock()
	defer a.streamMu.Unlock()
	if a.streams == nil {
		a.streams = map[uint64]Subscription{}
	}
	a.streamSeq++
	id := a.streamSeq
	a.streams[id] = s
	return func() {
		a.streamMu.Lock()
		delete(a.streams, id)
		a.streamMu.Unlock()
	}
}

func (a *API) log() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

// Dapr's error codes of the publish API, with their reasons.
const (
	categoryPubsub = "pubsub"
)

func pubsubError(grpcCode codes.Code, httpCode int, msg, code, reason, name string, withResource bool, meta map[string]string) error {
	b := kiterrors.NewBuilder(grpcCode, httpCode, msg, code, categoryPubsub)
	if withResource {
		b = b.WithResourceInfo("pubsub", name, "", msg)
	}
	return b.WithErrorInfo(reason, meta).Build()
}

func errNotConfigured(name string, meta map[string]string) error {
	return pubsubError(codes.FailedPrecondition, http.StatusBadRequest, fmt.Sprintf("pubsub %s is not configured", name),
		"ERR_PUBSUB_NOT_CONFIGURED", "DAPR_PUBSUB_NOT_CONFIGURED", name, false, meta)
}

func errNotFound(name string, meta map[string]string) error {
	return pubsubError(codes.InvalidArgument, http.StatusNotFound, fmt.Sprintf("pubsub %s is not found", name),
		"ERR_PUBSUB_NOT_FOUND", "DAPR_PUBSUB_NOT_FOUND", name, false, meta)
}

func errNameEmpty(meta map[string]string) error {
	return pubsubError(codes.InvalidArgument, http.StatusNotFound, "pubsub name is empty",
		"ERR_PUBSUB_EMPTY", "DAPR_PUBSUB_NAME_EMPTY", "", true, meta)
}

func errTopicEmpty(name string, meta map[string]string) error {
	return pubsubError(codes.InvalidArgument, http.StatusNotFound, "topic is empty in pubsub "+name,
		"ERR_TOPIC_NAME_EMPTY", "DAPR_PUBSUB_TOPIC_NAME_EMPTY", name, true, meta)
}

func errForbidden(name, topic, appID string) error {
	return pubsubError(codes.PermissionDenied, http.StatusForbidden, fmt.Sprintf("topic %s is not allowed for app id %s", topic, appID),
		"ERR_PUBSUB_FORBIDDEN", "DAPR_PUBSUB_FORBIDDEN", name, true, map[string]string{"topic": topic})
}

func errPublish(name, topic string, err error) error {
	return pubsubError(codes.Internal, http.StatusInternalServerError, fmt.Sprintf("error when publishing to topic %s in pubsub %s: %s", topic, name, err),
		"ERR_PUBSUB_PUBLISH_MESSAGE", "DAPR_PUBSUB_PUBLISH_MESSAGE", name, true, map[string]string{"topic": topic})
}

func errMetadata(name string, err error) error {
	return pubsubError(codes.InvalidArgument, http.StatusBadRequest, fmt.Sprintf("failed deserializing metadata. Error: %s", err),
		"ERR_PUBSUB_REQUEST_METADATA", "DAPR_PUBSUB_METADATA_DESERIALIZATION", name, true, nil)
}

func errCloudEvent(name string, err error) error {
	return pubsubError(codes.InvalidArgument, http.StatusBadRequest, fmt.Sprintf("cannot create cloudevent: %s", err),
		"ERR_PUBSUB_CLOUD_EVENTS_SER", "DAPR_PUBSUB_CLOUD_EVENT_CREATION", name, true, nil)
}

func errUnmarshalEvents(name, topic string, err error) error {
	return pubsubError(codes.InvalidArgument, http.StatusBadRequest, fmt.Sprintf("error when unmarshaling the request for topic %s pubsub %s: %s", topic, name, err),
		"ERR_PUBSUB_EVENTS_SER", "DAPR_PUBSUB_UNMARSHAL_EVENTS", name, true, nil)
}

// publishRequest is one publish, from either API.
type publishRequest struct {
	pubsub, topic string
	data          []byte
	// checkedJSON says data is known to be one JSON value in valid UTF-8,
	// nested at most maxJSONDepth deep (an event of an HTTP bulk publish
	// whose body was validated as a whole), so the envelope need not
	// validate it again.
	checkedJSON             bool
	contentType             string
	metadata                map[string]string
	traceParent, traceState string
}

// component validates the pub/sub and topic of a request.
func (a *API) component(name, topic string, meta map[string]string) (*Component, error) {
	if a.Lookup == nil || (a.Configured != nil && !a.Configured()) {
		return nil, errNotConfigured(name, meta)
	}
	if name == "" {
		return nil, errNameEmpty(meta)
	}
	c, ok := a.Lookup(name)
	if !ok {
		return nil, errNotFound(name, meta)
	}
	if topic == "" {
		return nil, errTopicEmpty(name, meta)
	}
	if !c.CanPublish(a.AppID, topic) {
		return nil, errForbidden(name, topic, a.AppID)
	}
	return c, nil
}

// message builds the broker message of a publish: the CloudEvent unless
// metadata.rawPayload is true.
func (a *API) message(req publishRequest) (Message, error) {
	raw := false
	var ttl time.Duration
	for k, v := range req.metadata {
		switch strings.ToLower(k) {
		case "rawpayload":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Message{}, errMetadata(req.pubsub, fmt.Errorf("rawPayload %q: %w", v, err))
			}
			raw = b
		case "ttlinseconds":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return Message{}, errMetadata(req.pubsub, fmt.Errorf("ttlInSeconds %q: want a whole number of seconds", v))
			}
			ttl = time.Duration(n) * time.Second
		}
	}
	msg := Message{Data: req.data, ContentType: req.contentType, Metadata: req.metadata}
	if ttl > 0 {
		msg.Expires = time.Now().Add(ttl)
	}
	if raw {
		return msg, nil
	}
	var err error
	msg.Data, err = newEnvelope(eventInput{
		source: a.AppID, topic: req.topic, pubsub: req.pubsub, contentType: req.contentType, data: req.data, checkedJSON: req.checkedJSON,
		traceParent: req.traceParent, traceState: req.traceState, metadata: req.metadata, expires: msg.Expires,
	})
	if err != nil {
		return Message{}, errCloudEvent(req.pubsub, err)
	}
	msg.ContentType = CloudEventContentType
	return msg, nil
}

func (a *API) publish(ctx context.Context, req publishRequest) error {
	c, err := a.component(req.pubsub, req.topic, req.metadata)
	if err != nil {
		return err
	}
	msg, err := a.message(req)
	if err != nil {
		return err
	}
	if err := c.Broker.Publish(ctx, req.topic, msg); err != nil {
		return errPublish(req.pubsub, req.topic, err)
	}
	return nil
}

func writeError(w http.ResponseWriter, err error) {
	if kerr, ok := kiterrors.FromError(err); ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(kerr.HTTPStatusCode())
		_, _ = w.Write(kerr.JSONErrorValue())
		return
	}
	body, _ := json.Marshal(map[string]string{"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE", "message": err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(body)
}

func requestMetadata(r *http.Request) map[string]string {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		if name, ok := strings.CutPrefix(k, "metadata."); ok && len(v) > 0 {
			out[name] = v[0]
		}
	}
	return out
}

// ServeHTTP serves POST /v1.0/publish/{pubsub}/{topic} and the bulk routes
// /v1.0/publish/bulk/... and /v1.0-alpha1/publish/bulk/...
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	bulk := false
	var rest string
	switch {
	case strings.HasPrefix(p, "/v1.0-alpha1/publish/bulk/"):
		rest, bulk = strings.TrimPrefix(p, "/v1.0-alpha1/publish/bulk/"), true
	case strings.HasPrefix(p, "/v1.0/publish/bulk/"):
		rest, bulk = strings.TrimPrefix(p, "/v1.0/publish/bulk/"), true
	case strings.HasPrefix(p, "/v1.0/publish/"):
		rest = strings.TrimPrefix(p, "/v1.0/publish/")
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	nameEsc, topicEsc, _ := strings.Cut(rest, "/")
	name, _ := url.PathUnescape(nameEsc)
	topic, _ := url.PathUnescape(topicEsc)
	meta := requestMetadata(r)
	if bulk {
		a.httpBulk(w, r, name, topic, meta)
		return
	}
	body, err := readBody(r)
	if err != nil {
		a.fail(w, errPublish(name, topic, err))
		return
	}
	tp, ts := traceOfCall(r.Context(), r.Header.Get("traceparent"), r.Header.Get("tracestate"))
	err = a.publish(r.Context(), publishRequest{
		pubsub: name, topic: topic, data: body, contentType: r.Header.Get("Content-Type"), metadata: meta,
		traceParent: tp, traceState: ts,
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// preallocLimit bounds the buffer readBody allocates on a request's word
// (its Content-Length) before any of the body arrived.
const preallocLimit = 8 << 20

// readBody reads r's body into one buffer of its Content-Length when that is
// known and at most preallocLimit, where io.ReadAll would grow and copy a
// buffer step by step (a twentieth of a bulk publisher's CPU in a profile).
// The server ends a body at its Content-Length, and the sidecar's body
// limit still applies to the reader.
func readBody(r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n <= 0 || n > preallocLimit {
		return io.ReadAll(r.Body)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.Body, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (a *API) fail(w http.ResponseWriter, err error) {
	a.log().Debug("publish failed", "err", err)
	writeError(w, err)
}

// bulkEntry is one entry of an HTTP bulk publish.
type bulkEntry struct {
	EntryID     string            `json:"entryId"`
	Event       json.RawMessage   `json:"event"`
	ContentType string            `json:"contentType"`
	Metadata    map[string]string `json:"metadata"`
}

// failedEntry is one entry a bulk publish could not publish.
type failedEntry struct {
	EntryID string `json:"entryId"`
	Error   string `json:"error"`
}

func (a *API) httpBulk(w http.ResponseWriter, r *http.Request, name, topic string, meta map[string]string) {
	if _, err := a.component(name, topic, meta); err != nil {
		a.fail(w, err)
		return
	}
	body, err := readBody(r)
	if err != nil {
		a.fail(w, errUnmarshalEvents(name, topic, err))
		return
	}
	entries, checked, err := decodeBulkEntries(body)
	if err != nil {
		a.fail(w, errUnmarshalEvents(name, topic, err))
		return
	}
	in := make([]bulkInput, len(entries))
	for i, e := range entries {
		data := []byte(e.Event)
		isChecked := checked && len(data) > 0
		// A JSON string event is published as its text, as daprd does for
		// text content types.
		var s string
		if !isJSON(e.ContentType) && !isCloudEvent(e.ContentType) && json.Unmarshal(e.Event, &s) == nil {
			data, isChecked = []byte(s), false
		}
		in[i] = bulkInput{entryID: e.EntryID, data: data, checkedJSON: isChecked, contentType: e.ContentType, metadata: e.Metadata}
	}
	tp, ts := traceOfCall(r.Context(), r.Header.Get("traceparent"), r.Header.Get("tracestate"))
	failed, err := a.bulkPublish(r.Context(), name, topic, in, meta, tp, ts)
	if err != nil {
		a.fail(w, err)
		return
	}
	if len(failed) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	answer, _ := json.Marshal(struct {
		FailedEntries []failedEntry `json:"failedEntries"`
		ErrorCode     string        `json:"errorCode"`
	}{failed, "ERR_PUBSUB_PUBLISH_MESSAGE"})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(answer)
}

type bulkInput struct {
	entryID string
	data    []byte
	// checkedJSON: data is known to be one JSON value in valid UTF-8 (see
	// publishRequest).
	checkedJSON bool
	contentType string
	metadata    map[string]string
}

// bulkPublish publishes entries; failed lists the entries the broker did
// not take. err is for the request as a whole (no entry was published).
func (a *API) bulkPublish(ctx context.Context, name, topic string, entries []bulkInput, meta map[string]string, traceParent, traceState string) ([]failedEntry, error) {
	c, err := a.component(name, topic, meta)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	msgs := make([]Message, len(entries))
	for i, e := range entries {
		if e.entryID == "" {
			return nil, errUnmarshalEvents(name, topic, fmt.Errorf("entry %d has no entryId", i))
		}
		if seen[e.entryID] {
			return nil, errUnmarshalEvents(name, topic, fmt.Errorf("entryId %q appears twice", e.entryID))
		}
		seen[e.entryID] = true
		em := map[string]string{}
		for k, v := range meta {
			em[k] = v
		}
		for k, v := range e.metadata {
			em[k] = v
		}
		m, err := a.message(publishRequest{pubsub: name, topic: topic, data: e.data, checkedJSON: e.checkedJSON, contentType: e.contentType, metadata: em, traceParent: traceParent, traceState: traceState})
		if err != nil {
			return nil, err
		}
		msgs[i] = m
	}
	var failed []failedEntry
	if bp, ok := c.Broker.(BulkPublisher); ok {
		err := bp.BulkPublish(ctx, topic, msgs)
		var be *BulkError
		switch {
		case errors.As(err, &be):
			for i, ferr := range be.Failed {
				if i >= 0 && i < len(entries) {
					failed = append(failed, failedEntry{EntryID: entries[i].entryID, Error: ferr.Error()})
				}
			}
		case err != nil:
			for _, e := range entries {
				failed = append(failed, failedEntry{EntryID: e.entryID, Error: err.Error()})
			}
		}
		return failed, nil
	}
	for i, m := range msgs {
		if err := c.Broker.Publish(ctx, topic, m); err != nil {
			failed = append(failed, failedEntry{EntryID: entries[i].entryID, Error: err.Error()})
		}
	}
	return failed, nil
}

// traceOf is the trace context an event published over gRPC carries.
func traceOf(ctx context.Context) (string, string) {
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return traceOfCall(ctx, first("traceparent"), first("tracestate"))
}

// traceOfCall is the trace context a published event carries: the publish
// call's span where the sidecar traces it (or the caller's context the
// sidecar read, grpc-trace-bin included), else the caller's headers.
func traceOfCall(ctx context.Context, traceparent, tracestate string) (string, string) {
	if tp, ts := telemetry.W3C(ctx); tp != "" {
		return tp, ts
	}
	return traceparent, tracestate
}

// PublishEvent is dapr.proto.runtime.v1.Dapr/PublishEvent.
func (a *API) PublishEvent(ctx context.Context, in *runtimev1pb.PublishEventRequest) (*emptypb.Empty, error) {
	tp, ts := traceOf(ctx)
	err := a.publish(ctx, publishRequest{
		pubsub: in.GetPubsubName(), topic: in.GetTopic(), data: in.GetData(), contentType: in.GetDataContentType(),
		metadata: in.GetMetadata(), traceParent: tp, traceState: ts,
	})
	if err != nil {
		a.log().Debug("publish failed", "err", err)
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// BulkPublishEvent is dapr.proto.runtime.v1.Dapr/BulkPublishEvent.
func (a *API) BulkPublishEvent(ctx context.Context, in *runtimev1pb.BulkPublishRequest) (*runtimev1pb.BulkPublishResponse, error) {
	entries := make([]bulkInput, len(in.GetEntries()))
	for i, e := range in.GetEntries() {
		entries[i] = bulkInput{entryID: e.GetEntryId(), data: e.GetEvent(), contentType: e.GetContentType(), metadata: e.GetMetadata()}
	}
	tp, ts := traceOf(ctx)
	failed, err := a.bulkPublish(ctx, in.GetPubsubName(), in.GetTopic(), entries, in.GetMetadata(), tp, ts)
	if err != nil {
		return nil, err
	}
	out := &runtimev1pb.BulkPublishResponse{}
	for _, f := range failed {
		out.FailedEntries = append(out.FailedEntries, &runtimev1pb.BulkPublishResponseFailedEntry{EntryId: f.EntryID, Error: f.Error})
	}
	return out, nil
}

// BulkPublishEventAlpha1 is the alpha name of BulkPublishEvent.
func (a *API) BulkPublishEventAlpha1(ctx context.Context, in *runtimev1pb.BulkPublishRequest) (*runtimev1pb.BulkPublishResponse, error) {
	return a.BulkPublishEvent(ctx, in)
}

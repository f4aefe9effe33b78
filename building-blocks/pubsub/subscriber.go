package pubsub

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/google/cel-go/cel"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
)

// App is how the subscriber reaches its app (the sidecar's app channel).
type App interface {
	// Protocol is http, h2c or grpc.
	Protocol() string
	// WaitReady waits until calls may be delivered to the app.
	WaitReady(ctx context.Context) error
	// Do sends an HTTP request to the app (path and query as given).
	Do(req *http.Request) (*http.Response, error)
	// Callback is the app's gRPC AppCallback service (gRPC apps).
	Callback() runtimev1pb.AppCallbackClient
	// WithToken prepares a gRPC call's context; release ends the call's
	// hold on the app's concurrency.
	WithToken(ctx context.Context) (context.Context, func(), error)
}

// Subscription is one topic the app subscribes to, from the app
// (programmatic) or from a Subscription document (declarative).
type Subscription struct {
	PubsubName string
	Topic      string
	// Rules are tried in order; the first whose CEL expression holds
	// routes the event; else Default.
	Rules           []Rule
	Default         string
	DeadLetterTopic string
	Metadata        map[string]string
	// Bulk delivers the events in batches.
	Bulk BulkSubscribe
	// Source says where it came from, for logs and errors: "the app" or
	// a file.
	Source string
	// Kind says how it was made, as the metadata API reports it.
	Kind Kind
}

// Kind is how a subscription was made.
type Kind string

// The kinds of subscription, as daprd's metadata API names them.
const (
	KindDeclarative  Kind = "DECLARATIVE"
	KindProgrammatic Kind = "PROGRAMMATIC"
	KindStreaming    Kind = "STREAMING"
)

// Rule routes the events its CEL expression (over event) matches to Path.
type Rule struct {
	Match string
	Path  string
	prog  cel.Program
}

// Delivery outcomes, as Dapr apps answer.
const (
	statusSuccess = "SUCCESS"
	statusRetry   = "RETRY"
	statusDrop    = "DROP"
)

// RetryPolicy is the subscriber's built-in retry of a failed delivery,
// before the message goes to its dead-letter topic or back to the broker.
type RetryPolicy struct {
	Attempts int           // deliveries in all (default 5; -1 until one succeeds)
	Initial  time.Duration // first back-off (default 100ms), doubling
	Max      time.Duration // longest back-off (default 5s; Initial for a constant back-off)
	// Timeout bounds each delivery to the app; zero is none.
	Timeout time.Duration
	// Breaker, when set, guards the deliveries: while it is open none is
	// made, and the event goes back to the broker (not to the dead-letter
	// topic) to come again.
	Breaker Breaker
	// Observer, when set, is told of the policy's use (daprd's
	// dapr_resiliency_* metrics; a resiliency.Runner is one).
	Observer Observer
}

// Observer records a delivery policy's use: once per event (or bulk
// batch) delivered under it, each retry, each delivery its timeout cut.
type Observer interface {
	Applied()
	Retrying()
	TimedOut()
}

// Breaker is a circuit breaker (resiliency.Breaker is one): Allow fails
// while it is open; done reports whether the call it allowed succeeded.
type Breaker interface {
	Allow() (done func(success bool), err error)
}

// Subscriber delivers the app's subscriptions: it asks the app for its
// programmatic subscriptions once it is ready, adds the declarative ones,
// subscribes to each topic in the app's consumer group, and delivers every
// event to the app, acknowledging it only after the app answered success.
type Subscriber struct {
	Lookup func(name string) (*Component, bool)
	App    App
	AppID  string
	// Declarative returns the Subscription documents that apply to the app.
	Declarative func() []Subscription
	// MaxInFlight bounds the deliveries in flight per subscription
	// (default 16; --app-max-concurrency bounds them all).
	MaxInFlight int
	Retry       RetryPolicy
	// Inbound, when set, gives the retry of deliveries from one pub/sub
	// component (its Resiliency inbound policy); false leaves Retry.
	Inbound func(pubsubName string) (RetryPolicy, bool)
	Logger  *slog.Logger

	// Changed signals that the declarative subscriptions or the components
	// changed (nil: they never do).
	Changed <-chan struct{}
	// Tracer, when set, gives each delivery a span, a child of the
	// publisher's trace context the event carries.
	Tracer trace.Tracer

	// Ingress, when set, learns how each delivery to the app ended (the
	// metrics); nil records nothing.
	Ingress IngressRecorder
	// Subscribed, when set, is called once Run has made the subscriptions
	// it first gathered (the app's own and the declarative ones): the end
	// of the subscriber's start-up.
	Subscribed func()

	mu     sync.Mutex
	active map[subKey]*activeSub
	seq    uint64
}

// celEnv declares event, the CloudEvent as a map, as Dapr's rules see it.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)))
})

// CompileRules compiles the CEL expressions of s's rules; an error names
// the rule.
func (s *Subscription) CompileRules() error {
	env, err := celEnv()
	if err != nil {
		return err
	}
	for i := range s.Rules {
		ast, iss := env.Compile(s.Rules[i].Match)
		if iss != nil && iss.Err() != nil {
			return fmt.Errorf("routes.rules[%d].match %q: %w", i, s.Rules[i].Match, iss.Err())
		}
		if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
			return fmt.Errorf("routes.rules[%d].match %q: not a boolean expression", i, s.Rules[i].Match)
		}
		prg, err := env.Program(ast)
		if err != nil {
			return fmt.Errorf("routes.rules[%d].match %q: %w", i, s.Rules[i].Match, err)
		}
		s.Rules[i].prog = prg
	}
	return nil
}

// path routes an event: the first matching rule's path, else the default;
// "" when nothing routes it. The event is decoded only for rules.
func (s *Subscription) path(event *cloudEvent) string {
	if len(s.Rules) == 0 {
		return s.Default
	}
	return s.pathOf(event.value())
}

// pathOf routes an event decoded into Go values.
func (s *Subscription) pathOf(event map[string]any) string {
	for _, r := range s.Rules {
		if r.prog == nil {
			continue
		}
		out, _, err := r.prog.Eval(map[string]any{"event": event})
		if err == nil && out.Value() == true {
			return r.Path
		}
	}
	return s.Default
}

func (sub *Subscriber) log() *slog.Logger {
	if sub.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return sub.Logger
}

// Active lists the subscriptions in place (the metadata API shows them),
// in the order they were made.
func (sub *Subscriber) Active() []Subscription {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	as := make([]*activeSub, 0, len(sub.active))
	for _, a := range sub.active {
		as = append(as, a)
	}
	slices.SortFunc(as, func(a, b *activeSub) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]Subscription, len(as))
	for i, a := range as {
		out[i] = a.s
	}
	return out
}

// subKey identifies a subscription: one per pub/sub and topic, as in daprd.
type subKey struct{ pubsub, topic string }

// activeSub is a subscription in place: what it was made from, on which
// component instance, and how to end it.
type activeSub struct {
	s      Subscription
	comp   *Component
	sig    string
	seq    uint64
	cancel context.CancelFunc
}

// signature is what a subscription is made of, to tell a changed one from
// an unchanged one on reload.
func (s *Subscription) signature() string {
	b, _ := json.Marshal(struct {
		Rules                          []Rule
		Default, DeadLetterTopic, Kind string
		Metadata                       map[string]string
		Bulk                           BulkSubscribe
	}{s.Rules, s.Default, s.DeadLetterTopic, string(s.Kind), s.Metadata, s.Bulk})
	return string(b)
}

// Run waits for the app, gathers the subscriptions and subscribes; the
// deliveries run until ctx is done. On each signal of Changed it brings the
// subscriptions in line with the declarative ones of the moment and with
// the components loaded then: a new one is made, a removed one ends, a
// changed one (or one whose component was replaced) is made again. The
// app's own subscriptions are read once, as daprd reads them.
func (sub *Subscriber) Run(ctx context.Context) error {
	if err := sub.App.WaitReady(ctx); err != nil {
		return nil
	}
	prog, err := sub.programmatic(ctx)
	if err != nil {
		sub.log().Warn("the app's subscriptions could not be read; only the declarative ones apply", "err", err)
	}
	for i := range prog {
		prog[i].Kind = KindProgrammatic
	}
	sub.sync(ctx, prog)
	if sub.Subscribed != nil {
		sub.Subscribed()
	}
	for {
		select {
		case <-ctx.Done():
			sub.mu.Lock()
			for k, a := range sub.active {
				a.cancel()
				delete(sub.active, k)
			}
			sub.mu.Unlock()
			return nil
		case <-sub.Changed:
			sub.sync(ctx, prog)
		}
	}
}

// sync makes the subscriptions in place those of the declarative documents
// and of prog. A subscription that cannot be made is logged and tried
// again on the next change.
func (sub *Subscriber) sync(ctx context.Context, prog []Subscription) {
	var want []Subscription
	if sub.Declarative != nil {
		for _, s := range sub.Declarative() {
			s.Kind = KindDeclarative
			want = append(want, s)
		}
	}
	want = append(want, prog...)
	desired := make(map[subKey]Subscription, len(want))
	var order []subKey
	for _, s := range want {
		k := subKey{s.PubsubName, s.Topic}
		if prev, dup := desired[k]; dup {
			sub.log().Warn("a second subscription to the same topic is ignored", "pubsub", s.PubsubName, "topic", s.Topic, "kept", prev.Source, "ignored", s.Source)
			continue
		}
		desired[k] = s
		order = append(order, k)
	}
	// Only Run's goroutine changes the map; the lock is for Active's
	// readers, and is not held while a broker is called.
	sub.mu.Lock()
	if sub.active == nil {
		sub.active = map[subKey]*activeSub{}
	}
	var ended []*activeSub
	for k, a := range sub.active {
		s, keep := desired[k]
		if keep && s.signature() == a.sig {
			if c, ok := sub.Lookup(k.pubsub); ok && c == a.comp {
				continue
			}
		}
		ended = append(ended, a)
		delete(sub.active, k)
	}
	sub.mu.Unlock()
	for _, a := range ended {
		a.cancel()
		sub.log().Info("unsubscribed", "pubsub", a.s.PubsubName, "topic", a.s.Topic, "source", a.s.Source)
	}
	for _, k := range order {
		sub.mu.Lock()
		_, ok := sub.active[k]
		sub.mu.Unlock()
		if ok {
			continue
		}
		s := desired[k]
		a, err := sub.subscribe(ctx, s)
		if err != nil {
			sub.log().Error("subscription not made", "pubsub", s.PubsubName, "topic", s.Topic, "source", s.Source, "err", err)
			continue
		}
		sub.mu.Lock()
		sub.seq++
		a.seq = sub.seq
		sub.active[k] = a
		sub.mu.Unlock()
	}
}

// subscribe makes one subscription, under a context of its own so that a
// reload can end it alone.
func (sub *Subscriber) subscribe(ctx context.Context, s Subscription) (*activeSub, error) {
	sig := s.signature()
	// The rules may be shared with the caller's copy: compile into a new
	// slice.
	s.Rules = append([]Rule(nil), s.Rules...)
	if err := s.CompileRules(); err != nil {
		return nil, err
	}
	if s.Default == "" && len(s.Rules) == 0 {
		return nil, errors.New("no route: give route, or routes.default or rules")
	}
	c, ok := sub.Lookup(s.PubsubName)
	if !ok {
		return nil, fmt.Errorf("pubsub %s is not found", s.PubsubName)
	}
	if !c.CanSubscribe(sub.AppID, s.Topic) {
		return nil, fmt.Errorf("topic %s is not allowed for app id %s", s.Topic, sub.AppID)
	}
	inFlight := sub.MaxInFlight
	if inFlight <= 0 {
		inFlight = 16
	}
	handler := func(ctx context.Context, m *Message) error { return sub.handle(ctx, c, &s, m) }
	if s.Bulk.Enabled {
		if s.Bulk.MaxMessages <= 0 {
			s.Bulk.MaxMessages = defaultBulkMessages
		}
		if s.Bulk.MaxAwait <= 0 {
			s.Bulk.MaxAwait = defaultBulkAwait
		}
		// A batch fills from the deliveries in flight, and the next one
		// fills while the app has the first: with room for one batch only,
		// the broker was asked for more only once the app had answered,
		// and the sidecar sat idle through every pull and every delivery.
		inFlight = max(inFlight, 2*s.Bulk.MaxMessages)
		b := &batcher{sub: sub, s: &s, path: s.path}
		handler = func(ctx context.Context, m *Message) error {
			event, err := eventOf(m, &s)
			if err != nil || eventExpired(event) || (!m.Expires.IsZero() && time.Now().After(m.Expires)) {
				return nil
			}
			st, err := b.add(ctx, event)
			if err != nil {
				return err
			}
			if st == statusRetry {
				return errors.New("the app asked for a retry")
			}
			return nil
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	err := c.Broker.Subscribe(sctx, SubscribeRequest{Topic: s.Topic, Group: sub.AppID, MaxInFlight: inFlight, Metadata: s.Metadata}, handler)
	if err != nil {
		cancel()
		return nil, err
	}
	sub.log().Info("subscribed", "pubsub", s.PubsubName, "topic", s.Topic, "source", s.Source)
	return &activeSub{s: s, comp: c, sig: sig, cancel: cancel}, nil
}

// handle delivers one message, with the built-in retries; nil acks it.
func (sub *Subscriber) handle(ctx context.Context, c *Component, s *Subscription, m *Message) error {
	event, err := eventOf(m, s)
	if err != nil {
		// A message that is not a CloudEvent cannot be delivered; retrying
		// will not change it.
		sub.log().Warn("dropping a message that is not a CloudEvent", "pubsub", s.PubsubName, "topic", s.Topic, "err", err)
		return nil
	}
	if eventExpired(event) || (!m.Expires.IsZero() && time.Now().After(m.Expires)) {
		sub.log().Debug("dropping an expired message", "pubsub", s.PubsubName, "topic", s.Topic)
		return nil
	}
	path := s.path(event)
	if path == "" {
		sub.log().Debug("no route matches the event; dropped", "pubsub", s.PubsubName, "topic", s.Topic)
		return nil
	}
	pol := sub.inboundPolicy(s.PubsubName)
	if pol.Attempts == 0 || pol.Attempts < -1 {
		pol.Attempts = 5
	}
	if pol.Initial <= 0 {
		pol.Initial = 100 * time.Millisecond
	}
	if pol.Max <= 0 {
		pol.Max = 5 * time.Second
	}
	wait := pol.Initial
	var last error
	if pol.Observer != nil {
		pol.Observer.Applied()
	}
	for attempt := 1; pol.Attempts < 0 || attempt <= pol.Attempts; attempt++ {
		var done func(bool)
		if pol.Breaker != nil {
			var err error
			if done, err = pol.Breaker.Allow(); err != nil {
				// Not delivered: the broker has the event again later.
				return fmt.Errorf("delivery to the app not made: %w", err)
			}
		}
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if pol.Timeout > 0 {
			dctx, cancel = context.WithTimeout(ctx, pol.Timeout)
		}
		start := time.Now()
		status, err := sub.deliver(dctx, s, path, event)
		sub.recordDelivery(s, status, err, time.Since(start))
		if pol.Observer != nil && pol.Timeout > 0 && dctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			pol.Observer.TimedOut()
		}
		cancel()
		if done != nil {
			done(err == nil && (status == statusSuccess || status == statusDrop))
		}
		switch {
		case err == nil && status == statusSuccess:
			return nil
		case err == nil && status == statusDrop:
			sub.log().Warn("the app dropped an event", "pubsub", s.PubsubName, "topic", s.Topic, "id", event.str("id"))
			return nil
		case err != nil:
			last = err
		default:
			last = errors.New("the app asked for a retry")
		}
		if attempt == pol.Attempts || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		if pol.Observer != nil && ctx.Err() == nil {
			pol.Observer.Retrying()
		}
		wait = min(wait*2, pol.Max)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s.DeadLetterTopic != "" {
		if err := c.Broker.Publish(ctx, s.DeadLetterTopic, Message{Data: m.Data, ContentType: m.ContentType, Metadata: m.Metadata}); err != nil {
			return fmt.Errorf("delivery failed (%v) and the dead-letter topic %s refused it: %w", last, s.DeadLetterTopic, err)
		}
		sub.log().Warn("event sent to the dead-letter topic after its retries", "pubsub", s.PubsubName, "topic", s.Topic, "deadLetterTopic", s.DeadLetterTopic, "err", last)
		return nil
	}
	return last
}

// inboundPolicy is the retry, timeout and breaker of deliveries from the
// pub/sub component pubsubName: its Resiliency inbound policy, else Retry.
func (sub *Subscriber) inboundPolicy(pubsubName string) RetryPolicy {
	if sub.Inbound != nil {
		if own, ok := sub.Inbound(pubsubName); ok {
			return own
		}
	}
	return sub.Retry
}

// eventOf is the CloudEvent of a message: the message itself, or a new one
// around a raw payload.
func eventOf(m *Message, s *Subscription) (*cloudEvent, error) {
	raw := false
	for k, v := range s.Metadata {
		if strings.EqualFold(k, "rawPayload") && strings.EqualFold(v, "true") {
			raw = true
		}
	}
	if !raw {
		ce, err := parseCloudEvent(m.Data)
		if err == nil {
			return ce, nil
		}
		if errors.Is(err, errNotObject) || (m.ContentType != "" && isCloudEvent(m.ContentType)) {
			return nil, fmt.Errorf("not a JSON object: %v", err)
		}
	}
	// A raw subscription, or a payload that is not JSON (published raw):
	// wrapped in a new CloudEvent rather than lost.
	fields := map[string]string{
		"id": quoted(newID()), "specversion": quoted(specVersion), "datacontenttype": quoted("application/octet-stream"),
		"source": quoted("Dapr"), "type": quoted(defaultEventType), "topic": quoted(s.Topic), "pubsubname": quoted(s.PubsubName),
		"data_base64": quoted(base64.StdEncoding.EncodeToString(m.Data)),
	}
	return &cloudEvent{raw: encodeMembers(fields), fields: fields}, nil
}

// deliverApp makes one delivery to the app and returns its status.
func (sub *Subscriber) deliverApp(ctx context.Context, s *Subscription, path string, event *cloudEvent) (string, error) {
	if sub.App.Protocol() == "grpc" {
		return sub.deliverGRPC(ctx, s, path, event)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://app/"+strings.TrimPrefix(path, "/"), bytes.NewReader(event.raw))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", CloudEventContentType)
	if tp, ts := deliveryTrace(ctx, event); tp != "" {
		req.Header.Set("traceparent", tp)
		if ts != "" {
			req.Header.Set("tracestate", ts)
		}
	}
	resp, err := sub.App.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		sub.log().Warn("the app has no handler for the route; the event is dropped, as daprd does", "path", path, "topic", s.Topic)
		return statusDrop, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return "", fmt.Errorf("the app answered %d", resp.StatusCode)
	}
	var st struct {
		Status string `json:"status"`
	}
	if len(bytes.TrimSpace(answer)) == 0 || json.Unmarshal(answer, &st) != nil || st.Status == "" {
		return statusSuccess, nil
	}
	switch strings.ToUpper(st.Status) {
	case statusSuccess, statusRetry, statusDrop:
		return strings.ToUpper(st.Status), nil
	}
	return "", fmt.Errorf("the app answered status %q", st.Status)
}

// ceCoreFields are the CloudEvent attributes TopicEventRequest has fields
// for; the rest go in its extensions.
var ceCoreFields = map[string]bool{"id": true, "source": true, "type": true, "specversion": true, "datacontenttype": true, "data": true, "data_base64": true, "topic": true, "pubsubname": true}

func (sub *Subscriber) deliverGRPC(ctx context.Context, s *Subscription, path string, event *cloudEvent) (string, error) {
	req, err := topicEventRequest(s, path, event)
	if err != nil {
		return statusDrop, nil // an event whose data cannot be read will not get better
	}
	cctx, release, err := sub.App.WithToken(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	if tp, ts := deliveryTrace(ctx, event); tp != "" {
		cctx = metadata.AppendToOutgoingContext(cctx, "traceparent", tp)
		if ts != "" {
			cctx = metadata.AppendToOutgoingContext(cctx, "tracestate", ts)
		}
	}
	resp, err := sub.App.Callback().OnTopicEvent(cctx, req)
	if err != nil {
		return "", err
	}
	switch resp.GetStatus() {
	case runtimev1pb.TopicEventResponse_SUCCESS:
		return statusSuccess, nil
	case runtimev1pb.TopicEventResponse_DROP:
		return statusDrop, nil
	default:
		return statusRetry, nil
	}
}

// programmatic asks the app for its subscriptions: GET /dapr/subscribe
// (HTTP) or ListTopicSubscriptions (gRPC). An app without them has none.
func (sub *Subscriber) programmatic(ctx context.Context) ([]Subscription, error) {
	if sub.App.Protocol() == "grpc" {
		cctx, release, err := sub.App.WithToken(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
		resp, err := sub.App.Callback().ListTopicSubscriptions(cctx, &emptypb.Empty{})
		if err != nil {
			return nil, nil // an app that does not implement it has none
		}
		var out []Subscription
		for _, t := range resp.GetSubscriptions() {
			s := Subscription{PubsubName: t.GetPubsubName(), Topic: t.GetTopic(), Metadata: t.GetMetadata(), DeadLetterTopic: t.GetDeadLetterTopic(), Source: "the app (ListTopicSubscriptions)"}
			s.Default = t.GetRoutes().GetDefault()
			for _, r := range t.GetRoutes().GetRules() {
				s.Rules = append(s.Rules, Rule{Match: r.GetMatch(), Path: r.GetPath()})
			}
			if s.Default == "" && len(s.Rules) == 0 {
				s.Default = s.Topic // gRPC apps route by topic when no path is given
			}
			if bs := t.GetBulkSubscribe(); bs.GetEnabled() {
				s.Bulk = BulkSubscribe{Enabled: true, MaxMessages: int(bs.GetMaxMessagesCount()), MaxAwait: time.Duration(bs.GetMaxAwaitDurationMs()) * time.Millisecond}
			}
			out = append(out, s)
		}
		return out, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://app/dapr/subscribe", nil)
	if err != nil {
		return nil, err
	}
	resp, err := sub.App.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /dapr/subscribe: the app answered %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	return ParseProgrammatic(body)
}

// ParseProgrammatic reads the app's answer to GET /dapr/subscribe.
func ParseProgrammatic(body []byte) ([]Subscription, error) {
	var items []subscriptionJSON
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, fmt.Errorf("GET /dapr/subscribe: %w", err)
	}
	out := make([]Subscription, 0, len(items))
	for i, it := range items {
		s, err := it.subscription("the app (GET /dapr/subscribe)")
		if err != nil {
			return nil, fmt.Errorf("GET /dapr/subscribe: [%d]: %w", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// subscriptionJSON is a subscription as apps and Subscription documents
// write it (v1alpha1 route, v2alpha1 routes).
type subscriptionJSON struct {
	PubsubName      string            `json:"pubsubname"`
	Topic           string            `json:"topic"`
	Route           string            `json:"route"`
	Metadata        map[string]string `json:"metadata"`
	DeadLetterTopic string            `json:"deadLetterTopic"`
	Routes          struct {
		Rules []struct {
			Match string `json:"match"`
			Path  string `json:"path"`
		} `json:"rules"`
		Default string `json:"default"`
	} `json:"routes"`
	BulkSubscribe struct {
		Enabled            bool `json:"enabled"`
		MaxMessagesCount   int  `json:"maxMessagesCount"`
		MaxAwaitDurationMs int  `json:"maxAwaitDurationMs"`
	} `json:"bulkSubscribe"`
}

func (j subscriptionJSON) subscription(source string) (Subscription, error) {
	s := Subscription{PubsubName: j.PubsubName, Topic: j.Topic, Metadata: j.Metadata, DeadLetterTopic: j.DeadLetterTopic, Source: source}
	if s.PubsubName == "" {
		return s, errors.New("pubsubname is required")
	}
	if s.Topic == "" {
		return s, errors.New("topic is required")
	}
	s.Default = j.Routes.Default
	if s.Default == "" {
		s.Default = j.Route
	}
	for _, r := range j.Routes.Rules {
		s.Rules = append(s.Rules, Rule{Match: r.Match, Path: r.Path})
	}
	bs := j.BulkSubscribe
	if bs.MaxMessagesCount < 0 || bs.MaxAwaitDurationMs < 0 {
		return s, errors.New("bulkSubscribe: maxMessagesCount and maxAwaitDurationMs must not be negative")
	}
	s.Bulk = BulkSubscribe{Enabled: bs.Enabled, MaxMessages: bs.MaxMessagesCount, MaxAwait: time.Duration(bs.MaxAwaitDurationMs) * time.Millisecond}
	return s, s.CompileRules()
}

// ParseDeclarative reads a Subscription document (its JSON, as package
// config carries it): spec.pubsubname, spec.topic, spec.route (v1alpha1)
// or spec.routes (v2alpha1), spec.metadata, spec.deadLetterTopic.
func ParseDeclarative(doc []byte, source string) (Subscription, error) {
	var d struct {
		Spec subscriptionJSON `json:"spec"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return Subscription{}, fmt.Errorf("%s: %w", source, err)
	}
	s, err := d.Spec.subscription(source)
	if err != nil {
		return s, fmt.Errorf("%s: spec: %w", source, err)
	}
	return s, nil
}

// String names the subscription in logs.
func (s Subscription) String() string {
	return fmt.Sprintf("%s/%s (%s)", s.PubsubName, s.Topic, s.Source)
}

// MetadataProto is s as the metadata API reports it: the default route as
// a rule without a match, last, as daprd lists it.
func (s Subscription) MetadataProto() *runtimev1pb.PubsubSubscription {
	out := &runtimev1pb.PubsubSubscription{
		PubsubName: s.PubsubName, Topic: s.Topic, Metadata: s.Metadata, DeadLetterTopic: s.DeadLetterTopic,
		Rules: &runtimev1pb.PubsubSubscriptionRules{},
	}
	switch s.Kind {
	case KindDeclarative:
		out.Type = runtimev1pb.PubsubSubscriptionType_DECLARATIVE
	case KindProgrammatic:
		out.Type = runtimev1pb.PubsubSubscriptionType_PROGRAMMATIC
	case KindStreaming:
		out.Type = runtimev1pb.PubsubSubscriptionType_STREAMING
	}
	for _, r := range s.Rules {
		out.Rules.Rules = append(out.Rules.Rules, &runtimev1pb.PubsubSubscriptionRule{Match: r.Match, Path: r.Path})
	}
	if s.Default != "" {
		out.Rules.Rules = append(out.Rules.Rules, &runtimev1pb.PubsubSubscriptionRule{Path: s.Default})
	}
	return out
}

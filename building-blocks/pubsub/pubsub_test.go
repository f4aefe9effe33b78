package pubsub

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDeclarativeSubscriptions(t *testing.T) {
	v2 := `{"apiVersion":"dapr.io/v2alpha1","kind":"Subscription","spec":{"pubsubname":"ps","topic":"t","routes":{"rules":[{"match":"event.type == \"a\"","path":"/a"},{"match":"event.data.n > 2","path":"/big"}],"default":"/rest"},"deadLetterTopic":"dead"}}`
	s, err := ParseDeclarative([]byte(v2), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		event map[string]any
		want  string
	}{
		{map[string]any{"type": "a"}, "/a"},
		{map[string]any{"type": "b", "data": map[string]any{"n": 3}}, "/big"},
		{map[string]any{"type": "b", "data": map[string]any{"n": 1}}, "/rest"},
		{map[string]any{"type": "b"}, "/rest"}, // a rule that fails to evaluate does not match
	} {
		if got := s.path(c.event); got != c.want {
			t.Errorf("%v routed to %q, want %q", c.event, got, c.want)
		}
	}
	if s.DeadLetterTopic != "dead" {
		t.Errorf("dead-letter topic %q", s.DeadLetterTopic)
	}
	v1 := `{"spec":{"pubsubname":"ps","topic":"t","route":"/orders"}}`
	if s, err := ParseDeclarative([]byte(v1), "g.yaml"); err != nil || s.Default != "/orders" {
		t.Errorf("v1alpha1 route: %+v %v", s, err)
	}
	bad := `{"spec":{"pubsubname":"ps","topic":"t","routes":{"rules":[{"match":"event.type ==","path":"/a"}]}}}`
	if _, err := ParseDeclarative([]byte(bad), "h.yaml"); err == nil || !strings.Contains(err.Error(), "h.yaml") || !strings.Contains(err.Error(), "rules[0].match") {
		t.Errorf("a CEL rule that does not compile: %v", err)
	}
	if _, err := ParseDeclarative([]byte(`{"spec":{"topic":"t","route":"/x"}}`), "i.yaml"); err == nil {
		t.Error("a subscription without pubsubname was accepted")
	}
	subs, err := ParseProgrammatic([]byte(`[{"pubsubname":"ps","topic":"t","route":"/t","metadata":{"rawPayload":"true"}}]`))
	if err != nil || len(subs) != 1 || subs[0].Default != "/t" || subs[0].Metadata["rawPayload"] != "true" {
		t.Errorf("programmatic: %+v %v", subs, err)
	}
}

func TestEnvelope(t *testing.T) {
	ce, err := newEnvelope(eventInput{source: "app", topic: "t", pubsub: "ps", contentType: "application/json", data: []byte(`{"a":1}`),
		traceParent: "00-abc-def-01", metadata: map[string]string{"cloudevent.type": "custom", "cloudevent.id": "id-1"}, expires: time.Unix(2000000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ce)
	for _, want := range []string{`"data":{"a":1}`, `"type":"custom"`, `"id":"id-1"`, `"source":"app"`, `"traceparent":"00-abc-def-01"`, `"topic":"t"`, `"pubsubname":"ps"`, `"specversion":"1.0"`, `"expiration":"2033-05-18T03:33:20Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("envelope %s lacks %s", b, want)
		}
	}
	ce, _ = newEnvelope(eventInput{contentType: "application/octet-stream", data: []byte{0, 1, 2}})
	if ce["data_base64"] != "AAEC" {
		t.Errorf("binary data: %v", ce)
	}
	ce, _ = newEnvelope(eventInput{data: []byte("hi")})
	if ce["data"] != "hi" || ce["datacontenttype"] != "text/plain" {
		t.Errorf("text data: %v", ce)
	}
	ce, err = newEnvelope(eventInput{topic: "t", contentType: CloudEventContentType, data: []byte(`{"id":"x","type":"y","data":{"k":1}}`)})
	if err != nil || ce["id"] != "x" || ce["type"] != "y" || ce["topic"] != "t" || ce["specversion"] != "1.0" {
		t.Errorf("a CloudEvent passed through: %v %v", ce, err)
	}
	if _, err := newEnvelope(eventInput{contentType: CloudEventContentType, data: []byte(`[1]`)}); err == nil {
		t.Error("a CloudEvent that is not an object was accepted")
	}
	if !eventExpired(map[string]any{"expiration": "2001-01-01T00:00:00Z"}) || eventExpired(map[string]any{}) {
		t.Error("eventExpired")
	}
}

func TestScopes(t *testing.T) {
	c, _, err := NewComponent(map[string]string{
		"publishingScopes":   "app1=a,b;app2=",
		"subscriptionScopes": "app1=a",
		"allowedTopics":      "a,b,c",
		"protectedTopics":    "c",
	}, func(map[string]string) (Broker, []string, error) { return nil, nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		app, topic string
		pub, sub   bool
	}{
		{"app1", "a", true, true}, {"app1", "b", true, false}, {"app1", "c", false, false},
		{"app2", "a", false, true}, // app2 may publish nothing; it has no subscription scope
		{"app3", "b", true, true}, {"app3", "c", false, false}, {"app3", "d", false, false},
	} {
		if got := c.CanPublish(x.app, x.topic); got != x.pub {
			t.Errorf("CanPublish(%s, %s) = %v", x.app, x.topic, got)
		}
		if got := c.CanSubscribe(x.app, x.topic); got != x.sub {
			t.Errorf("CanSubscribe(%s, %s) = %v", x.app, x.topic, got)
		}
	}
	if _, _, err := NewComponent(map[string]string{"publishingScopes": "=a"}, func(map[string]string) (Broker, []string, error) { return nil, nil, nil }); err == nil {
		t.Error("a scope without an app was accepted")
	}
}

func FuzzParseProgrammatic(f *testing.F) {
	f.Add([]byte(`[{"pubsubname":"p","topic":"t","routes":{"rules":[{"match":"event.type == 'x'","path":"/x"}],"default":"/d"}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		subs, err := ParseProgrammatic(b)
		if err != nil {
			return
		}
		for _, s := range subs {
			_ = s.path(map[string]any{"type": "x"})
		}
	})
}

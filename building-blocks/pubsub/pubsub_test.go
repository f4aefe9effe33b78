package pubsub

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

func TestDeclarativeSubscriptions(t *testing.T) {
	v2 := `{"apiVersion":"dapr.io/v2alpha1","kind":"Subscription","spec":{"pubsubname":"ps","topic":"t","routes":{"rules":[{"match":"event.type == \"a\"","path":"/a"},{"match":"event.data.n > 2","path":"/big"}],"default":"/rest"},"deadLetterTopic":"dead"}}`
	s, err := ParseDeclarative([]byte(v2), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		event string
		want  string
	}{
		{`{"type":"a"}`, "/a"},
		{`{"type":"b","data":{"n":3}}`, "/big"},
		{`{"type":"b","data":{"n":2.5}}`, "/big"},
		{`{"type":"b","data":{"n":1}}`, "/rest"},
		{`{"type":"b"}`, "/rest"}, // a rule that fails to evaluate does not match
	} {
		ce, err := parseCloudEvent([]byte(c.event))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.path(ce); got != c.want {
			t.Errorf("%s routed to %q, want %q", c.event, got, c.want)
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
	envelope := func(in eventInput) (*cloudEvent, error) {
		t.Helper()
		b, err := newEnvelope(in)
		if err != nil {
			return nil, err
		}
		var anyValue map[string]any
		if err := json.Unmarshal(b, &anyValue); err != nil {
			t.Fatalf("the envelope is not JSON: %s: %v", b, err)
		}
		return parseCloudEvent(b)
	}
	ce, err := envelope(eventInput{source: "app", topic: "t", pubsub: "ps", contentType: "application/json", data: []byte("{\"a\": 1,\n \"s\": \"x\\ny\"}\n"),
		traceParent: "00-abc-def-01", metadata: map[string]string{"cloudevent.type": "custom", "cloudevent.id": "id-1"}, expires: time.Unix(2000000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		A int
		S string
	}
	if err := json.Unmarshal([]byte(ce.fields["data"]), &data); err != nil || data.A != 1 || data.S != "x\ny" {
		t.Errorf("JSON data %s: %+v %v", ce.fields["data"], data, err)
	}
	for _, want := range []string{`"type":"custom"`, `"id":"id-1"`, `"source":"app"`, `"traceparent":"00-abc-def-01"`, `"topic":"t"`, `"pubsubname":"ps"`, `"specversion":"1.0"`, `"expiration":"2033-05-18T03:33:20Z"`} {
		if !strings.Contains(string(ce.raw), want) {
			t.Errorf("envelope %s lacks %s", ce.raw, want)
		}
	}
	ce, _ = envelope(eventInput{contentType: "application/octet-stream", data: []byte{0, 1, 2}})
	if ce.str("data_base64") != "AAEC" {
		t.Errorf("binary data: %s", ce.raw)
	}
	ce, _ = envelope(eventInput{data: []byte("hi \"there\"\t\x01\xff\u2028")})
	if ce.str("data") != "hi \"there\"\t\x01\ufffd\u2028" || ce.str("datacontenttype") != "text/plain" {
		t.Errorf("text data: %s %q", ce.raw, ce.str("data"))
	}
	ce, _ = envelope(eventInput{contentType: "application/json", data: []byte(`{"a":1} trailing`)})
	if ce.str("data") != `{"a":1} trailing` {
		t.Errorf("a JSON content type whose body is not JSON is sent as text: %s", ce.raw)
	}
	ce, err = envelope(eventInput{topic: "t", contentType: CloudEventContentType, data: []byte(`{"id":"x","type":"y","data":{"k":1},"n":1.50}`)})
	if err != nil || ce.str("id") != "x" || ce.str("type") != "y" || ce.str("topic") != "t" || ce.str("specversion") != "1.0" || ce.fields["n"] != "1.50" {
		t.Errorf("a CloudEvent passed through: %s %v", ce.raw, err)
	}
	if _, err := newEnvelope(eventInput{contentType: CloudEventContentType, data: []byte(`[1]`)}); err == nil {
		t.Error("a CloudEvent that is not an object was accepted")
	}
	expired, _ := parseCloudEvent([]byte(`{"expiration":"2001-01-01T00:00:00Z"}`))
	fresh, _ := parseCloudEvent([]byte(`{}`))
	if !eventExpired(expired) || eventExpired(fresh) {
		t.Error("eventExpired")
	}
}

// TestDeepJSON: JSON nested past encoding/json's limit is refused fast,
// not validated by recursion (a few MiB of "[" would otherwise take a
// stack of hundreds of MiB); a raw subscription's payload still arrives.
func TestDeepJSON(t *testing.T) {
	deep := []byte(strings.Repeat("[", 4<<20))
	if _, err := parseCloudEvent(deep); err == nil {
		t.Error("4 MiB of [ read as a CloudEvent")
	}
	ok := []byte(strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth))
	if !validJSON(ok) || validJSON(append([]byte("["), ok...)) {
		t.Errorf("the depth limit is not %d", maxJSONDepth)
	}
	if !validJSON([]byte(`{"s":"[[[[\\\"[[","a":[1,{"b":[]}]}`)) {
		t.Error("brackets in strings counted as nesting")
	}
	b, err := newEnvelope(eventInput{contentType: "application/json", data: deep})
	if err != nil {
		t.Fatal(err)
	}
	ce, err := parseCloudEvent(b)
	if err != nil || len(ce.str("data")) != len(deep) {
		t.Errorf("too deep a JSON payload is published as text: %v", err)
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
			_ = s.pathOf(map[string]any{"type": "x"})
		}
	})
}

// FuzzCloudEvent: any bytes a broker hands over are read without a panic,
// as a CloudEvent or an error; an event that reads goes to gRPC apps
// without one; an envelope of any payload is a JSON object; and strings
// are written as encoding/json reads them back.
func FuzzCloudEvent(f *testing.F) {
	f.Add([]byte(`{"id":"1","data":{"a":[1,2.5,"x"]},"data_base64":null,"ext":{"k":true}}`), "application/json", "text")
	f.Add([]byte(`{"data_base64":"AAEC","datacontenttype":"application/octet-stream"}`), CloudEventContentType, "\xff\u2028\"")
	f.Add([]byte(`[1]`), "application/cloudevents+json; charset=utf-8", "")
	f.Fuzz(func(t *testing.T, b []byte, contentType, s string) {
		if ce, err := parseCloudEvent(b); err == nil {
			// What goes to the app as it came must be JSON by
			// encoding/json's reading too.
			if !json.Valid(ce.raw) {
				t.Fatalf("%q read as a CloudEvent but is not JSON to encoding/json", b)
			}
			_, _ = topicEventRequest(&Subscription{Topic: "t"}, "/p", ce)
			_ = eventExpired(ce)
			_ = ce.value()
		}
		env, err := newEnvelope(eventInput{topic: "t", pubsub: "p", contentType: contentType, data: b, traceParent: s})
		if err == nil {
			var m map[string]any
			if err := json.Unmarshal(env, &m); err != nil {
				t.Fatalf("the envelope of %q (%s) is not a JSON object: %s: %v", b, contentType, env, err)
			}
		}
		var mine, theirs string
		want, _ := json.Marshal(s)
		if err := json.Unmarshal(gjson.AppendJSONString(nil, s), &mine); err != nil {
			t.Fatalf("%q written as %s: %v", s, gjson.AppendJSONString(nil, s), err)
		}
		_ = json.Unmarshal(want, &theirs)
		if mine != theirs {
			t.Fatalf("%q reads back as %q, encoding/json's as %q", s, mine, theirs)
		}
	})
}

// TestBulkBody: the bulk delivery body written by hand reads as daprd's
// shape with encoding/json, the events inside as they were stored.
func TestBulkBody(t *testing.T) {
	var entries []*batchEntry
	for i, raw := range []string{`{"id":"1","data":{"a":[1,2]}}`, `{"id":"2","data":"t\"x"}`} {
		ce, err := parseCloudEvent([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, &batchEntry{id: fmt.Sprintf("e%d", i), event: ce})
	}
	for _, meta := range []map[string]string{nil, {"b": "2", "a": "1\n"}} {
		s := &Subscription{PubsubName: "ps", Topic: "t\"opic", Metadata: meta}
		var got struct {
			Entries []struct {
				EntryID     string          `json:"entryId"`
				Event       json.RawMessage `json:"event"`
				ContentType string          `json:"contentType"`
			} `json:"entries"`
			ID         string            `json:"id"`
			Metadata   map[string]string `json:"metadata"`
			PubsubName string            `json:"pubsubname"`
			Topic      string            `json:"topic"`
			Type       string            `json:"type"`
		}
		b := bulkBody(s, entries)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if len(got.Entries) != 2 || got.ID == "" || got.PubsubName != "ps" || got.Topic != "t\"opic" || got.Type != defaultEventType || !maps.Equal(got.Metadata, meta) {
			t.Errorf("body %s", b)
		}
		for i, e := range got.Entries {
			if e.EntryID != entries[i].id || string(e.Event) != string(entries[i].event.raw) || e.ContentType != CloudEventContentType {
				t.Errorf("entry %d: %+v", i, e)
			}
		}
	}
}

// FuzzBulkEntries holds the bulk publish body's reader to encoding/json's
// reading of the same bytes into []bulkEntry: both accept or both refuse,
// and what they accept is the same.
func FuzzBulkEntries(f *testing.F) {
	f.Add([]byte(`[{"entryId":"1","event":{"a":[1,2]},"contentType":"application/json","metadata":{"k":"v"}},null]`))
	f.Add([]byte(`[{"ENTRYID":"x","entryId":null,"Event":"t","metadata":{"a":"1"},"metadata":{"b":null}}]`))
	f.Add([]byte(`[{"metadata":null,"event":null,"contentType":7}]`))
	f.Add([]byte(`{"entryId":"1"}`))
	f.Add([]byte(`null`))
	f.Add([]byte("[{\"entryId\":\"\xff\",\"metadata\":{\"\xfe\":\"\\ud800\\u00e9\"}}]"))
	f.Add([]byte(`[{"entryId":"\ud83d\ude00\udc00","event":"\u0000"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, checked, err := decodeBulkEntries(b)
		var want []bulkEntry
		wantErr := json.Unmarshal(b, &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: read with error %v, encoding/json's %v", b, err, wantErr)
		}
		if err != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d entries, encoding/json %d", b, len(got), len(want))
		}
		for i := range got {
			g, w := got[i], want[i]
			if checked && len(g.Event) > 0 && (!validJSON(g.Event) || !utf8.Valid(g.Event)) {
				t.Fatalf("%q: entry %d's event %q passed as checked but is not valid JSON in UTF-8", b, i, g.Event)
			}
			if g.EntryID != w.EntryID || g.ContentType != w.ContentType || string(g.Event) != string(w.Event) ||
				(g.Metadata == nil) != (w.Metadata == nil) || !maps.Equal(g.Metadata, w.Metadata) {
				t.Fatalf("%q: entry %d read as %+v, encoding/json %+v", b, i, g, w)
			}
		}
	})
}

// TestEventOf: a stored CloudEvent is read as it is; a raw subscription's
// payload, or one that is not JSON, is wrapped in a new event whose bytes
// and members agree; JSON that is not an object, or a CloudEvent that is
// not JSON, is refused.
func TestEventOf(t *testing.T) {
	sub := &Subscription{PubsubName: "ps", Topic: "t\"1"}
	ce, err := eventOf(&Message{Data: []byte(`{"id":"x","data":{"n":1}}`)}, sub)
	if err != nil || ce.str("id") != "x" || string(ce.raw) != `{"id":"x","data":{"n":1}}` {
		t.Errorf("a stored event: %v %v", ce, err)
	}
	raw := &Subscription{PubsubName: "ps", Topic: "t\"1", Metadata: map[string]string{"rawPayload": "true"}}
	for _, c := range []struct {
		s    *Subscription
		data string
	}{{raw, `{"id":"x"}`}, {sub, "not json \xff"}} {
		ce, err := eventOf(&Message{Data: []byte(c.data)}, c.s)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		if err := json.Unmarshal(ce.raw, &got); err != nil {
			t.Fatalf("%s: %v", ce.raw, err)
		}
		data, _ := base64.StdEncoding.DecodeString(got["data_base64"])
		if string(data) != c.data || got["topic"] != sub.Topic || got["pubsubname"] != "ps" || got["id"] == "" || got["id"] != ce.str("id") || ce.str("topic") != sub.Topic {
			t.Errorf("%q wrapped as %s (members %v)", c.data, ce.raw, ce.fields)
		}
	}
	if _, err := eventOf(&Message{Data: []byte(`[1]`)}, sub); err == nil {
		t.Error("a JSON array was read as an event")
	}
	if _, err := eventOf(&Message{Data: []byte(`{`), ContentType: CloudEventContentType}, sub); err == nil {
		t.Error("a CloudEvent that is not JSON was read as an event")
	}
}

// FuzzMediaType holds mediaType's shortcut for content types without
// parameters to what mime.ParseMediaType (with the same fallback) gives.
func FuzzMediaType(f *testing.F) {
	for _, s := range []string{"", "application/json", " Application/JSON ", "text/plain; charset=utf-8",
		"foo bar", "application/cloudevents+json", "a/b;", "\t", "x/y\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		want, _, err := mime.ParseMediaType(ct)
		if err != nil {
			want = strings.ToLower(strings.TrimSpace(ct))
		}
		if got := mediaType(ct); got != want {
			t.Fatalf("mediaType(%q) = %q, want %q", ct, got, want)
		}
	})
}

// TestNewID checks that event IDs are random UUIDs of version 4 in the
// canonical form, as daprd's are.
func TestNewID(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newID()
		if !uuid.MatchString(id) {
			t.Fatalf("newID() = %q, not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("newID() gave %q twice", id)
		}
		seen[id] = true
	}
}

// TestValidJSONDepth: the depth limit still applies past the length under
// which validJSON skips counting.
func TestValidJSONDepth(t *testing.T) {
	deep := strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1)
	if validJSON([]byte(deep)) {
		t.Fatalf("arrays nested %d deep passed as valid; the limit is %d", maxJSONDepth+1, maxJSONDepth)
	}
	ok := strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth)
	if !validJSON([]byte(ok)) {
		t.Fatalf("arrays nested %d deep refused; the limit is %d", maxJSONDepth, maxJSONDepth)
	}
	if !validJSON([]byte(`{"a":[1,{"b":"x"}]}`)) || validJSON([]byte(`{"a":`)) {
		t.Fatal("short documents judged wrongly")
	}
}

// TestEnvelopeSize holds newEnvelope to the room it reserves: the envelope
// of a publish with long names, trace context, an expiry and every override
// fits without growing its buffer.
func TestEnvelopeSize(t *testing.T) {
	long := strings.Repeat("x", 200)
	data := []byte(`{"id":"m1","payload":"` + strings.Repeat("p", 1000) + `"}`)
	for _, in := range []eventInput{
		{source: "publisher-" + long, topic: "topic-" + long, pubsub: "pubsub-" + long, contentType: "application/json", data: data,
			traceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", traceState: "congo=t61rcWkgMzE," + long, expires: time.Now()},
		{topic: "t", pubsub: "p", contentType: "text/plain;charset=utf-8", data: data, metadata: map[string]string{
			"cloudevent.id": long, "cloudevent.source": long, "cloudevent.type": long, "cloudevent.subject": long}},
		{topic: "t", pubsub: "p", contentType: "application/octet-stream", data: data},
		{topic: "t", pubsub: "p", data: data},
	} {
		b, err := newEnvelope(in)
		if err != nil {
			t.Fatal(err)
		}
		ct := in.contentType
		if ct == "" {
			ct = defaultDataContentType
		}
		if n := envelopeSize(in, ct); len(b) > n {
			t.Errorf("%q: an envelope of %d bytes, %d reserved", in.contentType, len(b), n)
		}
	}
}

func TestReadBody(t *testing.T) {
	body := strings.Repeat("b", 3000)
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if got, err := readBody(r); err != nil || string(got) != body {
		t.Errorf("with a Content-Length: %d bytes, %v", len(got), err)
	}
	r = httptest.NewRequest(http.MethodPost, "/", io.MultiReader(strings.NewReader(body)))
	r.ContentLength = -1
	if got, err := readBody(r); err != nil || string(got) != body {
		t.Errorf("without a Content-Length: %d bytes, %v", len(got), err)
	}
	// The sidecar's limit still holds with the buffer sized up front.
	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 1000)
	var tooLarge *http.MaxBytesError
	if _, err := readBody(r); !errors.As(err, &tooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	// A body that ends before its Content-Length is an error.
	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.ContentLength = 4000
	if _, err := readBody(r); err == nil {
		t.Error("a short body was taken")
	}
}

// TestViewed: a value gjson read from jsonView(b) is taken from b in place,
// with no room to append over what follows it; a string from elsewhere is
// copied.
func TestViewed(t *testing.T) {
	b := []byte(`[{"event":{"a":1}},{"event":"x"}]`)
	ev := gjson.Parse(jsonView(b)).Get("0.event").Raw
	got := viewed(b, ev)
	if string(got) != `{"a":1}` || cap(got) != len(got) {
		t.Fatalf("viewed = %q (cap %d)", got, cap(got))
	}
	got[2] = 'A'
	if !strings.Contains(string(b), `{"A":1}`) {
		t.Fatalf("the view is not b's memory: b = %s", b)
	}
	_ = append(got, '!')
	if b[len(`[{"event":{"A":1}`)] != '}' {
		t.Fatalf("an append to the view wrote into b: %s", b)
	}
	other := `{"a":1}`
	if got := viewed(b, other); string(got) != other {
		t.Fatalf("a string not from b: %q", got)
	}
	if got := viewed(b, ""); got != nil {
		t.Fatalf("empty: %q", got)
	}
}

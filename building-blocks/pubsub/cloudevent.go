package pubsub

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/tidwall/gjson"
)

// CloudEvents 1.0 as Dapr builds them.
const (
	CloudEventContentType  = "application/cloudevents+json"
	defaultEventType       = "com.dapr.event.sent"
	defaultDataContentType = "text/plain"
	specVersion            = "1.0"
)

// eventInput is what a publish gives to the envelope.
type eventInput struct {
	source, topic, pubsub   string
	contentType             string
	data                    []byte
	checkedJSON             bool // see publishRequest
	traceParent, traceState string
	metadata                map[string]string
	// expires, when not zero, is written as the event's expiration.
	expires time.Time
}

// newEnvelope builds the CloudEvent of a publish, as daprd does, and
// returns it as JSON: a body that is already a CloudEvent (content type
// application/cloudevents+json) keeps its members, with the topic, pub/sub
// and trace set; otherwise a new event wraps the body (JSON as data, text
// as a string, anything else as data_base64). metadata cloudevent.id,
// .source, .type, .subject, .traceparent (or .traceid) and .tracestate
// override the envelope. A JSON payload is copied in as it is, not
// decoded and encoded again.
func newEnvelope(in eventInput) ([]byte, error) {
	override := func(name string) string {
		for k, v := range in.metadata {
			if strings.EqualFold(k, "cloudevent."+name) {
				return v
			}
		}
		return ""
	}
	if tp := override("traceparent"); tp != "" {
		in.traceParent = tp
	} else if tid := override("traceid"); tid != "" {
		in.traceParent = tid
	}
	if ts := override("tracestate"); ts != "" {
		in.traceState = ts
	}
	if isCloudEvent(in.contentType) {
		ce, err := parseCloudEvent(in.data)
		if err != nil {
			return nil, fmt.Errorf("the body is not a CloudEvent in JSON: %w", err)
		}
		f := ce.fields
		for field, def := range map[string]string{"source": "Dapr", "type": defaultEventType, "specversion": specVersion} {
			if _, ok := f[field]; !ok {
				f[field] = quoted(def)
			}
		}
		if _, ok := f["id"]; !ok {
			f["id"] = quoted(newID())
		}
		f["topic"] = quoted(in.topic)
		f["pubsubname"] = quoted(in.pubsub)
		f["traceid"] = quoted(in.traceParent)
		f["traceparent"] = quoted(in.traceParent)
		f["tracestate"] = quoted(in.traceState)
		if !in.expires.IsZero() {
			f["expiration"] = quoted(in.expires.UTC().Format(time.RFC3339))
		}
		return encodeMembers(f), nil
	}
	ct := in.contentType
	if ct == "" {
		ct = defaultDataContentType
	}
	o := jsonObject{buf: make([]byte, 0, envelopeSize(in, ct))}
	o.str("id", firstNonEmpty(override("id"), newID()))
	o.str("specversion", specVersion)
	o.str("datacontenttype", ct)
	o.str("source", firstNonEmpty(override("source"), in.source, "Dapr"))
	o.str("type", firstNonEmpty(override("type"), defaultEventType))
	o.str("time", time.Now().UTC().Format(time.RFC3339))
	switch {
	case isJSON(ct):
		o.key("data")
		if in.checkedJSON {
			o.buf = append(o.buf, bytes.TrimSpace(in.data)...)
		} else if data, ok := appendJSONValue(o.buf, in.data); ok {
			o.buf = data
		} else {
			o.buf = gjson.AppendJSONString(o.buf, string(in.data))
		}
	case isBinary(ct):
		o.str("data_base64", base64.StdEncoding.EncodeToString(in.data))
	default:
		o.str("data", string(in.data))
	}
	if s := override("subject"); s != "" {
		o.str("subject", s)
	}
	o.str("topic", in.topic)
	o.str("pubsubname", in.pubsub)
	o.str("traceid", in.traceParent)
	o.str("traceparent", in.traceParent)
	o.str("tracestate", in.traceState)
	if !in.expires.IsZero() {
		o.str("expiration", in.expires.UTC().Format(time.RFC3339))
	}
	return o.bytes(), nil
}

// envelopeSize is the room newEnvelope reserves for the event that wraps
// in, with data content type ct: enough for every member, so the buffer is
// not grown and copied as the members go in (a grown buffer was a tenth of
// a bulk publisher's CPU in a profile). The names and fixed values take
// about 260 bytes, a generated ID 36 and the time 20; only strings that
// need escaping may outgrow it.
func envelopeSize(in eventInput, ct string) int {
	n := len(in.data) + len(in.source) + len(in.topic) + len(in.pubsub) + len(ct) +
		len(in.traceParent)*2 + len(in.traceState) + 360
	for _, v := range in.metadata {
		n += len(v)
	}
	if isBinary(ct) {
		n += base64.StdEncoding.EncodedLen(len(in.data))
	}
	return n
}

// appendJSONValue appends data, one JSON value in valid UTF-8, to buf as it
// is (without the white space around it); ok is false (and buf unchanged)
// when data is anything else.
func appendJSONValue(buf, data []byte) (out []byte, ok bool) {
	if !validJSON(data) || !utf8.Valid(data) {
		return buf, false
	}
	return append(buf, bytes.TrimSpace(data)...), true
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func newID() string { return uuid.NewString() }

func mediaType(ct string) string {
	if !strings.Contains(ct, ";") {
		// What mime.ParseMediaType gives when there are no parameters,
		// valid or not, without its allocations (most content types).
		return strings.ToLower(strings.TrimSpace(ct))
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(ct))
	}
	return mt
}

func isCloudEvent(ct string) bool { return mediaType(ct) == CloudEventContentType }

func isJSON(ct string) bool {
	mt := mediaType(ct)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// isBinary is Dapr's test for content that goes in data_base64.
func isBinary(ct string) bool {
	mt := mediaType(ct)
	switch {
	case strings.HasPrefix(mt, "text/"), isJSON(mt), strings.HasSuffix(mt, "+xml"):
		return false
	case mt == "application/xml", mt == "application/x-www-form-urlencoded":
		return false
	}
	return strings.HasPrefix(mt, "application/") || strings.HasPrefix(mt, "image/") ||
		strings.HasPrefix(mt, "audio/") || strings.HasPrefix(mt, "video/")
}

// eventExpired reports whether a delivered CloudEvent's expiration passed.
func eventExpired(ce *cloudEvent) bool {
	e := ce.str("expiration")
	if e == "" {
		return false
	}
	t, err := time.Parse(time.RFC3339, e)
	return err == nil && t.Before(time.Now())
}

package pubsub

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"
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
	traceParent, traceState string
	metadata                map[string]string
	// expires, when not zero, is written as the event's expiration.
	expires time.Time
}

// newEnvelope builds the CloudEvent of a publish, as daprd does: a body
// that is already a CloudEvent (content type application/cloudevents+json)
// keeps its fields, with the topic, pub/sub and trace set; otherwise a new
// event wraps the body (JSON as data, text as a string, anything else as
// data_base64). metadata cloudevent.id, .source, .type, .subject,
// .traceparent (or .traceid) and .tracestate override the envelope.
func newEnvelope(in eventInput) (map[string]any, error) {
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
	var ce map[string]any
	if isCloudEvent(in.contentType) {
		dec := json.NewDecoder(bytes.NewReader(in.data))
		dec.UseNumber()
		if err := dec.Decode(&ce); err != nil {
			return nil, fmt.Errorf("the body is not a CloudEvent in JSON: %w", err)
		}
		if ce == nil {
			return nil, fmt.Errorf("the body is not a CloudEvent in JSON: null")
		}
		for field, def := range map[string]string{"source": "Dapr", "type": defaultEventType, "specversion": specVersion} {
			if _, ok := ce[field]; !ok {
				ce[field] = def
			}
		}
		if _, ok := ce["id"]; !ok {
			ce["id"] = newID()
		}
	} else {
		ct := in.contentType
		if ct == "" {
			ct = defaultDataContentType
		}
		ce = map[string]any{
			"id":              firstNonEmpty(override("id"), newID()),
			"specversion":     specVersion,
			"datacontenttype": ct,
			"source":          firstNonEmpty(override("source"), in.source, "Dapr"),
			"type":            firstNonEmpty(override("type"), defaultEventType),
			"time":            time.Now().UTC().Format(time.RFC3339),
		}
		switch {
		case isJSON(ct):
			var v any
			dec := json.NewDecoder(bytes.NewReader(in.data))
			dec.UseNumber()
			if dec.Decode(&v) == nil && !dec.More() {
				ce["data"] = v
			} else {
				ce["data"] = string(in.data)
			}
		case isBinary(ct):
			ce["data_base64"] = base64.StdEncoding.EncodeToString(in.data)
		default:
			ce["data"] = string(in.data)
		}
		if s := override("subject"); s != "" {
			ce["subject"] = s
		}
	}
	ce["topic"] = in.topic
	ce["pubsubname"] = in.pubsub
	ce["traceid"] = in.traceParent
	ce["traceparent"] = in.traceParent
	ce["tracestate"] = in.traceState
	if !in.expires.IsZero() {
		ce["expiration"] = in.expires.UTC().Format(time.RFC3339)
	}
	return ce, nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func mediaType(ct string) string {
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
func eventExpired(ce map[string]any) bool {
	e, ok := ce["expiration"].(string)
	if !ok || e == "" {
		return false
	}
	t, err := time.Parse(time.RFC3339, e)
	return err == nil && t.Before(time.Now())
}

package pubsub

import (
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// cloudEvent is a CloudEvent as JSON: the object's bytes, which go to the
// app as they are, and its top-level members as raw JSON, read once.
// Members become Go values only where a routing rule or a gRPC app needs
// them, so the payload is not decoded and encoded again on its way.
type cloudEvent struct {
	raw    []byte
	fields map[string]string // raw JSON of each member
}

// errNotObject is the error of JSON that is valid but not an object.
var errNotObject = errors.New("not a JSON object")

// parseCloudEvent reads b, which must be a JSON object. It validates b
// whole and reads only the top level (gjson): members' values are kept as
// their raw JSON.
func parseCloudEvent(b []byte) (*cloudEvent, error) {
	if !validJSON(b) {
		return nil, errors.New("not valid JSON")
	}
	top := gjson.Parse(jsonView(b))
	if !top.IsObject() {
		return nil, errNotObject
	}
	fields := make(map[string]string, 16)
	top.ForEach(func(k, v gjson.Result) bool {
		fields[k.Str] = v.Raw
		return true
	})
	return &cloudEvent{raw: b, fields: fields}, nil
}

// jsonView is b as a string, for gjson, without the copy gjson.ParseBytes
// makes: what gjson returns (keys, raw values) then shares b's memory, so
// b must not change while any of it is in use. The bytes read here (a
// request's body, a message from the broker) are never written again.
func jsonView(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// viewed is the part of b that s views: s is a substring of jsonView(b),
// as gjson returns them. The slice's capacity ends with s, so an append
// to it copies rather than writing over what follows in b.
func viewed(b []byte, s string) []byte {
	if len(s) == 0 {
		return nil
	}
	off := int(uintptr(unsafe.Pointer(unsafe.StringData(s))) - uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	if off < 0 || off > len(b)-len(s) {
		return []byte(s) // not from b after all: a copy
	}
	return b[off : off+len(s) : off+len(s)]
}

// maxJSONDepth bounds the nesting of JSON the sidecar reads, as
// encoding/json does: gjson's validator recurses once per level, and
// 4 MiB of "[" took it 3.9 s and 512 MiB of goroutine stack.
const maxJSONDepth = 10000

// validJSON reports whether b is one JSON value nested at most
// maxJSONDepth deep.
func validJSON(b []byte) bool {
	// Nesting needs a byte per level, so a shorter input cannot be too
	// deep (most events): no need for the pass over it.
	return (len(b) <= maxJSONDepth || jsonDepthAtMost(b, maxJSONDepth)) && gjson.ValidBytes(b)
}

// jsonDepthAtMost reports whether the arrays and objects of b (strings
// skipped) nest at most limit deep. It does not validate anything else.
func jsonDepthAtMost(b []byte, limit int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			if depth++; depth > limit {
				return false
			}
		case ']', '}':
			depth--
		}
	}
	return true
}

// has reports whether the event has the member name with a value other
// than null.
func (e *cloudEvent) has(name string) bool {
	v, ok := e.fields[name]
	return ok && v != "null"
}

// str is the member name when it is a JSON string, else "".
func (e *cloudEvent) str(name string) string {
	v := e.fields[name]
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	if strings.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1]
	}
	var s string
	if json.Unmarshal([]byte(v), &s) != nil {
		return ""
	}
	return s
}

// value is the whole event as Go values (numbers as float64, as
// encoding/json decodes them), for routing rules.
func (e *cloudEvent) value() map[string]any {
	out := make(map[string]any, len(e.fields))
	for k, v := range e.fields {
		var x any
		if json.Unmarshal([]byte(v), &x) == nil {
			out[k] = x
		}
	}
	return out
}

// jsonObject writes a JSON object member by member, appending to buf
// (which may already hold what comes before the object).
type jsonObject struct {
	buf     []byte
	members int
}

func (o *jsonObject) key(k string) {
	if o.members == 0 {
		o.buf = append(o.buf, '{')
	} else {
		o.buf = append(o.buf, ',')
	}
	o.members++
	o.buf = gjson.AppendJSONString(o.buf, k)
	o.buf = append(o.buf, ':')
}

// str writes the member k with the string v.
func (o *jsonObject) str(k, v string) {
	o.key(k)
	o.buf = gjson.AppendJSONString(o.buf, v)
}

// raw writes the member k with v, which must be valid JSON.
func (o *jsonObject) raw(k string, v []byte) {
	o.key(k)
	o.buf = append(o.buf, v...)
}

// bytes ends the object and returns buf.
func (o *jsonObject) bytes() []byte {
	if o.members == 0 {
		return append(o.buf, '{', '}')
	}
	return append(o.buf, '}')
}

// encodeMembers writes fields (raw JSON values) as one object, keys
// sorted (as encoding/json writes a map).
func encodeMembers(fields map[string]string) []byte {
	keys := make([]string, 0, len(fields))
	size := 2
	for k, v := range fields {
		keys = append(keys, k)
		size += len(k) + len(v) + 4
	}
	sort.Strings(keys)
	o := jsonObject{buf: make([]byte, 0, size)}
	for _, k := range keys {
		o.key(k)
		o.buf = append(o.buf, fields[k]...)
	}
	return o.bytes()
}

// quoted is s as a JSON string.
func quoted(s string) string { return string(gjson.AppendJSONString(nil, s)) }

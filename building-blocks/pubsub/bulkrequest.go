package pubsub

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// decodeBulkEntries reads the body of an HTTP bulk publish: a JSON array of
// entries. It reads what encoding/json reads into []bulkEntry, and fails
// where it fails (FuzzBulkEntries holds the two side by side), but in one
// validating pass and a skim: the events are kept as their raw JSON, not
// scanned again member by member. checked says that every entry's Event is
// then a JSON value in valid UTF-8, nested at most maxJSONDepth deep (the
// body passed validJSON as a whole), so it need not be validated again.
func decodeBulkEntries(body []byte) (entries []bulkEntry, checked bool, err error) {
	if !utf8.Valid(body) {
		// encoding/json reads invalid UTF-8 in strings as U+FFFD; gjson
		// keeps the bytes. Rare enough to leave to encoding/json.
		if err := json.Unmarshal(body, &entries); err != nil {
			return nil, false, err
		}
		return entries, false, nil
	}
	if !validJSON(body) {
		return nil, false, errors.New("the body is not valid JSON")
	}
	top := gjson.Parse(jsonView(body))
	switch {
	case top.Type == gjson.Null:
		return nil, true, nil
	case !top.IsArray():
		return nil, false, fmt.Errorf("the body is a JSON %s, not an array of entries", jsonKind(top))
	}
	top.ForEach(func(_, v gjson.Result) bool {
		var e bulkEntry
		switch {
		case v.Type == gjson.Null:
		case v.IsObject():
			err = readBulkEntry(body, v, &e)
		default:
			err = fmt.Errorf("entry %d is a JSON %s, not an object", len(entries), jsonKind(v))
		}
		entries = append(entries, e)
		return err == nil
	})
	if err != nil {
		return nil, false, err
	}
	return entries, true, nil
}

// readBulkEntry fills e from the object v, read from jsonView(body): the
// event stays in body. Members are matched to fields without regard to
// case, and a later member wins, as encoding/json does.
func readBulkEntry(body []byte, v gjson.Result, e *bulkEntry) error {
	var err error
	v.ForEach(func(k, m gjson.Result) bool {
		switch name := k.Str; {
		case strings.EqualFold(name, "entryId"):
			if err = readString(m, &e.EntryID); err != nil {
				err = fmt.Errorf("%s is %w", name, err)
			}
		case strings.EqualFold(name, "event"):
			e.Event = viewed(body, m.Raw)
		case strings.EqualFold(name, "contentType"):
			if err = readString(m, &e.ContentType); err != nil {
				err = fmt.Errorf("%s is %w", name, err)
			}
		case strings.EqualFold(name, "metadata"):
			switch {
			case m.Type == gjson.Null:
				e.Metadata = nil
			case !m.IsObject():
				err = fmt.Errorf("metadata is a JSON %s, not an object", jsonKind(m))
			default:
				if e.Metadata == nil {
					e.Metadata = map[string]string{}
				}
				m.ForEach(func(mk, mv gjson.Result) bool {
					var s string
					if err = readString(mv, &s); err != nil {
						err = fmt.Errorf("metadata.%s is %w", mk.Str, err)
					}
					e.Metadata[mk.Str] = s
					return err == nil
				})
			}
		}
		return err == nil
	})
	return err
}

// readString sets *dst to a JSON string; null leaves it as it is. The
// caller names the member in the error.
func readString(v gjson.Result, dst *string) error {
	switch v.Type {
	case gjson.String:
		*dst = v.Str
	case gjson.Null:
	default:
		return fmt.Errorf("a JSON %s, not a string", jsonKind(v))
	}
	return nil
}

// jsonKind names the JSON type of v.
func jsonKind(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "object"
	case v.IsArray():
		return "array"
	case v.Type == gjson.String:
		return "string"
	case v.Type == gjson.Number:
		return "number"
	case v.Type == gjson.True, v.Type == gjson.False:
		return "boolean"
	}
	return "null"
}

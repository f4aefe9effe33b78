package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ParseQuery reads a state query as Dapr's query API takes it:
//
//	{"filter": {"EQ": {"person.org": "dev"}},
//	 "sort": [{"key": "score", "order": "DESC"}],
//	 "page": {"limit": 10, "token": "..."}}
//
// A filter is one operation: EQ, NEQ, GT, GTE, LT and LTE take {key: value},
// IN takes {key: [values]}, AND and OR take a list of two or more filters.
func ParseQuery(b []byte) (Query, error) {
	var raw struct {
		Filter json.RawMessage `json:"filter"`
		Sort   []struct {
			Key   string `json:"key"`
			Order string `json:"order"`
		} `json:"sort"`
		Page struct {
			Limit int    `json:"limit"`
			Token string `json:"token"`
		} `json:"page"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Query{}, err
	}
	var q Query
	if len(raw.Filter) > 0 && !bytes.Equal(bytes.TrimSpace(raw.Filter), []byte("null")) {
		f, err := parseFilter(raw.Filter, 0)
		if err != nil {
			return Query{}, fmt.Errorf("filter: %w", err)
		}
		q.Filter = f
	}
	for i, s := range raw.Sort {
		if s.Key == "" {
			return Query{}, fmt.Errorf("sort[%d]: key is required", i)
		}
		switch strings.ToUpper(s.Order) {
		case "", "ASC":
			q.Sort = append(q.Sort, Sort{Key: s.Key})
		case "DESC":
			q.Sort = append(q.Sort, Sort{Key: s.Key, Descending: true})
		default:
			return Query{}, fmt.Errorf("sort[%d]: order %q: want ASC or DESC", i, s.Order)
		}
	}
	if raw.Page.Limit < 0 {
		return Query{}, errors.New("page.limit must not be negative")
	}
	q.Limit, q.Token = raw.Page.Limit, raw.Page.Token
	return q, nil
}

// maxFilterDepth bounds the nesting of AND and OR.
const maxFilterDepth = 32

func parseFilter(b json.RawMessage, depth int) (*Filter, error) {
	if depth > maxFilterDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxFilterDepth)
	}
	var ops map[string]json.RawMessage
	if err := json.Unmarshal(b, &ops); err != nil {
		return nil, err
	}
	if len(ops) != 1 {
		return nil, fmt.Errorf("want exactly one operation, got %d", len(ops))
	}
	for op, arg := range ops {
		switch op {
		case "AND", "OR":
			var list []json.RawMessage
			if err := json.Unmarshal(arg, &list); err != nil {
				return nil, fmt.Errorf("%s: want a list of filters: %w", op, err)
			}
			if len(list) < 2 {
				return nil, fmt.Errorf("%s: want at least two filters", op)
			}
			f := &Filter{Op: op}
			for i, sub := range list {
				child, err := parseFilter(sub, depth+1)
				if err != nil {
					return nil, fmt.Errorf("%s[%d]: %w", op, i, err)
				}
				f.Filters = append(f.Filters, child)
			}
			return f, nil
		case "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "IN":
			var kv map[string]any
			dec := json.NewDecoder(bytes.NewReader(arg))
			dec.UseNumber()
			if err := dec.Decode(&kv); err != nil {
				return nil, fmt.Errorf("%s: want {key: value}: %w", op, err)
			}
			if len(kv) != 1 {
				return nil, fmt.Errorf("%s: want exactly one key", op)
			}
			for k, v := range kv {
				if k == "" {
					return nil, fmt.Errorf("%s: the key is empty", op)
				}
				f := &Filter{Op: op, Key: k}
				if op == "IN" {
					list, ok := v.([]any)
					if !ok || len(list) == 0 {
						return nil, fmt.Errorf("IN: want a non-empty list of values for %q", k)
					}
					for _, x := range list {
						f.Values = append(f.Values, plain(x))
					}
				} else {
					if _, isList := v.([]any); isList {
						return nil, fmt.Errorf("%s: %q: want a single value", op, k)
					}
					if _, isMap := v.(map[string]any); isMap {
						return nil, fmt.Errorf("%s: %q: want a single value", op, k)
					}
					f.Value = plain(v)
				}
				return f, nil
			}
		default:
			return nil, fmt.Errorf("unknown operation %q", op)
		}
	}
	return nil, errors.New("unreachable")
}

// plain turns json.Number into float64, so backends see strings, float64s,
// bools and nil.
func plain(v any) any {
	if n, ok := v.(json.Number); ok {
		if f, err := n.Float64(); err == nil {
			return f
		}
		return n.String()
	}
	return v
}

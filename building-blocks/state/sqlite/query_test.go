package sqlite

import (
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/building-blocks/state"
)

func queryKeys(t *testing.T, s *Store, q state.Query) string {
	t.Helper()
	res, err := s.Query(t.Context(), q)
	if err != nil {
		t.Fatalf("Query(%+v): %v", q, err)
	}
	keys := make([]string, len(res.Items))
	for i, it := range res.Items {
		keys[i] = it.Key
	}
	return strings.Join(keys, ",")
}

func TestQuerySemantics(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := t.Context()
	for k, v := range map[string]string{
		"n1":      `{"v": 1, "tag": "a"}`,
		"n2":      `{"v": 2.5, "tag": "b"}`,
		"s1":      `{"v": "1", "tag": "c"}`,
		"s2":      `{"v": "abc"}`,
		"t":       `{"v": true}`,
		"f":       `{"v": false}`,
		"null":    `{"v": null}`,
		"obj":     `{"v": {"w": 1}}`,
		"missing": `{"other": 1}`,
		"odd key": `{"a.b": 1, "a": {"b": 2}, "with space": "x"}`,
		"scalar":  `7`,
		"text":    `not json`,
		"binary":  "\xff\x00\x01",
	} {
		if err := s.Set(ctx, state.SetRequest{Key: k, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, state.SetRequest{Key: "expired", Value: []byte(`{"v": 1}`), TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, found, _ := s.Get(ctx, state.GetRequest{Key: "expired"}); !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the item did not expire")
		}
		time.Sleep(10 * time.Millisecond)
	}
	tests := []struct {
		name string
		q    state.Query
		want string
	}{
		{"everything JSON, by key", state.Query{}, "f,missing,n1,n2,null,obj,odd key,s1,s2,scalar,t"},
		{"EQ number matches numbers only", state.Query{Filter: &state.Filter{Op: "EQ", Key: "v", Value: 1.0}}, "n1"},
		{"EQ string matches strings only", state.Query{Filter: &state.Filter{Op: "EQ", Key: "v", Value: "1"}}, "s1"},
		{"EQ true", state.Query{Filter: &state.Filter{Op: "EQ", Key: "v", Value: true}}, "t"},
		{"EQ false", state.Query{Filter: &state.Filter{Op: "EQ", Key: "v", Value: false}}, "f"},
		{"EQ null", state.Query{Filter: &state.Filter{Op: "EQ", Key: "v", Value: nil}}, "null"},
		{"NEQ skips missing keys", state.Query{Filter: &state.Filter{Op: "NEQ", Key: "v", Value: 1.0}}, "f,n2,null,obj,s1,s2,t"},
		{"GT number", state.Query{Filter: &state.Filter{Op: "GT", Key: "v", Value: 1.0}}, "n2"},
		{"GTE number", state.Query{Filter: &state.Filter{Op: "GTE", Key: "v", Value: 1}}, "n1,n2"},
		{"LT string", state.Query{Filter: &state.Filter{Op: "LT", Key: "v", Value: "ab"}}, "s1"},
		{"LTE string", state.Query{Filter: &state.Filter{Op: "LTE", Key: "v", Value: "abc"}}, "s1,s2"},
		{"nested", state.Query{Filter: &state.Filter{Op: "EQ", Key: "v.w", Value: 1.0}}, "obj"},
		{"dots are paths", state.Query{Filter: &state.Filter{Op: "EQ", Key: "a.b", Value: 2.0}}, "odd key"},
		{"spaces in keys", state.Query{Filter: &state.Filter{Op: "EQ", Key: "with space", Value: "x"}}, "odd key"},
		{"IN mixed", state.Query{Filter: &state.Filter{Op: "IN", Key: "v", Values: []any{"abc", 2.5, true}}}, "n2,s2,t"},
		{"AND", state.Query{Filter: &state.Filter{Op: "AND", Filters: []*state.Filter{
			{Op: "GTE", Key: "v", Value: 1.0}, {Op: "EQ", Key: "tag", Value: "b"},
		}}}, "n2"},
		{"OR, sorted descending", state.Query{Filter: &state.Filter{Op: "OR", Filters: []*state.Filter{
			{Op: "EQ", Key: "tag", Value: "a"}, {Op: "EQ", Key: "tag", Value: "c"},
		}}, Sort: []state.Sort{{Key: "tag", Descending: true}}}, "s1,n1"},
		{"two sort keys", state.Query{Filter: &state.Filter{Op: "IN", Key: "tag", Values: []any{"a", "b", "c"}},
			Sort: []state.Sort{{Key: "v"}, {Key: "tag", Descending: true}}}, "n1,n2,s1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := queryKeys(t, s, tt.q); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	res, err := s.Query(ctx, state.Query{Filter: &state.Filter{Op: "EQ", Key: "v", Value: "abc"}})
	if err != nil || len(res.Items) != 1 || string(res.Items[0].Value) != `{"v": "abc"}` || !validETag(res.Items[0].ETag) || res.Token != "" {
		t.Errorf("an item as a query returns it: %+v, %v", res, err)
	}
	// Paging: a last page that is exactly full has no token.
	res, err = s.Query(ctx, state.Query{Filter: &state.Filter{Op: "IN", Key: "tag", Values: []any{"a", "b", "c"}}, Limit: 2})
	if err != nil || len(res.Items) != 2 || res.Token == "" {
		t.Fatalf("first page: %+v, %v", res, err)
	}
	res, err = s.Query(ctx, state.Query{Filter: &state.Filter{Op: "IN", Key: "tag", Values: []any{"a", "b", "c"}}, Limit: 1, Token: res.Token})
	if err != nil || len(res.Items) != 1 || res.Items[0].Key != "s1" || res.Token != "" {
		t.Errorf("last page: %+v, %v", res, err)
	}

	for _, bad := range []state.Query{
		{Token: "x"},
		{Token: "-1"},
		{Limit: -1},
		{Filter: &state.Filter{Op: "LIKE", Key: "v", Value: "a"}},
		{Filter: &state.Filter{Op: "EQ", Key: "", Value: "a"}},
		{Filter: &state.Filter{Op: "EQ", Key: "a..b", Value: "a"}},
		{Filter: &state.Filter{Op: "EQ", Key: `a"b`, Value: "a"}},
		{Filter: &state.Filter{Op: "GT", Key: "v", Value: true}},
		{Filter: &state.Filter{Op: "EQ", Key: "v", Value: []any{1}}},
		{Filter: &state.Filter{Op: "IN", Key: "v"}},
		{Filter: &state.Filter{Op: "AND"}},
		{Filter: &state.Filter{Op: "OR", Filters: []*state.Filter{nil}}},
		{Sort: []state.Sort{{Key: ""}}},
	} {
		if _, err := s.Query(ctx, bad); err == nil {
			t.Errorf("Query(%+v) succeeded", bad)
		}
	}
}

package postgresql

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/outrigger/outrigger/building-blocks/state"
)

// maxJSONDepth is the deepest nesting of a value kept in value_json:
// PostgreSQL parses JSON recursively, within its max_stack_depth.
const maxJSONDepth = 256

// queryableJSON is what value_json holds for a value: the JSON text
// PostgreSQL takes as jsonb, or nil when the value is not JSON or is JSON
// PostgreSQL cannot hold (a \u0000 in a string, invalid UTF-8, nesting
// deeper than maxJSONDepth). An unpaired surrogate escape reads as U+FFFD.
func queryableJSON(b []byte) *string {
	if !json.Valid(b) || !utf8.Valid(b) || jsonDepth(b) > maxJSONDepth {
		return nil
	}
	if !bytes.Contains(b, []byte(`\u`)) {
		s := string(b)
		return &s
	}
	// Escapes PostgreSQL refuses are found by decoding; the value is then
	// re-encoded, with unpaired surrogates as U+FFFD and numbers as
	// written.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || hasNUL(v) {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil
	}
	s := strings.TrimSuffix(buf.String(), "\n")
	return &s
}

// jsonDepth is the deepest nesting of objects and arrays in valid JSON b.
func jsonDepth(b []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// hasNUL reports whether a decoded JSON value holds a NUL character in a
// string or an object key.
func hasNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.IndexByte(v, 0) >= 0
	case []any:
		for _, e := range v {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.IndexByte(k, 0) >= 0 || hasNUL(e) {
				return true
			}
		}
	}
	return false
}

// Query implements state.Querier. Only live items whose value is JSON are
// considered. A filter compares the value at its key path with the
// filter's value of the same JSON type: strings as text (in the database's
// collation), numbers numerically, booleans as booleans; an item whose
// value there is missing or of another type matches no comparison, NEQ
// included. Null matches EQ null, and NEQ null matches any value that is
// present and not null; objects and arrays compare for equality only.
// Sorting follows PostgreSQL's jsonb order: within a type as above, across
// types null < string < number < boolean < array < object; items without
// the key come last, and ties are broken by key. The token is the offset
// of the next page.
func (s *Store) Query(ctx context.Context, q state.Query) (state.QueryResult, error) {
	var b sqlBuilder
	where := "value_json IS NOT NULL AND " + notExpired
	if q.KeyPrefix != "" {
		where += " AND starts_with(key, " + b.arg(q.KeyPrefix) + ")"
	}
	if q.Filter != nil {
		cond, err := b.filter(q.Filter, 0)
		if err != nil {
			return state.QueryResult{}, fmt.Errorf("state/postgresql: query filter: %w", err)
		}
		where += " AND (" + cond + ")"
	}
	var order []string
	for i, srt := range q.Sort {
		p, err := b.path(srt.Key)
		if err != nil {
			return state.QueryResult{}, fmt.Errorf("state/postgresql: query sort[%d]: %w", i, err)
		}
		dir := "ASC"
		if srt.Descending {
			dir = "DESC"
		}
		order = append(order, "value_json #> "+p+" "+dir+" NULLS LAST")
	}
	order = append(order, `key COLLATE "C" ASC`)
	if q.Limit < 0 {
		return state.QueryResult{}, fmt.Errorf("state/postgresql: query limit %d: must not be negative", q.Limit)
	}
	offset, err := parseOffset(q.Token)
	if err != nil {
		return state.QueryResult{}, err
	}
	sql := "SELECT key, value, etag::text FROM " + s.table + " WHERE " + where + " ORDER BY " + strings.Join(order, ", ")
	if q.Limit > 0 {
		// One more than the page, to know whether another follows.
		sql += " LIMIT " + b.arg(int64(q.Limit)+1)
	}
	sql += " OFFSET " + b.arg(offset)

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, sql, b.args...)
	if err != nil {
		return state.QueryResult{}, fmt.Errorf("state/postgresql: query: %w", err)
	}
	defer rows.Close()
	var res state.QueryResult
	for rows.Next() {
		var it state.QueryItem
		if err := rows.Scan(&it.Key, &it.Value, &it.ETag); err != nil {
			return state.QueryResult{}, fmt.Errorf("state/postgresql: query: %w", err)
		}
		res.Items = append(res.Items, it)
	}
	if err := rows.Err(); err != nil {
		return state.QueryResult{}, fmt.Errorf("state/postgresql: query: %w", err)
	}
	if q.Limit > 0 && len(res.Items) > q.Limit {
		res.Items = res.Items[:q.Limit]
		res.Token = formatOffset(offset + int64(q.Limit))
	}
	return res, nil
}

// maxFilterDepth bounds the nesting of AND and OR.
const maxFilterDepth = 64

// sqlBuilder collects the bind parameters of a query as it writes the SQL.
type sqlBuilder struct {
	args []any
}

// arg adds a bind parameter and returns its placeholder.
func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

// path adds the JSON path of a dotted key ("person.org") as a text[]
// parameter and returns its placeholder, cast.
func (b *sqlBuilder) path(key string) (string, error) {
	if key == "" {
		return "", errors.New("the key is empty")
	}
	parts := strings.Split(key, ".")
	for _, p := range parts {
		if p == "" {
			return "", fmt.Errorf("key %q has an empty part", key)
		}
	}
	return b.arg(parts) + "::text[]", nil
}

var comparisons = map[string]string{"EQ": "=", "NEQ": "<>", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}

func (b *sqlBuilder) filter(f *state.Filter, depth int) (string, error) {
	if f == nil {
		return "", errors.New("a filter is nil")
	}
	if depth > maxFilterDepth {
		return "", fmt.Errorf("nested deeper than %d", maxFilterDepth)
	}
	op := strings.ToUpper(f.Op)
	switch op {
	case "AND", "OR":
		if len(f.Filters) == 0 {
			if op == "AND" {
				return "TRUE", nil
			}
			return "FALSE", nil
		}
		conds := make([]string, len(f.Filters))
		for i, sub := range f.Filters {
			c, err := b.filter(sub, depth+1)
			if err != nil {
				return "", fmt.Errorf("%s[%d]: %w", op, i, err)
			}
			conds[i] = "(" + c + ")"
		}
		return strings.Join(conds, " "+op+" "), nil
	case "EQ", "NEQ", "GT", "GTE", "LT", "LTE":
		p, err := b.path(f.Key)
		if err != nil {
			return "", fmt.Errorf("%s: %w", op, err)
		}
		c, err := b.compare(op, p, f.Value)
		if err != nil {
			return "", fmt.Errorf("%s %q: %w", op, f.Key, err)
		}
		return c, nil
	case "IN":
		if len(f.Values) == 0 {
			return "FALSE", nil
		}
		p, err := b.path(f.Key)
		if err != nil {
			return "", fmt.Errorf("IN: %w", err)
		}
		conds := make([]string, len(f.Values))
		for i, v := range f.Values {
			c, err := b.compare("EQ", p, v)
			if err != nil {
				return "", fmt.Errorf("IN %q: value %d: %w", f.Key, i, err)
			}
			conds[i] = "(" + c + ")"
		}
		return strings.Join(conds, " OR "), nil
	}
	return "", fmt.Errorf("unknown operation %q", f.Op)
}

// compare is the condition "the JSON value at path p op v".
func (b *sqlBuilder) compare(op, p string, v any) (string, error) {
	x := "(value_json #> " + p + ")"
	sqlOp := comparisons[op]
	typed := func(typ, cast, param string) string {
		return "(CASE WHEN jsonb_typeof(" + x + ") = '" + typ + "' THEN " + cast + " END) " + sqlOp + " " + param
	}
	if n, ok, err := number(v); ok {
		if err != nil {
			return "", err
		}
		return typed("number", x+"::numeric", b.arg(n)+"::numeric"), nil
	}
	switch v := v.(type) {
	case string:
		return typed("string", x+" #>> '{}'", b.arg(v)+"::text"), nil
	case bool:
		return typed("boolean", x+"::boolean", b.arg(v)+"::boolean"), nil
	case nil:
		switch op {
		case "EQ":
			return "jsonb_typeof(" + x + ") = 'null'", nil
		case "NEQ":
			return "jsonb_typeof(" + x + ") <> 'null'", nil
		}
		return "", errors.New("null compares only with EQ and NEQ")
	case map[string]any, []any:
		js, err := json.Marshal(v)
		if err != nil {
			return "", err
		}
		param := b.arg(string(js)) + "::jsonb"
		switch op {
		case "EQ":
			return x + " = " + param, nil
		case "NEQ":
			return "jsonb_typeof(" + x + ") = jsonb_typeof(" + param + ") AND " + x + " <> " + param, nil
		}
		return "", errors.New("objects and arrays compare only with EQ and NEQ")
	}
	return "", fmt.Errorf("unsupported value type %T", v)
}

// number is v as the text of a numeric parameter, when v is a number.
func number(v any) (text string, ok bool, err error) {
	var f float64
	switch v := v.(type) {
	case float64:
		f = v
	case float32:
		f = float64(v)
	case int:
		return strconv.FormatInt(int64(v), 10), true, nil
	case int8:
		return strconv.FormatInt(int64(v), 10), true, nil
	case int16:
		return strconv.FormatInt(int64(v), 10), true, nil
	case int32:
		return strconv.FormatInt(int64(v), 10), true, nil
	case int64:
		return strconv.FormatInt(v, 10), true, nil
	case uint:
		return strconv.FormatUint(uint64(v), 10), true, nil
	case uint8:
		return strconv.FormatUint(uint64(v), 10), true, nil
	case uint16:
		return strconv.FormatUint(uint64(v), 10), true, nil
	case uint32:
		return strconv.FormatUint(uint64(v), 10), true, nil
	case uint64:
		return strconv.FormatUint(v, 10), true, nil
	case json.Number:
		if s := string(v); s == "" || s[0] != '-' && (s[0] < '0' || s[0] > '9') || !json.Valid([]byte(s)) {
			return "", true, fmt.Errorf("%q is not a number", string(v))
		}
		return string(v), true, nil
	default:
		return "", false, nil
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", true, fmt.Errorf("%v is not a JSON number", f)
	}
	return strconv.FormatFloat(f, 'g', -1, 64), true, nil
}

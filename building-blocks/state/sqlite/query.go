package sqlite

import (
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

// Query implements state.Querier over the items whose value is JSON text
// (other items never match, and are not listed by a query without a
// filter). A filter key is a dotted path of object keys into the value. A
// comparison matches only a value of its own JSON type: a string compares
// with strings (byte order), a number with numbers, true, false and null
// are only equal or not; a key the value does not hold matches nothing, NEQ
// included. Results are sorted by the sort keys (SQLite's order of types:
// missing and null first, then numbers, then strings), then by key, and
// paged by offset: Token is the offset of the next page.
func (s *Store) Query(ctx context.Context, q state.Query) (state.QueryResult, error) {
	if s.isClosed() {
		return state.QueryResult{}, errClosed
	}
	if q.Limit < 0 {
		return state.QueryResult{}, errors.New("state/sqlite: query: a negative limit")
	}
	var offset int64
	if q.Token != "" {
		n, err := strconv.ParseInt(q.Token, 10, 64)
		if err != nil || n < 0 {
			return state.QueryResult{}, fmt.Errorf("state/sqlite: query: invalid token %q", q.Token)
		}
		offset = n
	}
	var b sqlBuilder
	b.sql.WriteString("SELECT key, value, etag FROM (SELECT key, value, etag," +
		" CASE WHEN json_valid(CAST(value AS TEXT)) THEN CAST(value AS TEXT) END AS doc FROM ")
	b.sql.WriteString(s.table)
	b.sql.WriteString(" WHERE expiration_time IS NULL OR expiration_time > ?) WHERE doc IS NOT NULL")
	b.args = append(b.args, s.now().UnixMilli())
	if q.KeyPrefix != "" {
		b.sql.WriteString(" AND substr(key, 1, ?) = ?")
		b.args = append(b.args, utf8.RuneCountInString(q.KeyPrefix), q.KeyPrefix)
	}
	if q.Filter != nil {
		b.sql.WriteString(" AND ")
		if err := b.filter(q.Filter); err != nil {
			return state.QueryResult{}, fmt.Errorf("state/sqlite: query: %w", err)
		}
	}
	b.sql.WriteString(" ORDER BY ")
	for _, srt := range q.Sort {
		path, err := jsonPath(srt.Key)
		if err != nil {
			return state.QueryResult{}, fmt.Errorf("state/sqlite: query: sort: %w", err)
		}
		b.sql.WriteString("json_extract(doc, ?)")
		b.args = append(b.args, path)
		if srt.Descending {
			b.sql.WriteString(" DESC")
		}
		b.sql.WriteString(", ")
	}
	b.sql.WriteString("key")
	// One row more than the page says whether there is a next one.
	limit := int64(-1)
	if q.Limit > 0 && int64(q.Limit) < math.MaxInt64 {
		limit = int64(q.Limit) + 1
	}
	b.sql.WriteString(" LIMIT ? OFFSET ?")
	b.args = append(b.args, limit, offset)

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, b.sql.String(), b.args...)
	if err != nil {
		return state.QueryResult{}, fmt.Errorf("state/sqlite: query: %w", err)
	}
	defer rows.Close()
	var res state.QueryResult
	for rows.Next() {
		var it state.QueryItem
		if err := rows.Scan(&it.Key, &it.Value, &it.ETag); err != nil {
			return state.QueryResult{}, fmt.Errorf("state/sqlite: query: %w", err)
		}
		res.Items = append(res.Items, it)
	}
	if err := rows.Err(); err != nil {
		return state.QueryResult{}, fmt.Errorf("state/sqlite: query: %w", err)
	}
	if q.Limit > 0 && len(res.Items) > q.Limit {
		res.Items = res.Items[:q.Limit]
		res.Token = strconv.FormatInt(offset+int64(q.Limit), 10)
	}
	return res, nil
}

// sqlBuilder accumulates a statement and its arguments.
type sqlBuilder struct {
	sql  strings.Builder
	args []any
}

// filter writes the condition f stands for, parenthesised.
func (b *sqlBuilder) filter(f *state.Filter) error {
	if f == nil {
		return errors.New("a nil filter")
	}
	switch op := strings.ToUpper(f.Op); op {
	case "AND", "OR":
		if len(f.Filters) == 0 {
			return fmt.Errorf("%s without filters", op)
		}
		b.sql.WriteString("(")
		for i, sub := range f.Filters {
			if i > 0 {
				b.sql.WriteString(" " + op + " ")
			}
			if err := b.filter(sub); err != nil {
				return fmt.Errorf("%s[%d]: %w", op, i, err)
			}
		}
		b.sql.WriteString(")")
		return nil
	case "EQ", "NEQ", "GT", "GTE", "LT", "LTE":
		path, err := jsonPath(f.Key)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		return b.compare(op, path, f.Value)
	case "IN":
		path, err := jsonPath(f.Key)
		if err != nil {
			return fmt.Errorf("IN: %w", err)
		}
		if len(f.Values) == 0 {
			return fmt.Errorf("IN %q: no values", f.Key)
		}
		b.sql.WriteString("(")
		for i, v := range f.Values {
			if i > 0 {
				b.sql.WriteString(" OR ")
			}
			if err := b.compare("EQ", path, v); err != nil {
				return fmt.Errorf("IN: %w", err)
			}
		}
		b.sql.WriteString(")")
		return nil
	default:
		return fmt.Errorf("unknown filter operation %q", f.Op)
	}
}

// compare writes the comparison of the value at path with v. Each test
// first checks the JSON type at path (json_type is NULL where the value has
// no such key), so that values of different types never compare.
func (b *sqlBuilder) compare(op, path string, v any) error {
	if op == "NEQ" {
		b.sql.WriteString("(json_type(doc, ?) IS NOT NULL AND NOT ")
		b.args = append(b.args, path)
		if err := b.compare("EQ", path, v); err != nil {
			return err
		}
		b.sql.WriteString(")")
		return nil
	}
	sqlOp := map[string]string{"EQ": "=", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}[op]
	kind, arg, err := sqlValue(v)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch kind {
	case "text":
		b.sql.WriteString("(json_type(doc, ?) = 'text' AND json_extract(doc, ?) " + sqlOp + " ?)")
		b.args = append(b.args, path, path, arg)
	case "number":
		b.sql.WriteString("(json_type(doc, ?) IN ('integer', 'real') AND json_extract(doc, ?) " + sqlOp + " ?)")
		b.args = append(b.args, path, path, arg)
	default: // true, false, null
		if op != "EQ" {
			return fmt.Errorf("%s: %s compares only with EQ, NEQ and IN", op, kind)
		}
		b.sql.WriteString("(json_type(doc, ?) = '" + kind + "')")
		b.args = append(b.args, path)
	}
	return nil
}

// sqlValue classifies a filter value by JSON type: "text" and "number"
// come with the SQL argument to compare with, "true", "false" and "null"
// need none.
func sqlValue(v any) (kind string, arg any, err error) {
	switch x := v.(type) {
	case nil:
		return "null", nil, nil
	case bool:
		if x {
			return "true", nil, nil
		}
		return "false", nil, nil
	case string:
		return "text", x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", nil, fmt.Errorf("%v is not a JSON number", x)
		}
		return "number", x, nil
	case float32:
		return sqlValue(float64(x))
	case int:
		return "number", int64(x), nil
	case int8:
		return "number", int64(x), nil
	case int16:
		return "number", int64(x), nil
	case int32:
		return "number", int64(x), nil
	case int64:
		return "number", x, nil
	case uint:
		return sqlValue(uint64(x))
	case uint8:
		return "number", int64(x), nil
	case uint16:
		return "number", int64(x), nil
	case uint32:
		return "number", int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return "number", float64(x), nil
		}
		return "number", int64(x), nil
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return "number", n, nil
		}
		f, err := x.Float64()
		if err != nil {
			return "", nil, fmt.Errorf("%q is not a number", x.String())
		}
		return sqlValue(f)
	default:
		return "", nil, fmt.Errorf("a value of type %T: want a string, number, bool or null", v)
	}
}

// jsonPath is the SQLite JSON path of a dotted key: "person.org" is
// $."person"."org", each part an object key taken literally.
func jsonPath(key string) (string, error) {
	if key == "" {
		return "", errors.New("an empty key")
	}
	var p strings.Builder
	p.WriteString("$")
	for part := range strings.SplitSeq(key, ".") {
		if part == "" {
			return "", fmt.Errorf("key %q: an empty part", key)
		}
		if strings.Contains(part, `"`) {
			return "", fmt.Errorf("key %q: a part holding a double quote", key)
		}
		p.WriteString(`."`)
		p.WriteString(part)
		p.WriteString(`"`)
	}
	return p.String(), nil
}

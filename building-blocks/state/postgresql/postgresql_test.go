package postgresql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/statetest"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

// testConnString is the server the tests use: $OUTRIGGER_TEST_POSTGRES, or
// the local one. The tests fail, not skip, when it cannot be reached.
func testConnString() string {
	if s := os.Getenv("OUTRIGGER_TEST_POSTGRES"); s != "" {
		return s
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&connect_timeout=10"
}

// randomName is prefix and a random suffix, a valid lower-case identifier.
func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// exec runs SQL on a connection of its own, outside any store.
func exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testConnString())
	if err != nil {
		t.Fatalf("connecting to PostgreSQL at %s: %v", testConnString(), err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// count is the number of rows of table matching where, expired ones
// included.
func count(t *testing.T, table, where string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testConnString())
	if err != nil {
		t.Fatalf("connecting to PostgreSQL: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE "+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// newTestStore opens a store on a table of its own, dropped at cleanup
// (after the store is closed). extra adds or overrides metadata.
func newTestStore(t *testing.T, extra map[string]string) (*Store, string) {
	t.Helper()
	table := randomName("state_test")
	meta := map[string]string{"connectionString": testConnString(), "tableName": table}
	maps.Copy(meta, extra)
	if tn, ok := extra["tableName"]; ok {
		table = strings.ToLower(tn)
	}
	t.Cleanup(func() { exec(t, "DROP TABLE IF EXISTS "+table) })
	s, unknown, err := New(meta)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if len(unknown) != 0 {
		t.Fatalf("New: unknown keys %q", unknown)
	}
	return s, table
}

func TestConformance(t *testing.T) {
	for _, mode := range []string{"", "exec", "simple_protocol"} {
		t.Run("queryExecMode="+mode, func(t *testing.T) {
			statetest.Run(t, func(t *testing.T) state.Store {
				s, _ := newTestStore(t, map[string]string{"queryExecMode": mode})
				return s
			})
		})
	}
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", Type, Metadata{})
}

func TestValidate(t *testing.T) {
	good := Metadata{ConnectionString: "postgres://x", TableName: "state", MetadataTableName: "dapr_metadata", Timeout: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	for _, name := range []string{"state", "My_State", "_s1", "public.state", "Other.T", strings.Repeat("a", 63)} {
		m := good
		m.TableName, m.MetadataTableName = name, name
		if err := m.Validate(); err != nil {
			t.Errorf("Validate(tableName %q) = %v", name, err)
		}
	}
	tests := []struct {
		name string
		edit func(*Metadata)
		want string
	}{
		{"no connection string", func(m *Metadata) { m.ConnectionString = "" }, "connectionString: required"},
		{"empty table", func(m *Metadata) { m.TableName = "" }, "tableName \"\": must not be empty"},
		{"injection", func(m *Metadata) { m.TableName = "state; DROP TABLE x" }, "not a plain SQL identifier"},
		{"quote", func(m *Metadata) { m.TableName = `st"ate` }, "not a plain SQL identifier"},
		{"digit first", func(m *Metadata) { m.TableName = "1state" }, "not a plain SQL identifier"},
		{"three parts", func(m *Metadata) { m.TableName = "a.b.c" }, "want table or schema.table"},
		{"empty schema", func(m *Metadata) { m.TableName = ".state" }, "not a plain SQL identifier"},
		{"too long", func(m *Metadata) { m.TableName = strings.Repeat("a", 64) }, "at most 63"},
		{"unicode", func(m *Metadata) { m.TableName = "états" }, "not a plain SQL identifier"},
		{"metadata table", func(m *Metadata) { m.MetadataTableName = "x-y" }, "metadataTableName \"x-y\""},
		{"zero timeout", func(m *Metadata) { m.Timeout = 0 }, "timeout 0s: must be positive"},
		{"negative maxConns", func(m *Metadata) { m.MaxConns = -1 }, "maxConns -1"},
		{"huge maxConns", func(m *Metadata) { m.MaxConns = 1 << 40 }, "maxConns"},
		{"negative idle time", func(m *Metadata) { m.ConnectionMaxIdleTime = -time.Second }, "connectionMaxIdleTime -1s"},
		{"exec mode", func(m *Metadata) { m.QueryExecMode = "fast" }, `queryExecMode "fast"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good
			tt.edit(&m)
			if err := m.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	for _, mode := range []string{"cache_statement", "CACHE_DESCRIBE", "describe_exec", "exec", "simple_protocol"} {
		m := good
		m.QueryExecMode = mode
		if err := m.Validate(); err != nil {
			t.Errorf("Validate(queryExecMode %q) = %v", mode, err)
		}
	}
}

// closedPort is a local TCP address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestNewErrors(t *testing.T) {
	dead := "postgres://postgres@" + closedPort(t) + "/test?sslmode=disable&connect_timeout=5"
	tests := []struct {
		name string
		meta map[string]string
		want string
	}{
		{"no connection string", map[string]string{"tableName": "x"}, "metadata connectionString: required"},
		{"bad duration", map[string]string{"connectionString": testConnString(), "timeout": "soon"}, `metadata timeout "soon"`},
		{"bad table", map[string]string{"connectionString": testConnString(), "tableName": "x;y"}, "tableName"},
		{"bad connection string", map[string]string{"connectionString": "postgres://u:secret@[::1"}, "connectionString"},
		{"unreachable", map[string]string{"connectionString": dead, "timeout": "10s"}, "connecting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, err := New(tt.meta)
			if err == nil {
				_ = s.Close()
				t.Fatalf("New succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "state/postgresql: ") {
				t.Errorf("New: %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("New: %q shows the password", err)
			}
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	s, unknown, err := New(map[string]string{
		"connectionString": testConnString(), "tableName": randomName("state_test"),
		"tablePrefix": "x", "cleanupInterval": "0", "maxConns": "3", "connectionMaxIdleTime": "1m",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec(t, "DROP TABLE IF EXISTS "+s.table) })
	defer s.Close()
	if !slices.Equal(unknown, []string{"tablePrefix"}) {
		t.Errorf("unknown = %q, want [tablePrefix]", unknown)
	}
	if got := s.pool.Config().MaxConns; got != 3 {
		t.Errorf("MaxConns = %d", got)
	}
	if got := s.pool.Config().MaxConnIdleTime; got != time.Minute {
		t.Errorf("MaxConnIdleTime = %v", got)
	}
}

// TestBrokenConnection checks that every operation of a store whose
// database cannot be reached fails with an error.
func TestBrokenConnection(t *testing.T) {
	s, err := open(Metadata{
		ConnectionString: "postgres://postgres@" + closedPort(t) + "/test?sslmode=disable&connect_timeout=5",
		TableName:        "state", Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.startCleanup(10 * time.Millisecond) // failing in the background, harmlessly
	ctx := t.Context()
	etag := "8e2a5f5c-6d2b-4c53-9a63-0b1f6b0a0f00"
	if _, _, err := s.Get(ctx, state.GetRequest{Key: "k"}); err == nil {
		t.Error("Get: no error")
	}
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v")}); err == nil || isETag(err) {
		t.Errorf("Set: %v, want a connection error", err)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("v"), ETag: &etag}); err == nil || isETag(err) {
		t.Errorf("Set with an ETag: %v, want a connection error", err)
	}
	if err := s.Delete(ctx, state.DeleteRequest{Key: "k"}); err == nil {
		t.Error("Delete: no error")
	}
	if err := s.Multi(ctx, []state.Operation{{Set: &state.SetRequest{Key: "k"}}}); err == nil {
		t.Error("Multi: no error")
	}
	if _, err := s.Query(ctx, state.Query{}); err == nil {
		t.Error("Query: no error")
	}
	if _, err := s.cleanup(ctx); err == nil {
		t.Error("cleanup: no error")
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	// A closed store errs too.
	if _, _, err := s.Get(ctx, state.GetRequest{Key: "k"}); err == nil {
		t.Error("Get after Close: no error")
	}
}

func isETag(err error) bool {
	return errors.Is(err, state.ErrETagMismatch) || errors.Is(err, state.ErrETagInvalid)
}

func TestCleanup(t *testing.T) {
	s, table := newTestStore(t, map[string]string{"cleanupInterval": "200ms"})
	defer s.Close()
	ctx := t.Context()
	for key, ttl := range map[string]time.Duration{"short": time.Second, "long": time.Hour, "none": 0, "cleared": -1} {
		if err := s.Set(ctx, state.SetRequest{Key: key, Value: []byte("x"), TTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for count(t, table, "key = $1", "short") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired row is still in the table after 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := count(t, table, "TRUE"); n != 3 {
		t.Errorf("%d rows left, want the 3 not expired", n)
	}
}

func TestCleanupDisabled(t *testing.T) {
	s, table := newTestStore(t, map[string]string{"cleanupInterval": "0"})
	defer s.Close()
	if err := s.Set(t.Context(), state.SetRequest{Key: "k", Value: []byte("x"), TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, found, err := s.Get(t.Context(), state.GetRequest{Key: "k"}); err != nil || found {
		t.Errorf("an expired item: found %v, err %v", found, err)
	}
	if n := count(t, table, "TRUE"); n != 1 {
		t.Errorf("%d rows, want the expired one still there", n)
	}
	if n, err := s.cleanup(t.Context()); err != nil || n != 1 {
		t.Errorf("cleanup: %d, %v", n, err)
	}
}

func TestETagsAndExpiry(t *testing.T) {
	s, _ := newTestStore(t, map[string]string{"cleanupInterval": "0"})
	defer s.Close()
	ctx := t.Context()
	set := func(req state.SetRequest) error { return s.Set(ctx, req) }
	if err := set(state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	it, _, _ := s.Get(ctx, state.GetRequest{Key: "k"})
	if !validETag(it.ETag) {
		t.Errorf("ETag %q is not a UUID", it.ETag)
	}
	bad := "not-a-uuid"
	if err := set(state.SetRequest{Key: "k", ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("a malformed ETag: %v, want ErrETagInvalid", err)
	}
	if err := s.Delete(ctx, state.DeleteRequest{Key: "k", ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("Delete with a malformed ETag: %v, want ErrETagInvalid", err)
	}
	other := "00000000-0000-4000-8000-000000000000"
	if err := set(state.SetRequest{Key: "k", ETag: &other}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("another UUID: %v, want ErrETagMismatch", err)
	}
	upper := strings.ToUpper(it.ETag)
	if err := set(state.SetRequest{Key: "k", Value: []byte("w"), ETag: &upper}); err != nil {
		t.Errorf("the ETag in upper case: %v", err)
	}

	// An expired row left in the table is absent: a first write replaces
	// it, an ETag write or delete does not find it.
	if err := set(state.SetRequest{Key: "e", Value: []byte("old"), TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	var stale string
	ctxRow, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.pool.QueryRow(ctxRow, "SELECT etag::text FROM "+s.table+" WHERE key = 'e'").Scan(&stale); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := set(state.SetRequest{Key: "e", Value: []byte("x"), ETag: &stale}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("an ETag write over an expired row: %v, want ErrETagMismatch", err)
	}
	if err := s.Delete(ctx, state.DeleteRequest{Key: "e", ETag: &stale}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("an ETag delete of an expired row: %v, want ErrETagMismatch", err)
	}
	if err := set(state.SetRequest{Key: "e", Value: []byte("new"), FirstWrite: true}); err != nil {
		t.Errorf("a first write over an expired row: %v", err)
	}
	if it, found, _ := s.Get(ctx, state.GetRequest{Key: "e"}); !found || string(it.Value) != "new" || !it.Expires.IsZero() {
		t.Errorf("after the first write: %q found %v expires %v", it.Value, found, it.Expires)
	}

	// Values PostgreSQL's jsonb refuses still round-trip.
	for _, v := range []string{`{"a":"\u0000"}`, `"\ud800"`, `{"deep":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}`, "\xff{}"} {
		if err := set(state.SetRequest{Key: "odd", Value: []byte(v)}); err != nil {
			t.Errorf("Set(%q): %v", v, err)
			continue
		}
		if it, _, err := s.Get(ctx, state.GetRequest{Key: "odd"}); err != nil || string(it.Value) != v {
			t.Errorf("Get: %q, %v; want %q", it.Value, err, v)
		}
	}

	// A Multi's error names the failing operation.
	err := s.Multi(ctx, []state.Operation{
		{Set: &state.SetRequest{Key: "m", Value: []byte("1")}},
		{Delete: &state.DeleteRequest{Key: "k", ETag: &other}},
	})
	if !errors.Is(err, state.ErrETagMismatch) || !strings.Contains(err.Error(), "operation 1 failed") {
		t.Errorf("Multi: %v", err)
	}
	if err := s.Multi(ctx, []state.Operation{{}}); err == nil {
		t.Error("Multi with an empty operation: no error")
	}
}

func TestQueryableJSON(t *testing.T) {
	tests := []struct {
		in   string
		want any // string, or nil for not queryable
	}{
		{`{"a":1}`, `{"a":1}`},
		{` [1, "x"] `, ` [1, "x"] `},
		{`"\u00e9\ud83d\ude00"`, `"é😀"`},
		{`{"a":"\ud800"}`, `{"a":"` + "\uFFFD" + `"}`},
		{`{"n":1.50e3,"s":"\u0041<"}`, `{"n":1.50e3,"s":"A<"}`},
		{`{"a":"\u0000"}`, nil},
		{`{"\u0000":1}`, nil},
		{`{"a":"\\u0000"}`, `{"a":"\\u0000"}`},
		{"", nil},
		{"plain text", nil},
		{`{"a":1} {}`, nil},
		{"\"\xff\"", nil},
		{strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth), strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth)},
		{strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1), nil},
		{`["[[[[", "\"{{{{"]`, `["[[[[", "\"{{{{"]`},
	}
	for _, tt := range tests {
		got := queryableJSON([]byte(tt.in))
		switch {
		case tt.want == nil && got != nil:
			t.Errorf("queryableJSON(%q) = %q, want nil", tt.in, *got)
		case tt.want != nil && (got == nil || *got != tt.want):
			t.Errorf("queryableJSON(%q) = %v, want %q", tt.in, got, tt.want)
		}
	}
}

// TestQuery covers what the conformance suite's query part does not:
// types, operators, numbers against strings, and the rows a query skips.
func TestQuery(t *testing.T) {
	s, _ := newTestStore(t, map[string]string{"cleanupInterval": "0"})
	defer s.Close()
	ctx := t.Context()
	items := map[string]string{
		"a": `{"n": 9, "s": "x", "b": true, "tag": null, "o": {"k": [1, 2]}}`,
		"b": `{"n": 10, "s": "y", "b": false, "o": {"k": [1]}}`,
		"c": `{"n": 2.5, "s": "10", "tag": "t"}`,
		"d": `{"n": "11", "s": "z"}`,
		"e": `{"n": -1e2}`,
		"f": `[1, 2]`,
	}
	for k, v := range items {
		if err := s.Set(ctx, state.SetRequest{Key: k, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	// Rows a query never returns: not JSON, and expired.
	if err := s.Set(ctx, state.SetRequest{Key: "bin", Value: []byte{0xff, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "old", Value: []byte(`{"n": 1}`), TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)

	run := func(q state.Query) (string, string) {
		t.Helper()
		res, err := s.Query(ctx, q)
		if err != nil {
			t.Fatalf("Query(%+v): %v", q, err)
		}
		keys := make([]string, len(res.Items))
		for i, it := range res.Items {
			keys[i] = it.Key
			if it.Key == "a" && string(it.Value) != items["a"] {
				t.Errorf("item a: value %q", it.Value)
			}
		}
		return strings.Join(keys, ","), res.Token
	}
	f := func(op, key string, v any) *state.Filter { return &state.Filter{Op: op, Key: key, Value: v} }
	tests := []struct {
		name string
		q    state.Query
		want string
	}{
		{"everything JSON and live, by key", state.Query{}, "a,b,c,d,e,f"},
		{"numbers compare numerically", state.Query{Filter: f("GT", "n", 9.0)}, "b"},
		{"GTE", state.Query{Filter: f("GTE", "n", 9.0)}, "a,b"},
		{"LT", state.Query{Filter: f("LT", "n", 9.0)}, "c,e"},
		{"LTE with an int", state.Query{Filter: f("LTE", "n", 9)}, "a,c,e"},
		{"EQ number", state.Query{Filter: f("EQ", "n", 2.5)}, "c"},
		{"a number does not match a string", state.Query{Filter: f("EQ", "n", 11.0)}, ""},
		{"a string does not match a number", state.Query{Filter: f("EQ", "s", 10.0)}, ""},
		{"string EQ", state.Query{Filter: f("EQ", "s", "10")}, "c"},
		{"NEQ skips the missing and other types", state.Query{Filter: f("NEQ", "n", 9.0)}, "b,c,e"},
		{"string GT", state.Query{Filter: f("GT", "s", "x")}, "b,d"},
		{"bool", state.Query{Filter: f("EQ", "b", false)}, "b"},
		{"bool NEQ", state.Query{Filter: f("NEQ", "b", false)}, "a"},
		{"null", state.Query{Filter: f("EQ", "tag", nil)}, "a"},
		{"not null", state.Query{Filter: f("NEQ", "tag", nil)}, "c"},
		{"nested path into an object", state.Query{Filter: f("EQ", "o.k", []any{1.0, 2.0})}, "a"},
		{"IN of mixed types", state.Query{Filter: &state.Filter{Op: "IN", Key: "n", Values: []any{10.0, "11", -100.0}}}, "b,d,e"},
		{"empty IN", state.Query{Filter: &state.Filter{Op: "IN", Key: "n"}}, ""},
		{"AND", state.Query{Filter: &state.Filter{Op: "AND", Filters: []*state.Filter{f("GT", "n", 0.0), f("LT", "s", "y")}}}, "a,c"},
		{"OR in AND", state.Query{Filter: &state.Filter{Op: "AND", Filters: []*state.Filter{
			{Op: "OR", Filters: []*state.Filter{f("EQ", "s", "x"), f("EQ", "s", "z")}},
			f("EQ", "n", "11"),
		}}}, "d"},
		{"lower-case op", state.Query{Filter: f("eq", "s", "x")}, "a"},
		{"sort numbers ascending", state.Query{Filter: f("GT", "n", -1000.0), Sort: []state.Sort{{Key: "n"}}}, "e,c,a,b"},
		{"sort numbers descending", state.Query{Filter: f("GT", "n", -1000.0), Sort: []state.Sort{{Key: "n", Descending: true}}}, "b,a,c,e"},
		{"sort puts missing keys last", state.Query{Sort: []state.Sort{{Key: "s", Descending: true}}}, "d,b,a,c,e,f"},
		{"two sorts", state.Query{Sort: []state.Sort{{Key: "tag"}, {Key: "n", Descending: true}}}, "a,c,b,e,d,f"},
		{"a filter value with quotes", state.Query{Filter: f("EQ", "s", `x' OR '1'='1`)}, ""},
		{"a key path with quotes", state.Query{Filter: f("EQ", `s'} OR TRUE --`, "x")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := run(tt.q); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		got, token := run(state.Query{Limit: 4})
		if got != "a,b,c,d" || token != "4" {
			t.Fatalf("first page %q token %q", got, token)
		}
		got, token = run(state.Query{Limit: 4, Token: token})
		if got != "e,f" || token != "" {
			t.Errorf("last page %q token %q", got, token)
		}
		got, token = run(state.Query{Limit: 3, Token: "3"})
		if got != "d,e,f" || token != "" {
			t.Errorf("an exact last page %q token %q, want no token", got, token)
		}
		if got, _ := run(state.Query{Token: "5"}); got != "f" {
			t.Errorf("a token without a limit: %q", got)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, q := range []state.Query{
			{Token: "x"},
			{Token: "-1"},
			{Limit: -1},
			{Filter: &state.Filter{Op: "LIKE", Key: "s", Value: "x"}},
			{Filter: f("EQ", "", "x")},
			{Filter: f("EQ", "a..b", "x")},
			{Filter: f("GT", "tag", nil)},
			{Filter: f("GT", "o", map[string]any{})},
			{Filter: f("EQ", "s", struct{}{})},
			{Filter: &state.Filter{Op: "AND", Filters: []*state.Filter{nil}}},
			{Sort: []state.Sort{{Key: ""}}},
		} {
			if _, err := s.Query(ctx, q); err == nil {
				t.Errorf("Query(%+v): no error", q)
			}
		}
	})
}

func TestSchemaQualifiedTable(t *testing.T) {
	schema := randomName("test_schema")
	exec(t, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { exec(t, "DROP SCHEMA "+schema+" CASCADE") })
	s, _ := newTestStore(t, map[string]string{"tableName": schema + ".MyState"})
	if err := s.Set(t.Context(), state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if n := count(t, schema+".mystate", "key = 'k'"); n != 1 {
		t.Errorf("%d rows in %s.mystate", n, schema)
	}
	// Opening it again uses the table as it is.
	s2, _ := newTestStore(t, map[string]string{"tableName": schema + ".mystate"})
	defer s2.Close()
	if it, found, err := s2.Get(t.Context(), state.GetRequest{Key: "k"}); err != nil || !found || string(it.Value) != "v" {
		t.Errorf("Get: %q %v %v", it.Value, found, err)
	}
}

func TestForeignTable(t *testing.T) {
	table := randomName("dapr_state")
	// The layout of Dapr's state.postgresql v1.
	exec(t, fmt.Sprintf(`CREATE TABLE %s (key text NOT NULL PRIMARY KEY, value jsonb NOT NULL,
		isbinary boolean NOT NULL, insertdate timestamptz NOT NULL DEFAULT now(), updatedate timestamptz NULL,
		expiredate timestamptz NULL)`, table))
	t.Cleanup(func() { exec(t, "DROP TABLE IF EXISTS "+table) })
	s, _, err := New(map[string]string{"connectionString": testConnString(), "tableName": table})
	if err == nil {
		_ = s.Close()
		t.Fatal("New on a table of another layout succeeded")
	}
	if !strings.Contains(err.Error(), "exists with another layout") || !strings.Contains(err.Error(), "value bytea") {
		t.Errorf("New: %v", err)
	}
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/statetest"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

// newStore opens a store on a fresh database file, with meta added, and
// closes it when the test ends.
func newStore(t *testing.T, meta map[string]string) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	m := map[string]string{"connectionString": path}
	maps.Copy(m, meta)
	s, unknown, err := New(m)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if len(unknown) != 0 {
		t.Fatalf("New: unknown keys %q", unknown)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		meta func(t *testing.T) map[string]string
	}{
		{"file", func(t *testing.T) map[string]string {
			return map[string]string{"connectionString": filepath.Join(t.TempDir(), "state.db")}
		}},
		{"file URI without WAL", func(t *testing.T) map[string]string {
			return map[string]string{"connectionString": "file:" + filepath.Join(t.TempDir(), "state.db"), "disableWAL": "true"}
		}},
		{"memory", func(*testing.T) map[string]string {
			return map[string]string{"connectionString": ":memory:", "tableName": "items"}
		}},
		{"shared-cache memory URI", func(t *testing.T) map[string]string {
			name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
			return map[string]string{"connectionString": "file:" + name + "?mode=memory&cache=shared"}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			statetest.Run(t, func(t *testing.T) state.Store {
				s, unknown, err := New(tt.meta(t))
				if err != nil || len(unknown) != 0 {
					t.Fatal(err, unknown)
				}
				return s
			})
		})
	}
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", Type, Metadata{})
}

func TestMetadataDefaults(t *testing.T) {
	s, _ := newStore(t, nil)
	if s.table != `"state"` || s.timeout != 20*time.Second || s.cleanupDone == nil {
		t.Errorf("defaults: table %s, timeout %v, cleanup running %v", s.table, s.timeout, s.cleanupDone != nil)
	}
	_, unknown, err := New(map[string]string{"connectionString": ":memory:", "cleanupInterval": "0", "timeoutInSeconds": "5"})
	if err != nil || len(unknown) != 1 || unknown[0] != "timeoutInSeconds" {
		t.Errorf("unknown keys: %q, err %v", unknown, err)
	}
}

func TestMetadataValidation(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "x.db")
	tests := []struct {
		name string
		meta map[string]string
		want string // in the error
	}{
		{"missing connectionString", map[string]string{}, "connectionString: required"},
		{"empty connectionString", map[string]string{"connectionString": ""}, "connectionString: required"},
		{"table name with SQL", map[string]string{"connectionString": db, "tableName": `state"; DROP TABLE x; --`}, "tableName"},
		{"table name with a dot", map[string]string{"connectionString": db, "tableName": "main.state"}, "tableName"},
		{"reserved table name", map[string]string{"connectionString": db, "tableName": "sqlite_master"}, "reserved"},
		{"bad metadata table name", map[string]string{"connectionString": db, "metadataTableName": "meta data"}, "metadataTableName"},
		{"zero timeout", map[string]string{"connectionString": db, "timeout": "0"}, "timeout"},
		{"negative busy timeout", map[string]string{"connectionString": db, "busyTimeout": "-1s"}, "busyTimeout"},
		{"bad duration", map[string]string{"connectionString": db, "cleanupInterval": "soon"}, "cleanupInterval"},
		{"bad bool", map[string]string{"connectionString": db, "disableWAL": "maybe"}, "disableWAL"},
		{"journal pragma", map[string]string{"connectionString": "file:" + db + "?_pragma=journal_mode(DELETE)"}, "disableWAL"},
		{"busy pragma", map[string]string{"connectionString": "file:" + db + "?_pragma=busy_timeout%3d10"}, "busyTimeout"},
		{"synchronous", map[string]string{"connectionString": "file:" + db + "?_synchronous=OFF"}, "FULL"},
		{"txlock", map[string]string{"connectionString": "file:" + db + "?_txlock=deferred"}, "immediate"},
		{"read-only", map[string]string{"connectionString": "file:" + db + "?mode=ro"}, "read-only"},
		{"fragment", map[string]string{"connectionString": "file:" + db + "#x"}, "fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, err := New(tt.meta)
			if err == nil {
				_ = s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused configuration created the database: %v", err)
	}
	// Validate alone, on a struct not made by Decode.
	if err := (Metadata{TableName: "state", MetadataTableName: "metadata", Timeout: time.Second}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "connectionString") {
		t.Errorf("Validate without a connection string: %v", err)
	}
	if err := (Metadata{ConnectionString: db, TableName: "state_2", MetadataTableName: "Meta", Timeout: time.Second}).Validate(); err != nil {
		t.Errorf("Validate of a good struct: %v", err)
	}
}

// TestPathIsLiteral checks that a plain connection string is a path, even
// with characters a URI would read.
func TestPathIsLiteral(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd ?name#%41.db")
	s, _, err := New(map[string]string{"connectionString": path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(t.Context(), state.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not at the path given: %v", err)
	}
}

// pragmas reads the durability settings of n distinct pooled connections.
func pragmas(t *testing.T, s *Store, n int) []string {
	t.Helper()
	ctx := t.Context()
	var out []string
	var conns []*sql.Conn
	for range n {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var mode string
		var sync, busy int
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("journal_mode=%s synchronous=%d busy_timeout=%d", mode, sync, busy))
	}
	for _, c := range conns {
		_ = c.Close()
	}
	return out
}

// TestDurabilitySettings checks what makes an acknowledged write survive a
// crash, on every connection of the pool: WAL (or the rollback journal
// when asked) and synchronous=FULL (2).
func TestDurabilitySettings(t *testing.T) {
	s, _ := newStore(t, map[string]string{"busyTimeout": "1500ms"})
	for i, got := range pragmas(t, s, maxConns) {
		if want := "journal_mode=wal synchronous=2 busy_timeout=1500"; got != want {
			t.Errorf("connection %d: %s, want %s", i, got, want)
		}
	}
	s, _ = newStore(t, map[string]string{"disableWAL": "true"})
	for i, got := range pragmas(t, s, 2) {
		if want := "journal_mode=delete synchronous=2 busy_timeout=2000"; got != want {
			t.Errorf("disableWAL: connection %d: %s, want %s", i, got, want)
		}
	}
}

// TestCrashHelper is the process TestCrash kills: it writes, says so, and
// dies without closing anything.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv("OUTRIGGER_SQLITE_CRASH_DB")
	if path == "" {
		t.Skip("run by TestCrash")
	}
	s, _, err := New(map[string]string{"connectionString": path, "cleanupInterval": "0"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	for i := range 50 {
		if err := s.Set(ctx, state.SetRequest{Key: fmt.Sprintf("k%d", i), Value: fmt.Appendf(nil, "v%d", i)}); err != nil {
			fmt.Println("error:", err)
			os.Exit(3)
		}
	}
	if err := s.Multi(ctx, []state.Operation{
		{Set: &state.SetRequest{Key: "tx1", Value: []byte("a")}},
		{Delete: &state.DeleteRequest{Key: "k0"}},
	}); err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("acknowledged")
	p, _ := os.FindProcess(os.Getpid())
	_ = p.Kill()
	select {}
}

// TestCrash kills a process right after its writes are acknowledged, and
// finds them all in the database.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OUTRIGGER_SQLITE_CRASH_DB="+path)
	out, err := cmd.Output()
	if !strings.Contains(string(out), "acknowledged") {
		t.Fatalf("the helper did not finish its writes: %v\n%s", err, out)
	}
	if err == nil {
		t.Fatal("the helper exited cleanly instead of being killed")
	}
	s, _, err := New(map[string]string{"connectionString": path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i < 50; i++ {
		it, found, err := s.Get(t.Context(), state.GetRequest{Key: fmt.Sprintf("k%d", i)})
		if err != nil || !found || string(it.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d after the crash: %q found %v err %v", i, it.Value, found, err)
		}
	}
	if _, found, _ := s.Get(t.Context(), state.GetRequest{Key: "k0"}); found {
		t.Error("the transaction's delete was lost")
	}
	if _, found, _ := s.Get(t.Context(), state.GetRequest{Key: "tx1"}); !found {
		t.Error("the transaction's set was lost")
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	meta := map[string]string{"connectionString": path, "tableName": "kv"}
	s, _, err := New(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(t.Context(), state.SetRequest{Key: "k", Value: []byte("v"), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	it, _, _ := s.Get(t.Context(), state.GetRequest{Key: "k"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	if err := s.Set(t.Context(), state.SetRequest{Key: "k", Value: []byte("v")}); err == nil {
		t.Error("Set after Close succeeded")
	}
	s, _, err = New(meta)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, found, err := s.Get(t.Context(), state.GetRequest{Key: "k"})
	if err != nil || !found || string(got.Value) != "v" || got.ETag != it.ETag || !got.Expires.Equal(it.Expires) {
		t.Errorf("after reopening: %+v found %v err %v, want %+v", got, found, err, it)
	}
}

// TestCleanup waits for the cleanup goroutine to delete an expired row from
// the table (Get hides it from the start), and checks it spares the rest
// and stops at Close.
func TestCleanup(t *testing.T) {
	s, _ := newStore(t, map[string]string{"cleanupInterval": "50ms"})
	ctx := t.Context()
	for _, req := range []state.SetRequest{
		{Key: "short", Value: []byte("x"), TTL: 100 * time.Millisecond},
		{Key: "long", Value: []byte("x"), TTL: time.Hour},
		{Key: "forever", Value: []byte("x")},
	} {
		if err := s.Set(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() map[string]bool {
		r, err := s.db.QueryContext(ctx, "SELECT key FROM state")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		keys := map[string]bool{}
		for r.Next() {
			var k string
			if err := r.Scan(&k); err != nil {
				t.Fatal(err)
			}
			keys[k] = true
		}
		return keys
	}
	deadline := time.Now().Add(20 * time.Second)
	for rows()["short"] {
		if time.Now().After(deadline) {
			t.Fatal("the expired row is still in the table after 20s")
		}
		time.Sleep(25 * time.Millisecond)
	}
	if got := rows(); !got["long"] || !got["forever"] {
		t.Errorf("the cleanup deleted live rows: left %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.cleanupDone:
	default:
		t.Error("Close returned with the cleanup goroutine still running")
	}
}

// TestCleanupBatches checks that a purge deletes more expired rows than
// one batch, and nothing else.
func TestCleanupBatches(t *testing.T) {
	s, _ := newStore(t, map[string]string{"cleanupInterval": "0"})
	if s.cleanupDone != nil {
		t.Fatal("cleanupInterval 0 started the cleanup")
	}
	ctx := t.Context()
	clock := time.Now()
	var mu sync.Mutex
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	var ops []state.Operation
	for i := range cleanupBatch + 10 {
		ops = append(ops, state.Operation{Set: &state.SetRequest{Key: fmt.Sprintf("e%d", i), Value: []byte("x"), TTL: time.Minute}})
	}
	ops = append(ops, state.Operation{Set: &state.SetRequest{Key: "live", Value: []byte("x")}})
	if err := s.Multi(ctx, ops); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clock = clock.Add(2 * time.Minute)
	mu.Unlock()
	n, err := s.purgeExpired(ctx)
	if err != nil || n != cleanupBatch+10 {
		t.Fatalf("purged %d, err %v; want %d", n, err, cleanupBatch+10)
	}
	var left int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM state").Scan(&left); err != nil || left != 1 {
		t.Errorf("%d rows left, err %v; want 1", left, err)
	}
}

// TestReadsDuringWrite reads while a transaction holds the write lock with
// an uncommitted change: the read sees the committed value, at once.
func TestReadsDuringWrite(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := t.Context()
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	if err := s.lockWrite(ctx); err != nil {
		t.Fatal(err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE state SET value = ? WHERE key = ?", []byte("new"), "k"); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	it, found, err := s.Get(rctx, state.GetRequest{Key: "k"})
	if err != nil || !found || string(it.Value) != "old" {
		t.Errorf("read during a write: %q found %v err %v", it.Value, found, err)
	}
	// A writer waits its turn, and gives up at its deadline.
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := s.Set(wctx, state.SetRequest{Key: "k2", Value: []byte("x")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Set while the write lock is held: %v, want the deadline", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	s.unlockWrite()
}

// TestForeignTable refuses a table of the same name but another schema,
// such as Dapr's state.sqlite creates.
func TestForeignTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dapr.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`CREATE TABLE state (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL, is_binary BOOLEAN NOT NULL,
		etag TEXT NOT NULL, expiration_time TIMESTAMP DEFAULT NULL, update_time TIMESTAMP DEFAULT NULL)`)
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := New(map[string]string{"connectionString": path})
	if err == nil {
		_ = s.Close()
		t.Fatal("New accepted a table with another schema")
	}
	if !strings.Contains(err.Error(), "is_binary") {
		t.Errorf("error %q does not show the columns", err)
	}
	s, _, err = New(map[string]string{"connectionString": path, "tableName": "outrigger_state"})
	if err != nil {
		t.Fatalf("another table of the same file: %v", err)
	}
	_ = s.Close()
}

func TestETags(t *testing.T) {
	s, _ := newStore(t, map[string]string{"cleanupInterval": "0"})
	ctx := t.Context()
	bad := "not-an-etag"
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("x"), ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("Set with a malformed ETag: %v, want ErrETagInvalid", err)
	}
	if err := s.Delete(ctx, state.DeleteRequest{Key: "k", ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("Delete with a malformed ETag: %v, want ErrETagInvalid", err)
	}
	wellFormed := strings.Repeat("ab", 16)
	if err := s.Set(ctx, state.SetRequest{Key: "k", Value: []byte("x"), ETag: &wellFormed}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Set with an unknown ETag: %v, want ErrETagMismatch", err)
	}
	// An expired item is absent: its ETag no longer matches, and a
	// first-write may create the key again.
	clock := time.Now()
	var mu sync.Mutex
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	if err := s.Set(ctx, state.SetRequest{Key: "t", Value: []byte("1"), TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	it, _, _ := s.Get(ctx, state.GetRequest{Key: "t"})
	mu.Lock()
	clock = clock.Add(time.Second)
	mu.Unlock()
	if err := s.Set(ctx, state.SetRequest{Key: "t", Value: []byte("2"), ETag: &it.ETag}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Set with the ETag of an expired item: %v", err)
	}
	if err := s.Delete(ctx, state.DeleteRequest{Key: "t", ETag: &it.ETag}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Delete with the ETag of an expired item: %v", err)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "t", Value: []byte("3"), FirstWrite: true}); err != nil {
		t.Errorf("first-write over an expired item: %v", err)
	}
	if it, found, _ := s.Get(ctx, state.GetRequest{Key: "t"}); !found || string(it.Value) != "3" || !it.Expires.IsZero() {
		t.Errorf("after the first-write: %q found %v expires %v", it.Value, found, it.Expires)
	}
	// A malformed operation fails the transaction before anything runs.
	if err := s.Multi(ctx, []state.Operation{{Set: &state.SetRequest{Key: "m"}}, {}}); err == nil {
		t.Error("Multi with an empty operation succeeded")
	}
}

// TestConcurrentOpen: stores opening one new file at once (the sidecars of
// one `outrigger run` sharing a state file) all open, though SQLite
// answers the race to switch the file to WAL with SQLITE_BUSY.
func TestConcurrentOpen(t *testing.T) {
	for round := range 200 {
		file := filepath.Join(t.TempDir(), "state.db")
		const n = 8
		errs := make(chan error, n)
		var start sync.WaitGroup
		start.Add(1)
		for range n {
			go func() {
				start.Wait()
				s, _, err := New(map[string]string{"connectionString": file})
				if err == nil {
					err = s.Close()
				}
				errs <- err
			}()
		}
		start.Done()
		for range n {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

package mysql_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // for adminDB

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/mysql"
	"github.com/outrigger/outrigger/building-blocks/state/statetest"
	"github.com/outrigger/outrigger/config/metadata/metadatatest"
)

// The tests run against a real server: MariaDB or MySQL at dsn, or at
// $OUTRIGGER_TEST_MYSQL_DSN. They fail, not skip, when it is unreachable.
// Each store gets its own table in the database testSchema, dropped at
// cleanup, as other tests share the server.
const (
	defaultDSN = "root:@tcp(127.0.0.1:3306)/"
	testSchema = "test"
)

func dsn() string {
	if d := os.Getenv("OUTRIGGER_TEST_MYSQL_DSN"); d != "" {
		return d
	}
	return defaultDSN
}

// withParam adds a parameter to a DSN.
func withParam(dsn, param string) string {
	if strings.Contains(dsn[strings.LastIndexByte(dsn, '/')+1:], "?") {
		return dsn + "&" + param
	}
	return dsn + "?" + param
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// adminDB is a plain connection to the server, for looking behind the
// store's back and for dropping what the tests create.
func adminDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("MySQL/MariaDB at %s is unreachable: %v", dsn(), err)
	}
	return db
}

// newStore opens a store on a fresh table of testSchema, with extra
// metadata, and drops the table at cleanup. It returns the store and the
// table's quoted name.
func newStore(t *testing.T, extra map[string]string) (*mysql.Store, string) {
	t.Helper()
	table := "statetest_" + randomSuffix(t)
	meta := map[string]string{
		"connectionString": dsn(),
		"schemaName":       testSchema,
		"tableName":        table,
		"timeoutInSeconds": "10",
	}
	maps.Copy(meta, extra)
	admin := adminDB(t)
	s, unknown, err := mysql.New(meta)
	// The table is dropped even when New failed half-way.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP TABLE IF EXISTS `"+meta["schemaName"]+"`.`"+table+"`"); err != nil {
			t.Errorf("dropping %s: %v", table, err)
		}
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if len(unknown) != 0 {
		t.Fatalf("New: unknown keys %q", unknown)
	}
	return s, "`" + meta["schemaName"] + "`.`" + table + "`"
}

func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		s, _ := newStore(t, nil)
		return s
	})
}

func TestMetadataYAML(t *testing.T) {
	metadatatest.CheckYAML(t, "metadata.yaml", mysql.Type, mysql.Metadata{})
}

func TestMetadataValidate(t *testing.T) {
	good := mysql.Metadata{
		ConnectionString: defaultDSN, SchemaName: "dapr_state_store", TableName: "state",
		MetadataTableName: "dapr_metadata", TimeoutInSeconds: 20, CleanupIntervalInSeconds: 3600,
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid metadata: %v", err)
	}
	tests := []struct {
		name   string
		change func(*mysql.Metadata)
		want   string
	}{
		{"no connection string", func(m *mysql.Metadata) { m.ConnectionString = "" }, "connectionString"},
		{"table with a quote", func(m *mysql.Metadata) { m.TableName = "state`; DROP TABLE x; --" }, "tableName"},
		{"table with a dot", func(m *mysql.Metadata) { m.TableName = "a.b" }, "tableName"},
		{"table with a dash", func(m *mysql.Metadata) { m.TableName = "a-b" }, "tableName"},
		{"table with a space", func(m *mysql.Metadata) { m.TableName = "a b" }, "tableName"},
		{"non-ASCII table", func(m *mysql.Metadata) { m.TableName = "tablé" }, "tableName"},
		{"empty table", func(m *mysql.Metadata) { m.TableName = "" }, "tableName"},
		{"schema too long", func(m *mysql.Metadata) { m.SchemaName = strings.Repeat("s", 65) }, "schemaName"},
		{"bad metadata table", func(m *mysql.Metadata) { m.MetadataTableName = "meta;" }, "metadataTableName"},
		{"negative maxIdleConns", func(m *mysql.Metadata) { m.MaxIdleConns = -1 }, "maxIdleConns"},
		{"negative maxOpenConns", func(m *mysql.Metadata) { m.MaxOpenConns = -1 }, "maxOpenConns"},
		{"negative connMaxLifetime", func(m *mysql.Metadata) { m.ConnMaxLifetime = -time.Second }, "connMaxLifetime"},
		{"negative connMaxIdleTime", func(m *mysql.Metadata) { m.ConnMaxIdleTime = -time.Second }, "connMaxIdleTime"},
		{"two PEMs", func(m *mysql.Metadata) { m.PemPath, m.PemContents = "/ca.pem", "-----BEGIN" }, "pemContents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good
			tt.change(&m)
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate: %v, want an error naming %s", err, tt.want)
			}
		})
	}
	// The longest allowed identifier, and every allowed character.
	m := good
	m.SchemaName, m.TableName = strings.Repeat("s", 64), "Az_09"
	if err := m.Validate(); err != nil {
		t.Errorf("valid identifiers: %v", err)
	}
}

// TestNewRefuses checks the errors New returns before it connects.
func TestNewRefuses(t *testing.T) {
	noCert := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(noCert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		meta map[string]string
		want string
	}{
		{"no connection string", map[string]string{}, "connectionString: required"},
		{"bad timeout", map[string]string{"connectionString": defaultDSN, "timeoutInSeconds": "soon"}, "timeoutInSeconds"},
		{"bad table name", map[string]string{"connectionString": defaultDSN, "tableName": "x;y"}, "tableName"},
		{"bad DSN", map[string]string{"connectionString": "tcp(127.0.0.1:3306)"}, "connectionString"},
		{"tls=custom without a PEM", map[string]string{"connectionString": defaultDSN + "?tls=custom"}, "tls=custom needs pemPath"},
		{"missing PEM file", map[string]string{"connectionString": defaultDSN, "pemPath": filepath.Join(t.TempDir(), "none.pem")}, "pemPath"},
		{"PEM without a certificate", map[string]string{"connectionString": defaultDSN, "pemPath": noCert}, "no PEM certificate"},
		{"PEM with tls=false", map[string]string{"connectionString": defaultDSN + "?tls=false", "pemContents": testCA(t)}, "contradicts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, err := mysql.New(tt.meta)
			if err == nil {
				_ = s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "root:@") {
				t.Errorf("the error quotes the connection string: %v", err)
			}
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	table := "statetest_" + randomSuffix(t)
	admin := adminDB(t)
	t.Cleanup(func() { _, _ = admin.Exec("DROP TABLE IF EXISTS `" + testSchema + "`.`" + table + "`") })
	s, unknown, err := mysql.New(map[string]string{
		"connectionString": dsn(), "schemaName": testSchema, "tableName": table,
		"somethingElse": "x", "maxOpenConns": "4", "maxIdleConns": "2", "connMaxLifetime": "1m", "connMaxIdleTime": "30",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(unknown) != 1 || unknown[0] != "somethingElse" {
		t.Errorf("unknown = %q, want [somethingElse]", unknown)
	}
}

// TestUnreachable: New fails, within its timeout, when the server is not
// there.
func TestUnreachable(t *testing.T) {
	start := time.Now()
	s, _, err := mysql.New(map[string]string{
		"connectionString": "root:@tcp(127.0.0.1:1)/?timeout=2s",
		"timeoutInSeconds": "3",
	})
	if err == nil {
		_ = s.Close()
		t.Fatal("New succeeded against a closed port")
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("New took %v to fail", d)
	}
}

func mustSet(t *testing.T, s state.Store, req state.SetRequest) {
	t.Helper()
	if err := s.Set(t.Context(), req); err != nil {
		t.Fatalf("Set(%q): %v", req.Key, err)
	}
}

func get(t *testing.T, s state.Store, key string) (state.Item, bool) {
	t.Helper()
	it, found, err := s.Get(t.Context(), state.GetRequest{Key: key})
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return it, found
}

// rowCount counts the rows of table at key, expired or not.
func rowCount(t *testing.T, db *sql.DB, table, key string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+table+" WHERE id = ?", key).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCaseSensitiveKeys(t *testing.T) {
	s, _ := newStore(t, nil)
	keys := []string{"key", "Key", "KEY", "key ", " key", "kéy", "ke\u0301y", "ключ", "КЛЮЧ"}
	for _, k := range keys {
		if err := s.Set(t.Context(), state.SetRequest{Key: k, Value: []byte("v:" + k), FirstWrite: true}); err != nil {
			t.Fatalf("first-write of %q beside the others: %v", k, err)
		}
	}
	for _, k := range keys {
		if it, found := get(t, s, k); !found || string(it.Value) != "v:"+k {
			t.Errorf("%q: %q found %v", k, it.Value, found)
		}
	}
	if err := s.Delete(t.Context(), state.DeleteRequest{Key: "KEY"}); err != nil {
		t.Fatal(err)
	}
	if _, found := get(t, s, "key"); !found {
		t.Error("deleting KEY deleted key")
	}
}

func TestKeyLimits(t *testing.T) {
	s, _ := newStore(t, nil)
	long := strings.Repeat("🙂", 512) // 2048 bytes
	mustSet(t, s, state.SetRequest{Key: long, Value: []byte("x")})
	if _, found := get(t, s, long); !found {
		t.Error("a 2048-byte key was not stored")
	}
	if err := s.Set(t.Context(), state.SetRequest{Key: long + "x", Value: []byte("x")}); err == nil {
		t.Error("a 2049-byte key was accepted")
	}
	if _, found := get(t, s, long[:2044]); found {
		t.Error("a prefix of a key is found")
	}
	// A key that is not UTF-8 is stored as bytes.
	raw := "\xff\xfe\x00end"
	mustSet(t, s, state.SetRequest{Key: raw, Value: []byte("raw")})
	if it, found := get(t, s, raw); !found || string(it.Value) != "raw" {
		t.Errorf("non-UTF-8 key: %q %v", it.Value, found)
	}
}

// TestExpiredRows: a row past its TTL that the cleanup has not deleted yet
// is absent for every operation.
func TestExpiredRows(t *testing.T) {
	s, table := newStore(t, map[string]string{"cleanupIntervalInSeconds": "0"})
	db := adminDB(t)
	ctx := t.Context()
	mustSet(t, s, state.SetRequest{Key: "fw", Value: []byte("old"), TTL: 200 * time.Millisecond})
	mustSet(t, s, state.SetRequest{Key: "etag", Value: []byte("old"), TTL: 200 * time.Millisecond})
	mustSet(t, s, state.SetRequest{Key: "del", Value: []byte("old"), TTL: 200 * time.Millisecond})
	old, _ := get(t, s, "etag")
	oldDel, _ := get(t, s, "del")
	time.Sleep(time.Second)
	if rowCount(t, db, table, "fw") != 1 {
		t.Fatal("the expired row is gone already; the test needs it")
	}
	if _, found := get(t, s, "fw"); found {
		t.Error("Get found an expired row")
	}
	if err := s.Set(ctx, state.SetRequest{Key: "fw", Value: []byte("new"), FirstWrite: true}); err != nil {
		t.Errorf("first-write over an expired row: %v", err)
	}
	if it, found := get(t, s, "fw"); !found || string(it.Value) != "new" || !it.Expires.IsZero() {
		t.Errorf("after first-write: %q found %v expires %v", it.Value, found, it.Expires)
	}
	if err := s.Set(ctx, state.SetRequest{Key: "etag", Value: []byte("new"), ETag: &old.ETag}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Set with the ETag of an expired row: %v, want a mismatch", err)
	}
	if err := s.Delete(ctx, state.DeleteRequest{Key: "del", ETag: &oldDel.ETag}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Delete with the ETag of an expired row: %v, want a mismatch", err)
	}
	// In a transaction too.
	mustSet(t, s, state.SetRequest{Key: "tx", Value: []byte("old"), TTL: 200 * time.Millisecond})
	time.Sleep(time.Second)
	if err := s.Multi(ctx, []state.Operation{{Set: &state.SetRequest{Key: "tx", Value: []byte("new"), FirstWrite: true}}}); err != nil {
		t.Errorf("first-write over an expired row in a transaction: %v", err)
	}
	// With the cleanup disabled, nothing deleted the other expired rows.
	if rowCount(t, db, table, "etag") != 1 {
		t.Error("an expired row was deleted with cleanupIntervalInSeconds 0")
	}
}

func TestCleanup(t *testing.T) {
	for _, meta := range []map[string]string{
		{"cleanupIntervalInSeconds": "1"},
		{"cleanupInterval": "200ms"},
	} {
		t.Run(strings.Join(pairs(meta), ","), func(t *testing.T) {
			s, table := newStore(t, meta)
			db := adminDB(t)
			mustSet(t, s, state.SetRequest{Key: "short", Value: []byte("x"), TTL: 500 * time.Millisecond})
			mustSet(t, s, state.SetRequest{Key: "long", Value: []byte("x"), TTL: time.Hour})
			mustSet(t, s, state.SetRequest{Key: "forever", Value: []byte("x")})
			deadline := time.Now().Add(30 * time.Second)
			for rowCount(t, db, table, "short") != 0 {
				if time.Now().After(deadline) {
					t.Fatal("the cleanup has not deleted an expired row after 30s")
				}
				time.Sleep(100 * time.Millisecond)
			}
			if rowCount(t, db, table, "long") != 1 || rowCount(t, db, table, "forever") != 1 {
				t.Error("the cleanup deleted a live row")
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("a second Close: %v", err)
			}
		})
	}
}

func pairs(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// TestCleanupDisabled: an explicit cleanupInterval of 0 disables the
// cleanup, even though cleanupIntervalInSeconds defaults to an hour.
func TestCleanupDisabled(t *testing.T) {
	s, table := newStore(t, map[string]string{"cleanupInterval": "0", "cleanupIntervalInSeconds": "1"})
	db := adminDB(t)
	mustSet(t, s, state.SetRequest{Key: "short", Value: []byte("x"), TTL: 100 * time.Millisecond})
	time.Sleep(2500 * time.Millisecond)
	if rowCount(t, db, table, "short") != 1 {
		t.Error("an expired row was deleted with the cleanup disabled")
	}
}

func TestTTL(t *testing.T) {
	s, _ := newStore(t, nil)
	before := time.Now()
	mustSet(t, s, state.SetRequest{Key: "k", Value: []byte("x"), TTL: time.Hour})
	it, _ := get(t, s, "k")
	if d := it.Expires.Sub(before); d < time.Hour-5*time.Second || d > time.Hour+5*time.Second {
		t.Errorf("Expires %v for a 1h TTL set at %v", it.Expires, before)
	}
	// An ETag write without a TTL clears it; one with a TTL sets it.
	mustSet(t, s, state.SetRequest{Key: "k", Value: []byte("y"), ETag: &it.ETag})
	it, _ = get(t, s, "k")
	if !it.Expires.IsZero() {
		t.Errorf("Expires %v after a write without a TTL", it.Expires)
	}
	mustSet(t, s, state.SetRequest{Key: "k", Value: []byte("z"), ETag: &it.ETag, TTL: time.Minute})
	if it, _ = get(t, s, "k"); it.Expires.IsZero() {
		t.Error("an ETag write with a TTL set no expiry")
	}
	// A TTL past what a TIMESTAMP holds is refused, not stored as a zero date.
	if err := s.Set(t.Context(), state.SetRequest{Key: "far", Value: []byte("x"), TTL: 100 * 365 * 24 * time.Hour}); err == nil {
		t.Error("a 100-year TTL was accepted")
	}
	if _, found := get(t, s, "far"); found {
		t.Error("a refused write stored the key")
	}
}

func TestETagShape(t *testing.T) {
	s, _ := newStore(t, nil)
	mustSet(t, s, state.SetRequest{Key: "k", Value: []byte("x")})
	it, _ := get(t, s, "k")
	if len(it.ETag) != 36 || strings.Count(it.ETag, "-") != 4 {
		t.Errorf("ETag %q is not a UUID", it.ETag)
	}
	upper := strings.ToUpper(it.ETag)
	if err := s.Set(t.Context(), state.SetRequest{Key: "k", Value: []byte("y"), ETag: &upper}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("Set with the ETag upper-cased: %v, want ErrETagInvalid", err)
	}
	bad := "x"
	if err := s.Delete(t.Context(), state.DeleteRequest{Key: "k", ETag: &bad}); !errors.Is(err, state.ErrETagInvalid) {
		t.Errorf("Delete with ETag %q: %v, want ErrETagInvalid", bad, err)
	}
	other := "00000000-0000-4000-8000-000000000000"
	if err := s.Delete(t.Context(), state.DeleteRequest{Key: "k", ETag: &other}); !errors.Is(err, state.ErrETagMismatch) {
		t.Errorf("Delete with another UUID: %v, want ErrETagMismatch", err)
	}
}

func TestMultiInvalid(t *testing.T) {
	s, _ := newStore(t, nil)
	err := s.Multi(t.Context(), []state.Operation{
		{Set: &state.SetRequest{Key: "a", Value: []byte("x")}},
		{},
	})
	if err == nil || !strings.Contains(err.Error(), "operation 1") {
		t.Errorf("Multi with an empty operation: %v", err)
	}
	if _, found := get(t, s, "a"); found {
		t.Error("a refused transaction wrote")
	}
}

// TestSchemaCreated: New creates a missing database.
func TestSchemaCreated(t *testing.T) {
	db := adminDB(t)
	schema := "outrigger_mysqltest_" + randomSuffix(t)
	t.Cleanup(func() { _, _ = db.Exec("DROP DATABASE IF EXISTS `" + schema + "`") })
	s, _, err := mysql.New(map[string]string{"connectionString": dsn(), "schemaName": schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustSet(t, s, state.SetRequest{Key: "k", Value: []byte("v")})
	if rowCount(t, db, "`"+schema+"`.`state`", "k") != 1 {
		t.Error("the row is not in the default table of the new database")
	}
	// A second store on the same table finds it and shares it.
	s2, _, err := mysql.New(map[string]string{"connectionString": dsn(), "schemaName": schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if it, found := get(t, s2, "k"); !found || string(it.Value) != "v" {
		t.Errorf("second store: %q %v", it.Value, found)
	}
}

// TestDaprTable: a table of Dapr's MySQL layout is refused with a clear
// error, not written into wrongly.
func TestDaprTable(t *testing.T) {
	db := adminDB(t)
	table := "daprlayout_" + randomSuffix(t)
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS `" + testSchema + "`.`" + table + "`") })
	if _, err := db.Exec("CREATE TABLE `" + testSchema + "`.`" + table + `` + "` (" + `
		id VARCHAR(255) NOT NULL PRIMARY KEY, value JSON NOT NULL, isbinary BOOLEAN NOT NULL,
		insertDate TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
		updateDate TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
		eTag VARCHAR(36) NOT NULL, expiredate TIMESTAMP NULL)`); err != nil {
		t.Fatal(err)
	}
	s, _, err := mysql.New(map[string]string{"connectionString": dsn(), "schemaName": testSchema, "tableName": table})
	if err == nil {
		_ = s.Close()
		t.Fatal("New accepted a table of Dapr's layout")
	}
	if !strings.Contains(err.Error(), "isbinary") {
		t.Errorf("New: %v", err)
	}
}

// TestLargeValue: a value past the server's max_allowed_packet fails
// cleanly and leaves the store usable.
func TestLargeValue(t *testing.T) {
	s, _ := newStore(t, nil)
	db := adminDB(t)
	var maxPacket int
	if err := db.QueryRow("SELECT @@max_allowed_packet").Scan(&maxPacket); err != nil {
		t.Fatal(err)
	}
	if maxPacket < 4<<20 {
		t.Fatalf("max_allowed_packet is %d; the conformance suite needs room for 1 MiB values", maxPacket)
	}
	err := s.Set(t.Context(), state.SetRequest{Key: "huge", Value: make([]byte, maxPacket+1)})
	if err == nil {
		t.Error("a value larger than max_allowed_packet was accepted")
	}
	t.Logf("a value of max_allowed_packet+1 bytes: %v", err)
	mustSet(t, s, state.SetRequest{Key: "after", Value: []byte("ok")})
	if it, found := get(t, s, "after"); !found || string(it.Value) != "ok" {
		t.Errorf("after the refused value: %q %v", it.Value, found)
	}
}

// testCA returns a freshly made self-signed CA certificate, as PEM.
func testCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "statetest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestPEM: with a PEM the connection uses TLS, checked against it. The test
// server has no TLS, so the check is that New fails for that reason.
func TestPEM(t *testing.T) {
	var have string
	if err := adminDB(t).QueryRow("SELECT @@have_ssl").Scan(&have); err != nil {
		t.Fatal(err)
	}
	if have == "YES" {
		t.Skip("the server has TLS; this test expects one without")
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte(testCA(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, meta := range []map[string]string{
		{"connectionString": withParam(dsn(), "tls=custom"), "pemPath": ca},
		{"connectionString": dsn(), "pemContents": testCA(t)},
	} {
		meta["schemaName"], meta["timeoutInSeconds"] = testSchema, "5"
		s, _, err := mysql.New(meta)
		if err == nil {
			_ = s.Close()
			t.Fatal("New connected without TLS to a server without TLS")
		}
		if !strings.Contains(err.Error(), "TLS") {
			t.Errorf("New: %v, want a TLS error", err)
		}
	}
}

// Package postgresql is the state.postgresql state store: items live in one
// PostgreSQL table, reached through a pgx connection pool. It serves the
// component type at version v1 and, with the same table layout and
// behaviour, at version v2.
//
// Each item is one row. The value is kept as bytes (BYTEA), so any value
// reads back exactly as written; when those bytes are a JSON document that
// PostgreSQL can hold, a copy goes to the JSONB column value_json as well,
// and that copy is what queries filter and sort on. Every write gives the
// row a new random UUID as its ETag, and each conditional write is a single
// statement whose WHERE clause makes the ETag or first-write check, so the
// check and the write are atomic.
//
// Rows whose time to live has passed are invisible at once and deleted by a
// background goroutine every cleanupInterval. Multi runs in one database
// transaction, rolled back at the first failing operation. Query translates
// the state query API's filters, sorts and pages into one SELECT, with every
// value and every JSON path passed as a bind parameter.
//
// The table is created at New when it is missing (the schema of a
// schema-qualified tableName must exist). The layout is this package's own,
// not Dapr's: a table Dapr's state.postgresql made is refused at New rather
// than misread.
package postgresql

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this store implements, at versions v1 and v2.
const Type = "state.postgresql"

// Metadata is the store's component metadata.
type Metadata struct {
	// ConnectionString is a PostgreSQL connection string, as a URL
	// (postgres://user@host:5432/db?sslmode=disable) or as key=value pairs.
	// Required.
	ConnectionString string `meta:"connectionString" required:"true"`
	// TableName is the table holding the state, optionally
	// schema-qualified ("schema.table"). Folded to lower case, as
	// PostgreSQL folds unquoted names.
	TableName string `meta:"tableName" default:"state"`
	// MetadataTableName is accepted for compatibility with Dapr's
	// component and checked like TableName; the store keeps no metadata
	// table.
	MetadataTableName string `meta:"metadataTableName" default:"dapr_metadata"`
	// Timeout bounds each operation on the database (a whole Multi
	// included).
	Timeout time.Duration `meta:"timeout" default:"20s"`
	// CleanupInterval is how often expired rows are deleted; zero or
	// negative disables the cleanup (expired rows stay invisible).
	CleanupInterval time.Duration `meta:"cleanupInterval" default:"1h"`
	// MaxConns bounds the pool; zero leaves pgx's default (the
	// connection string's pool_max_conns, else the greater of 4 and the
	// number of CPUs).
	MaxConns int `meta:"maxConns"`
	// ConnectionMaxIdleTime closes connections idle that long; zero
	// leaves pgx's default (30 minutes).
	ConnectionMaxIdleTime time.Duration `meta:"connectionMaxIdleTime"`
	// QueryExecMode is pgx's default query execution mode:
	// cache_statement (pgx's default), cache_describe, describe_exec, exec
	// or simple_protocol. The last two suit connection poolers such as
	// PgBouncer in transaction mode.
	QueryExecMode string `meta:"queryExecMode"`
}

// queryExecModes are the accepted values of queryExecMode.
var queryExecModes = map[string]pgx.QueryExecMode{
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
}

// identifier is a name PostgreSQL takes unquoted: a letter or underscore,
// then letters, digits and underscores, at most 63 bytes.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Validate checks m.
func (m *Metadata) Validate() error {
	var errs []error
	if m.ConnectionString == "" {
		errs = append(errs, errors.New("metadata connectionString: required"))
	}
	if _, err := splitTableName(m.TableName); err != nil {
		errs = append(errs, fmt.Errorf("metadata tableName %q: %w", m.TableName, err))
	}
	if _, err := splitTableName(m.MetadataTableName); err != nil {
		errs = append(errs, fmt.Errorf("metadata metadataTableName %q: %w", m.MetadataTableName, err))
	}
	if m.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("metadata timeout %v: must be positive", m.Timeout))
	}
	if m.MaxConns < 0 || m.MaxConns > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("metadata maxConns %d: must be between 0 and %d", m.MaxConns, math.MaxInt32))
	}
	if m.ConnectionMaxIdleTime < 0 {
		errs = append(errs, fmt.Errorf("metadata connectionMaxIdleTime %v: must not be negative", m.ConnectionMaxIdleTime))
	}
	if _, ok := queryExecModes[strings.ToLower(m.QueryExecMode)]; !ok && m.QueryExecMode != "" {
		errs = append(errs, fmt.Errorf("metadata queryExecMode %q: want cache_statement, cache_describe, describe_exec, exec or simple_protocol", m.QueryExecMode))
	}
	return errors.Join(errs...)
}

// splitTableName checks a table name, table or schema.table, and returns
// its parts, lower-cased.
func splitTableName(name string) (pgx.Identifier, error) {
	if name == "" {
		return nil, errors.New("must not be empty")
	}
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return nil, errors.New("want table or schema.table")
	}
	for _, p := range parts {
		if !identifier.MatchString(p) {
			return nil, fmt.Errorf("%q is not a plain SQL identifier (a letter or _, then letters, digits or _, at most 63)", p)
		}
	}
	return pgx.Identifier(strings.Split(strings.ToLower(name), ".")), nil
}

// Store is a state store over one PostgreSQL table. It is safe for
// concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	table   string // the table, quoted for SQL
	timeout time.Duration

	stopCleanup context.CancelFunc
	cleanupDone sync.WaitGroup
	closeOnce   sync.Once

	// Statements, made once for the table.
	sqlGet, sqlUpsert, sqlCreate, sqlUpdate, sqlDelete, sqlDeleteIf, sqlCleanup string
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
	_ state.Querier       = (*Store)(nil)
)

// New builds a store from its component metadata: it connects, creates the
// table if missing and starts the cleanup of expired rows. unknown lists
// the keys it does not read.
func New(meta map[string]string) (*Store, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, unknown, fmt.Errorf("state/postgresql: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, unknown, fmt.Errorf("state/postgresql: %w", err)
	}
	s, err := open(m)
	if err != nil {
		return nil, unknown, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.Timeout)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, unknown, fmt.Errorf("state/postgresql: connecting: %w", err)
	}
	if err := s.ensureTable(ctx); err != nil {
		s.pool.Close()
		return nil, unknown, err
	}
	s.startCleanup(m.CleanupInterval)
	return s, unknown, nil
}

// open makes the pool (which connects lazily) and the statements of a
// store for valid metadata m, without touching the database.
func open(m Metadata) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(m.ConnectionString)
	if err != nil {
		// pgconn redacts the password from its parse errors.
		return nil, fmt.Errorf("state/postgresql: metadata connectionString: %w", err)
	}
	if m.MaxConns > 0 {
		cfg.MaxConns = int32(m.MaxConns)
	}
	if m.ConnectionMaxIdleTime > 0 {
		cfg.MaxConnIdleTime = m.ConnectionMaxIdleTime
	}
	if m.QueryExecMode != "" {
		cfg.ConnConfig.DefaultQueryExecMode = queryExecModes[strings.ToLower(m.QueryExecMode)]
	}
	ident, err := splitTableName(m.TableName)
	if err != nil {
		return nil, fmt.Errorf("state/postgresql: metadata tableName %q: %w", m.TableName, err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("state/postgresql: %w", err)
	}
	s := &Store{pool: pool, table: ident.Sanitize(), timeout: m.Timeout}
	s.prepareSQL()
	return s, nil
}

// notExpired is the condition of a live row.
const notExpired = `(expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP)`

// expiry is the expiredate of a write: $4 is the time to live in
// microseconds, NULL for none.
const expiry = `CURRENT_TIMESTAMP + $4::bigint * interval '1 microsecond'`

func (s *Store) prepareSQL() {
	t := s.table
	s.sqlGet = `SELECT value, etag::text, expiredate FROM ` + t + ` WHERE key = $1 AND ` + notExpired
	// An expired row still in the table counts as absent: replacing it is
	// an insert (new insert_date), and a first write may replace it.
	upsert := `INSERT INTO ` + t + ` AS s (key, value, value_json, etag, expiredate)
		VALUES ($1, $2, $3::jsonb, gen_random_uuid(), ` + expiry + `)
		ON CONFLICT (key) DO UPDATE SET
			value = EXCLUDED.value, value_json = EXCLUDED.value_json,
			etag = EXCLUDED.etag, expiredate = EXCLUDED.expiredate,
			insert_date = CASE WHEN s.expiredate <= CURRENT_TIMESTAMP THEN CURRENT_TIMESTAMP ELSE s.insert_date END,
			update_date = CASE WHEN s.expiredate <= CURRENT_TIMESTAMP THEN NULL ELSE CURRENT_TIMESTAMP END`
	s.sqlUpsert = upsert
	s.sqlCreate = upsert + ` WHERE s.expiredate IS NOT NULL AND s.expiredate <= CURRENT_TIMESTAMP`
	s.sqlUpdate = `UPDATE ` + t + ` SET value = $2, value_json = $3::jsonb, etag = gen_random_uuid(),
			expiredate = ` + expiry + `, update_date = CURRENT_TIMESTAMP
		WHERE key = $1 AND etag = $5::uuid AND ` + notExpired
	s.sqlDelete = `DELETE FROM ` + t + ` WHERE key = $1`
	s.sqlDeleteIf = `DELETE FROM ` + t + ` WHERE key = $1 AND etag = $2::uuid AND ` + notExpired
	s.sqlCleanup = `DELETE FROM ` + t + ` WHERE expiredate IS NOT NULL AND expiredate <= CURRENT_TIMESTAMP`
}

// columns are the table's columns and their types, as format_type spells
// them.
var columns = map[string]string{
	"key":         "text",
	"value":       "bytea",
	"value_json":  "jsonb",
	"etag":        "uuid",
	"insert_date": "timestamp with time zone",
	"update_date": "timestamp with time zone",
	"expiredate":  "timestamp with time zone",
}

// ensureTable creates the table and its expiry index if missing, under an
// advisory lock so that sidecars starting together do not race, and checks
// that an existing table has this store's layout.
func (s *Store) ensureTable(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("state/postgresql: creating table %s: %w", s.table, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	h := fnv.New64a()
	h.Write([]byte("outrigger state.postgresql " + s.table))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::bigint)`, int64(h.Sum64())); err != nil {
		return fmt.Errorf("state/postgresql: creating table %s: %w", s.table, err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1::text) IS NOT NULL`, s.table).Scan(&exists); err != nil {
		return fmt.Errorf("state/postgresql: looking for table %s: %w", s.table, err)
	}
	// An existing table is used as it is, so that a role without the
	// right to create tables can use one made for it.
	if !exists {
		stmts := []string{
			`CREATE TABLE ` + s.table + ` (
				key text NOT NULL PRIMARY KEY,
				value bytea NOT NULL,
				value_json jsonb NULL,
				etag uuid NOT NULL,
				insert_date timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
				update_date timestamptz NULL,
				expiredate timestamptz NULL
			)`,
			// Unnamed: PostgreSQL picks a free name (table_expiredate_idx).
			`CREATE INDEX ON ` + s.table + ` (expiredate) WHERE expiredate IS NOT NULL`,
		}
		for _, stmt := range stmts {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("state/postgresql: creating table %s: %w", s.table, err)
			}
		}
	}
	rows, err := tx.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped`, s.table)
	if err != nil {
		return fmt.Errorf("state/postgresql: reading the columns of %s: %w", s.table, err)
	}
	found := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return fmt.Errorf("state/postgresql: reading the columns of %s: %w", s.table, err)
		}
		found[name] = typ
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state/postgresql: reading the columns of %s: %w", s.table, err)
	}
	var wrong []string
	for name, want := range columns {
		if got := found[name]; got != want {
			wrong = append(wrong, fmt.Sprintf("%s %s (found %q)", name, want, got))
		}
	}
	slices.Sort(wrong)
	if len(wrong) > 0 {
		return fmt.Errorf("state/postgresql: table %s exists with another layout (one made by Dapr's state.postgresql?); it needs the columns %s", s.table, strings.Join(wrong, ", "))
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("state/postgresql: creating table %s: %w", s.table, err)
	}
	return nil
}

// startCleanup starts the goroutine deleting expired rows every interval;
// a zero or negative interval starts none.
func (s *Store) startCleanup(interval time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopCleanup = cancel
	if interval <= 0 {
		return
	}
	s.cleanupDone.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				// A failure (the database unreachable) is retried at the
				// next tick; expired rows are invisible meanwhile.
				_, _ = s.cleanup(ctx)
			}
		}
	})
}

// cleanup deletes the expired rows and returns how many it deleted.
func (s *Store) cleanup(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx, s.sqlCleanup)
	if err != nil {
		return 0, fmt.Errorf("state/postgresql: deleting expired rows: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Features implements state.Store.
func (s *Store) Features() state.Features {
	return state.Features{Transactional: true, TTL: true, Query: true}
}

// Get implements state.Store.
func (s *Store) Get(ctx context.Context, req state.GetRequest) (state.Item, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var (
		it      state.Item
		expires *time.Time
	)
	err := s.pool.QueryRow(ctx, s.sqlGet, req.Key).Scan(&it.Value, &it.ETag, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return state.Item{}, false, nil
	}
	if err != nil {
		return state.Item{}, false, fmt.Errorf("state/postgresql: get %q: %w", req.Key, err)
	}
	if it.Value == nil {
		it.Value = []byte{}
	}
	if expires != nil {
		it.Expires = *expires
	}
	return it, true, nil
}

// Set implements state.Store.
func (s *Store) Set(ctx context.Context, req state.SetRequest) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.set(ctx, s.pool, req)
}

// Delete implements state.Store.
func (s *Store) Delete(ctx context.Context, req state.DeleteRequest) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.delete(ctx, s.pool, req)
}

// Multi implements state.Transactional: the operations run in order in one
// transaction, which the first failing one rolls back.
func (s *Store) Multi(ctx context.Context, ops []state.Operation) error {
	if len(ops) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("state/postgresql: beginning a transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for i, op := range ops {
		var err error
		switch {
		case op.Set != nil && op.Delete == nil:
			err = s.set(ctx, tx, *op.Set)
		case op.Delete != nil && op.Set == nil:
			err = s.delete(ctx, tx, *op.Delete)
		default:
			err = errors.New("an operation needs exactly one of set and delete")
		}
		if err != nil {
			return errors.Join(fmt.Errorf("state/postgresql: operation %d failed; the transaction was rolled back", i), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("state/postgresql: committing the transaction: %w", err)
	}
	return nil
}

// execer is what set and delete run their statement on: the pool or a
// transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func (s *Store) set(ctx context.Context, db execer, req state.SetRequest) error {
	value := req.Value
	if value == nil {
		value = []byte{}
	}
	var ttl *int64
	if req.TTL > 0 {
		us := int64((req.TTL + time.Microsecond - 1) / time.Microsecond)
		ttl = &us
	}
	js := queryableJSON(value)
	var (
		tag pgconn.CommandTag
		err error
	)
	switch {
	case req.ETag != nil:
		if !validETag(*req.ETag) {
			return state.ETagInvalid(req.Key, *req.ETag)
		}
		tag, err = db.Exec(ctx, s.sqlUpdate, req.Key, value, js, ttl, *req.ETag)
	case req.FirstWrite:
		tag, err = db.Exec(ctx, s.sqlCreate, req.Key, value, js, ttl)
	default:
		tag, err = db.Exec(ctx, s.sqlUpsert, req.Key, value, js, ttl)
	}
	if err != nil {
		return fmt.Errorf("state/postgresql: set %q: %w", req.Key, err)
	}
	if tag.RowsAffected() == 0 {
		// Only the conditional statements can leave every row alone.
		return state.ETagMismatch(req.Key)
	}
	return nil
}

func (s *Store) delete(ctx context.Context, db execer, req state.DeleteRequest) error {
	if req.ETag == nil {
		if _, err := db.Exec(ctx, s.sqlDelete, req.Key); err != nil {
			return fmt.Errorf("state/postgresql: delete %q: %w", req.Key, err)
		}
		return nil
	}
	if !validETag(*req.ETag) {
		return state.ETagInvalid(req.Key, *req.ETag)
	}
	tag, err := db.Exec(ctx, s.sqlDeleteIf, req.Key, *req.ETag)
	if err != nil {
		return fmt.Errorf("state/postgresql: delete %q: %w", req.Key, err)
	}
	if tag.RowsAffected() == 0 {
		return state.ETagMismatch(req.Key)
	}
	return nil
}

// validETag reports whether etag can be one this store issued: a UUID in
// its canonical 8-4-4-4-12 hexadecimal form.
func validETag(etag string) bool {
	if len(etag) != 36 {
		return false
	}
	for i := range len(etag) {
		c := etag[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Close implements state.Store: it stops the cleanup and closes the pool.
// Calls after the first do nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stopCleanup != nil {
			s.stopCleanup()
		}
		s.cleanupDone.Wait()
		s.pool.Close()
	})
	return nil
}

// formatOffset and parseOffset are the query token: the offset of the
// next page, in decimal, as Dapr's PostgreSQL store makes it.
func formatOffset(n int64) string { return strconv.FormatInt(n, 10) }

func parseOffset(token string) (int64, error) {
	if token == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(token, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("state/postgresql: query token %q is not one this store issued", token)
	}
	return n, nil
}

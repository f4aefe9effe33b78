// Package mysql is the state.mysql state store: items in one table of a
// MySQL or MariaDB database, reached with database/sql and
// go-sql-driver/mysql. It reads Dapr's metadata names for its MySQL store,
// is transactional and honours TTLs; it answers no queries.
//
// The table (created, with its database, if missing) holds the key as
// VARBINARY(2048), so keys compare byte for byte: case-sensitive, trailing
// spaces significant, any UTF-8. Values are LONGBLOB, stored exactly as
// given. Each write stores a new random UUID as the ETag, in the same
// statement as the write, and every conditional write is one statement whose
// condition the database checks under the row lock:
//
//   - with an ETag: UPDATE (or DELETE) ... WHERE id = ? AND eTag = ? and the
//     row has not expired; no row affected is a mismatch;
//   - first-write: a plain INSERT, a duplicate key being a mismatch (an
//     expired row in the way is deleted first);
//   - otherwise: INSERT ... ON DUPLICATE KEY UPDATE.
//
// Expiry is kept in expiredate, computed by the server from its own clock.
// Reads and conditional writes ignore expired rows, and a goroutine deletes
// them every cleanupIntervalInSeconds. Multi runs its operations in one
// transaction, rolled back at the first that fails. Operations that lose an
// InnoDB deadlock are retried (a deadlock rolls back the whole statement or
// transaction, so a retry is safe).
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/outrigger/outrigger/building-blocks/state"
)

// Type is the component type this store implements, version v1.
const Type = "state.mysql"

const (
	// maxKeyBytes is the size of the id column. A longer key is refused
	// rather than left to the server, which outside strict mode would
	// truncate it.
	maxKeyBytes = 2048
	// cleanupBatch bounds the rows one cleanup statement deletes, so the
	// cleanup never holds many locks at once.
	cleanupBatch = 1000
	// deadlockRetries is how many times an operation that lost a deadlock
	// is run again.
	deadlockRetries = 3
)

// MySQL error numbers the store tells apart.
const (
	errDupEntry = 1062 // ER_DUP_ENTRY
	errDeadlock = 1213 // ER_LOCK_DEADLOCK
)

// maxExpiry is the last instant a TIMESTAMP column holds on every supported
// server. A TTL reaching past it is refused, as a server outside strict mode
// would store a zero date, which reads as already expired.
var maxExpiry = time.Date(2038, time.January, 19, 3, 14, 7, 0, time.UTC)

// Store is a MySQL state store. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	table   string // `schema`.`table`, quoted
	timeout time.Duration
	log     *slog.Logger

	stop      context.CancelFunc // stops the cleanup; nil without one
	done      chan struct{}      // closed when the cleanup has stopped
	closeOnce sync.Once
	closeErr  error
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
)

// New builds a store from its component metadata: it connects, creates the
// database and the table if they are missing, checks the table's columns
// and starts the cleanup of expired rows. unknown lists the keys it does
// not read.
func New(meta map[string]string) (*Store, []string, error) {
	m, unknown, err := decodeMetadata(meta)
	if err != nil {
		return nil, unknown, fmt.Errorf("state.mysql: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, unknown, fmt.Errorf("state.mysql: %w", err)
	}
	cfg, err := m.driverConfig()
	if err != nil {
		return nil, unknown, fmt.Errorf("state.mysql: %w", err)
	}
	connector, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, unknown, fmt.Errorf("state.mysql: metadata connectionString: %w", err)
	}
	db := sql.OpenDB(connector)
	if m.MaxIdleConns > 0 {
		db.SetMaxIdleConns(m.MaxIdleConns)
	}
	if m.MaxOpenConns > 0 {
		db.SetMaxOpenConns(m.MaxOpenConns)
	}
	if m.ConnMaxLifetime > 0 {
		db.SetConnMaxLifetime(m.ConnMaxLifetime)
	}
	if m.ConnMaxIdleTime > 0 {
		db.SetConnMaxIdleTime(m.ConnMaxIdleTime)
	}
	s := &Store{
		db:      db,
		table:   quote(m.SchemaName) + "." + quote(m.TableName),
		timeout: m.timeout(),
		log:     slog.Default().With("component", Type, "table", m.SchemaName+"."+m.TableName),
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := s.setup(ctx, m.SchemaName, m.TableName); err != nil {
		_ = db.Close()
		return nil, unknown, fmt.Errorf("state.mysql: %w", err)
	}
	if every := m.cleanupEvery(); every > 0 {
		ctx, stop := context.WithCancel(context.Background())
		s.stop, s.done = stop, make(chan struct{})
		go s.cleanupLoop(ctx, every)
	}
	return s, unknown, nil
}

// quote quotes an identifier validIdentifier accepted.
func quote(id string) string { return "`" + id + "`" }

// setup checks the connection and creates the database and the table if
// they are missing. It looks before creating, so a user without the CREATE
// privilege can use a table made for it.
func (s *Store) setup(ctx context.Context, schema, table string) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?`, schema).Scan(&n); err != nil {
		return fmt.Errorf("looking for database %s: %w", schema, err)
	}
	if n == 0 {
		if _, err := s.db.ExecContext(ctx, `CREATE DATABASE IF NOT EXISTS `+quote(schema)); err != nil {
			return fmt.Errorf("creating database %s: %w", schema, err)
		}
	}
	if err := s.db.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?`, schema, table).Scan(&n); err != nil {
		return fmt.Errorf("looking for table %s.%s: %w", schema, table, err)
	}
	if n == 0 {
		// The key is binary so that it compares byte for byte: a _bin
		// collation would still pad (`a` = `a `). 2048 bytes hold 512
		// four-byte characters and fit InnoDB's 3072-byte index limit.
		if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.table+` (
	id VARBINARY(2048) NOT NULL,
	value LONGBLOB NOT NULL,
	eTag VARCHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	insertDate TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	updateDate TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
	expiredate TIMESTAMP(6) NULL DEFAULT NULL,
	PRIMARY KEY (id),
	INDEX expiredate_idx (expiredate)
) ENGINE=InnoDB`); err != nil {
			return fmt.Errorf("creating table %s.%s: %w", schema, table, err)
		}
	}
	return s.checkColumns(ctx, schema, table)
}

// checkColumns refuses a table the store cannot work with, such as one
// Dapr's own MySQL store created (a JSON value and an isbinary flag).
func (s *Store) checkColumns(ctx context.Context, schema, table string) error {
	rows, err := s.db.QueryContext(ctx,
		`SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?`, schema, table)
	if err != nil {
		return fmt.Errorf("reading the columns of %s.%s: %w", schema, table, err)
	}
	defer rows.Close()
	cols := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return fmt.Errorf("reading the columns of %s.%s: %w", schema, table, err)
		}
		cols[strings.ToLower(name)] = strings.ToLower(typ)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the columns of %s.%s: %w", schema, table, err)
	}
	if _, ok := cols["isbinary"]; ok {
		return fmt.Errorf("table %s.%s has the layout of Dapr's MySQL store (a JSON value and isbinary), which this store does not use: name a new table in tableName", schema, table)
	}
	want := []struct {
		col   string
		types []string
	}{
		{"id", []string{"varbinary"}},
		{"value", []string{"longblob"}},
		{"etag", []string{"varchar", "char"}},
		{"insertdate", []string{"timestamp", "datetime"}},
		{"updatedate", []string{"timestamp", "datetime"}},
		{"expiredate", []string{"timestamp", "datetime"}},
	}
	var errs []error
	for _, w := range want {
		typ, ok := cols[w.col]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("table %s.%s has no column %s", schema, table, w.col))
		case !slices.Contains(w.types, typ):
			errs = append(errs, fmt.Errorf("table %s.%s: column %s is %s, want %s", schema, table, w.col, typ, strings.Join(w.types, " or ")))
		}
	}
	return errors.Join(errs...)
}

// Features implements state.Store.
func (s *Store) Features() state.Features {
	return state.Features{Transactional: true, TTL: true}
}

// Get implements state.Store. Consistency is always strong: there is one
// primary.
func (s *Store) Get(ctx context.Context, req state.GetRequest) (state.Item, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var (
		value   []byte
		etag    string
		expires sql.NullString
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT value, eTag, UNIX_TIMESTAMP(expiredate) FROM `+s.table+` WHERE id = ? AND `+live,
		req.Key).Scan(&value, &etag, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return state.Item{}, false, nil
	}
	if err != nil {
		return state.Item{}, false, fmt.Errorf("state.mysql: get %q: %w", req.Key, err)
	}
	if value == nil {
		value = []byte{}
	}
	it := state.Item{Value: value, ETag: etag}
	if expires.Valid {
		t, err := parseUnix(expires.String)
		if err != nil {
			return state.Item{}, false, fmt.Errorf("state.mysql: get %q: expiredate: %w", req.Key, err)
		}
		it.Expires = t
	}
	return it, true, nil
}

// live is the condition of a row that has not expired.
const live = `(expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP(6))`

// parseUnix reads UNIX_TIMESTAMP's decimal seconds, such as
// "1712345678.123456", without going through a float.
func parseUnix(s string) (time.Time, error) {
	secStr, fracStr, _ := strings.Cut(s, ".")
	secs, err := strconv.ParseInt(secStr, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad timestamp %q", s)
	}
	var nanos int64
	if fracStr != "" {
		if len(fracStr) > 9 {
			fracStr = fracStr[:9]
		}
		nanos, err = strconv.ParseInt(fracStr+strings.Repeat("0", 9-len(fracStr)), 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("bad timestamp %q", s)
		}
	}
	return time.Unix(secs, nanos).UTC(), nil
}

// Set implements state.Store.
func (s *Store) Set(ctx context.Context, req state.SetRequest) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return retryDeadlock(func() error { return s.set(ctx, s.db, req) })
}

// Delete implements state.Store.
func (s *Store) Delete(ctx context.Context, req state.DeleteRequest) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return retryDeadlock(func() error { return s.delete(ctx, s.db, req) })
}

// Multi implements state.Transactional: the operations run in order in one
// transaction, each seeing what the earlier ones did, and the transaction
// is rolled back at the first that fails.
func (s *Store) Multi(ctx context.Context, ops []state.Operation) error {
	for i, op := range ops {
		if (op.Set == nil) == (op.Delete == nil) {
			return fmt.Errorf("state.mysql: operation %d: needs exactly one of set and delete", i)
		}
	}
	if len(ops) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return retryDeadlock(func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("state.mysql: transaction: %w", err)
		}
		for i, op := range ops {
			if op.Set != nil {
				err = s.set(ctx, tx, *op.Set)
			} else {
				err = s.delete(ctx, tx, *op.Delete)
			}
			if err != nil {
				_ = tx.Rollback()
				return errors.Join(fmt.Errorf("state.mysql: operation %d failed; the transaction was rolled back", i), err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("state.mysql: transaction: commit: %w", err)
		}
		return nil
	})
}

// execer is what set and delete need of a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// set writes req, with the ETag rules of state.Store, in one statement
// (two or three for a first-write over an expired row).
func (s *Store) set(ctx context.Context, ex execer, req state.SetRequest) error {
	if err := checkKey(req.Key); err != nil {
		return err
	}
	if req.ETag != nil && !validETag(*req.ETag) {
		return state.ETagInvalid(req.Key, *req.ETag)
	}
	expiry, args, err := expiryOf(req.TTL)
	if err != nil {
		return fmt.Errorf("state.mysql: set %q: %w", req.Key, err)
	}
	value := req.Value
	if value == nil {
		value = []byte{} // nil would be NULL
	}
	etag := newETag()
	switch {
	case req.ETag != nil:
		res, err := ex.ExecContext(ctx,
			`UPDATE `+s.table+` SET value = ?, eTag = ?, expiredate = `+expiry+` WHERE id = ? AND eTag = ? AND `+live,
			append(append([]any{value, etag}, args...), req.Key, *req.ETag)...)
		if err != nil {
			return fmt.Errorf("state.mysql: set %q: %w", req.Key, err)
		}
		return mustAffect(res, req.Key)
	case req.FirstWrite:
		insert := `INSERT INTO ` + s.table + ` (id, value, eTag, expiredate) VALUES (?, ?, ?, ` + expiry + `)`
		insertArgs := append([]any{req.Key, value, etag}, args...)
		_, err := ex.ExecContext(ctx, insert, insertArgs...)
		if isError(err, errDupEntry) {
			// The row in the way may have expired: then it is not there.
			res, derr := ex.ExecContext(ctx,
				`DELETE FROM `+s.table+` WHERE id = ? AND expiredate IS NOT NULL AND expiredate <= CURRENT_TIMESTAMP(6)`, req.Key)
			if derr != nil {
				return fmt.Errorf("state.mysql: set %q: %w", req.Key, derr)
			}
			if n, derr := res.RowsAffected(); derr != nil || n == 0 {
				return state.ETagMismatch(req.Key)
			}
			_, err = ex.ExecContext(ctx, insert, insertArgs...)
		}
		if isError(err, errDupEntry) {
			return state.ETagMismatch(req.Key)
		}
		if err != nil {
			return fmt.Errorf("state.mysql: set %q: %w", req.Key, err)
		}
		return nil
	default:
		_, err := ex.ExecContext(ctx,
			`INSERT INTO `+s.table+` (id, value, eTag, expiredate) VALUES (?, ?, ?, `+expiry+`)
ON DUPLICATE KEY UPDATE value = VALUES(value), eTag = VALUES(eTag), expiredate = VALUES(expiredate)`,
			append([]any{req.Key, value, etag}, args...)...)
		if err != nil {
			return fmt.Errorf("state.mysql: set %q: %w", req.Key, err)
		}
		return nil
	}
}

// delete removes req.Key, with the ETag rules of state.Store.
func (s *Store) delete(ctx context.Context, ex execer, req state.DeleteRequest) error {
	if err := checkKey(req.Key); err != nil {
		return err
	}
	if req.ETag == nil {
		if _, err := ex.ExecContext(ctx, `DELETE FROM `+s.table+` WHERE id = ?`, req.Key); err != nil {
			return fmt.Errorf("state.mysql: delete %q: %w", req.Key, err)
		}
		return nil
	}
	if !validETag(*req.ETag) {
		return state.ETagInvalid(req.Key, *req.ETag)
	}
	res, err := ex.ExecContext(ctx,
		`DELETE FROM `+s.table+` WHERE id = ? AND eTag = ? AND `+live, req.Key, *req.ETag)
	if err != nil {
		return fmt.Errorf("state.mysql: delete %q: %w", req.Key, err)
	}
	return mustAffect(res, req.Key)
}

// mustAffect turns a conditional write that changed no row into a mismatch.
// Every write of a row changes its ETag, so a matched row is always a
// changed one, whatever the connection's clientFoundRows.
func mustAffect(res sql.Result, key string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("state.mysql: %q: %w", key, err)
	}
	if n == 0 {
		return state.ETagMismatch(key)
	}
	return nil
}

// expiryOf is the SQL of the expiredate a write with ttl stores, and its
// arguments: the server adds the TTL to its own clock.
func expiryOf(ttl time.Duration) (string, []any, error) {
	if ttl <= 0 {
		return "NULL", nil, nil
	}
	if time.Now().Add(ttl).After(maxExpiry) {
		return "", nil, fmt.Errorf("ttl %v ends after %s, the last time a TIMESTAMP column holds", ttl, maxExpiry.Format(time.RFC3339))
	}
	micros := (ttl + time.Microsecond - 1) / time.Microsecond // at least 1µs
	return `TIMESTAMPADD(MICROSECOND, ?, CURRENT_TIMESTAMP(6))`, []any{int64(micros)}, nil
}

// checkKey refuses a key longer than the id column.
func checkKey(key string) error {
	if len(key) > maxKeyBytes {
		return fmt.Errorf("state.mysql: key of %d bytes: the store holds keys of up to %d bytes", len(key), maxKeyBytes)
	}
	return nil
}

// newETag returns a random (version 4) UUID.
func newETag() string { return uuid.NewString() }

// validETag reports whether e has the shape of an ETag the store issues (a
// lower-case UUID); anything else it could never have issued.
func validETag(e string) bool {
	if len(e) != 36 {
		return false
	}
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// isError reports whether err is the MySQL error number.
func isError(err error, number uint16) bool {
	var me *driver.MySQLError
	return errors.As(err, &me) && me.Number == number
}

// retryDeadlock runs f, again when it lost an InnoDB deadlock (which rolled
// back everything it did).
func retryDeadlock(f func() error) error {
	var err error
	for range deadlockRetries + 1 {
		if err = f(); !isError(err, errDeadlock) {
			return err
		}
	}
	return err
}

// cleanupLoop deletes expired rows every interval until ctx ends.
func (s *Store) cleanupLoop(ctx context.Context, every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.deleteExpired(ctx); err != nil {
				if ctx.Err() == nil {
					s.log.Warn("deleting expired state", "deleted", n, "error", err)
				}
			} else if n > 0 {
				s.log.Debug("deleted expired state", "deleted", n)
			}
		}
	}
}

// deleteExpired deletes the expired rows, a batch at a time, and returns how
// many it deleted.
func (s *Store) deleteExpired(ctx context.Context) (int64, error) {
	var total int64
	for {
		bctx, cancel := context.WithTimeout(ctx, s.timeout)
		res, err := s.db.ExecContext(bctx,
			`DELETE FROM `+s.table+` WHERE expiredate IS NOT NULL AND expiredate <= CURRENT_TIMESTAMP(6) LIMIT `+strconv.Itoa(cleanupBatch))
		cancel()
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < cleanupBatch {
			return total, nil
		}
	}
}

// Close implements state.Store: it stops the cleanup and closes the
// database handle. Later calls return the first one's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			s.stop()
			<-s.done
		}
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

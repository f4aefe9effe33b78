// Package sqlite is the state.sqlite state store: items live in one table of
// a SQLite database (a local file, or memory), through the pure-Go driver
// modernc.org/sqlite. It is transactional, honours TTLs and answers queries
// over JSON values with SQLite's JSON functions.
//
// Durability: the database runs in WAL mode (unless disableWAL) with
// synchronous=FULL, and every write is committed before Set, Delete or Multi
// returns, so an acknowledged write survives a crash of the process or of
// the machine. Writers of one store take turns in the process (SQLite has
// one writer at a time anyway); readers proceed while a write is under way.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"modernc.org/sqlite" // also the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/config/metadata"
)

// Type is the component type this store implements, version v1.
const Type = "state.sqlite"

// maxConns bounds the connections of a file database: one writes at a
// time, the others read.
const maxConns = 8

// cleanupBatch is how many expired rows one cleanup statement deletes, so
// the cleanup never holds the write lock for long.
const cleanupBatch = 1000

// Store keeps items in a SQLite table. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	table   string // quoted
	timeout time.Duration
	now     func() time.Time

	// wlock serialises the store's writes: a writer holds it for its
	// statement or transaction, waiting for it under the operation's
	// deadline rather than in SQLite's busy handler.
	wlock chan struct{}

	stopCleanup context.CancelFunc
	cleanupDone chan struct{}
	closeOnce   sync.Once
	closeErr    error
	closed      chan struct{}

	q queries
}

// queries are the store's SQL statements, with its table name in.
type queries struct {
	get, upsert, create, update, deleteAny, deleteIf, purge string
}

var (
	_ state.Store         = (*Store)(nil)
	_ state.Transactional = (*Store)(nil)
	_ state.Querier       = (*Store)(nil)
)

// New builds a store from its component metadata: it opens the database,
// creates the table when missing and starts the cleanup of expired rows.
// unknown lists the keys it does not read.
func New(meta map[string]string) (*Store, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, unknown, fmt.Errorf("state/sqlite: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, unknown, fmt.Errorf("state/sqlite: %w", err)
	}
	s, err := open(m, time.Now)
	if err != nil {
		return nil, unknown, err
	}
	return s, unknown, nil
}

// open opens the database m describes; now is the store's clock.
func open(m Metadata, now func() time.Time) (*Store, error) {
	dsn, single, err := m.dsn()
	if err != nil {
		return nil, fmt.Errorf("state/sqlite: %w", err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("state/sqlite: open: %w", err)
	}
	// One connection until the database is known to be a file.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	ctx, cancel := context.WithTimeout(context.Background(), m.Timeout)
	defer cancel()
	fail := func(err error) (*Store, error) {
		_ = db.Close()
		return nil, fmt.Errorf("state/sqlite: %w", err)
	}
	var file string
	// The first connection runs the connection string's pragmas; switching
	// a new file to WAL takes an exclusive lock, and SQLite answers
	// SQLITE_BUSY at once, without its busy timeout, when another opener of
	// the same file (another sidecar of `outrigger run`) holds a lock then.
	// That race is retried until the open's timeout.
	for {
		err := db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file)
		if err == nil {
			break
		}
		if !isBusy(err) || ctx.Err() != nil {
			return fail(fmt.Errorf("open %s: %w", m.ConnectionString, err))
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("open %s: %w", m.ConnectionString, err))
		case <-time.After(10 * time.Millisecond):
		}
	}
	if file != "" && !single {
		db.SetMaxOpenConns(maxConns)
		db.SetMaxIdleConns(maxConns)
		if !m.DisableWAL {
			// journal_mode(WAL) does not fail where WAL is impossible; it
			// leaves the mode as it was.
			var mode string
			if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
				return fail(err)
			}
			if mode != "wal" {
				return fail(fmt.Errorf("%s: journal mode is %q, not wal; set disableWAL to use the rollback journal", file, mode))
			}
		}
	}

	table := `"` + m.TableName + `"`
	notExpired := "(expiration_time IS NULL OR expiration_time > ?)"
	s := &Store{
		db:      db,
		table:   table,
		timeout: m.Timeout,
		now:     now,
		wlock:   make(chan struct{}, 1),
		closed:  make(chan struct{}),
		q: queries{
			get: "SELECT value, etag, expiration_time FROM " + table + " WHERE key = ? AND " + notExpired,
			upsert: "INSERT INTO " + table + " (key, value, etag, expiration_time) VALUES (?, ?, ?, ?)" +
				" ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag, expiration_time = excluded.expiration_time",
			// A create may replace an expired row, which no reader sees.
			create: "INSERT INTO " + table + " (key, value, etag, expiration_time) VALUES (?, ?, ?, ?)" +
				" ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag, expiration_time = excluded.expiration_time" +
				" WHERE " + table + ".expiration_time IS NOT NULL AND " + table + ".expiration_time <= ?",
			update:    "UPDATE " + table + " SET value = ?, etag = ?, expiration_time = ? WHERE key = ? AND etag = ? AND " + notExpired,
			deleteAny: "DELETE FROM " + table + " WHERE key = ?",
			deleteIf:  "DELETE FROM " + table + " WHERE key = ? AND etag = ? AND " + notExpired,
			purge: "DELETE FROM " + table + " WHERE key IN (SELECT key FROM " + table +
				" WHERE expiration_time <= ? LIMIT " + strconv.Itoa(cleanupBatch) + ")",
		},
	}
	if err := s.migrate(ctx, m.TableName); err != nil {
		return fail(err)
	}
	if m.CleanupInterval > 0 {
		cctx, stop := context.WithCancel(context.Background())
		s.stopCleanup = stop
		s.cleanupDone = make(chan struct{})
		go s.cleanupLoop(cctx, m.CleanupInterval)
	}
	return s, nil
}

// isBusy says whether err is SQLite's SQLITE_BUSY (any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// columns is the schema of the state table, in order.
var columns = []string{"key", "value", "etag", "expiration_time"}

// migrate creates the table and its index when missing, and refuses a
// table of the same name with another schema (such as one Dapr's
// state.sqlite created).
func (s *Store) migrate(ctx context.Context, name string) error {
	if err := s.lockWrite(ctx); err != nil {
		return err
	}
	defer s.unlockWrite()
	_, err := s.db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+s.table+` (
	key TEXT NOT NULL PRIMARY KEY,
	value BLOB NOT NULL,
	etag TEXT NOT NULL,
	expiration_time INTEGER
)`)
	if err != nil {
		return fmt.Errorf("create table %s: %w", s.table, err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT name FROM pragma_table_info(?) ORDER BY cid", name)
	if err != nil {
		return fmt.Errorf("read the schema of table %s: %w", s.table, err)
	}
	var got []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return err
		}
		got = append(got, c)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if !slices.Equal(got, columns) {
		return fmt.Errorf("table %s exists with columns %v, not %v: use another tableName", s.table, got, columns)
	}
	// A partial index: rows without a TTL cost nothing, and the cleanup
	// finds expired rows without scanning the table.
	_, err = s.db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS "`+name+`_expiration_time" ON `+s.table+
		" (expiration_time) WHERE expiration_time IS NOT NULL")
	if err != nil {
		return fmt.Errorf("create the expiration index of table %s: %w", s.table, err)
	}
	return nil
}

// Features implements state.Store.
func (s *Store) Features() state.Features {
	return state.Features{Transactional: true, TTL: true, Query: true}
}

// Get implements state.Store. An expired row is not found, whether or not
// the cleanup has deleted it yet.
func (s *Store) Get(ctx context.Context, req state.GetRequest) (state.Item, bool, error) {
	if s.isClosed() {
		return state.Item{}, false, errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var (
		it      state.Item
		expires sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, s.q.get, req.Key, s.now().UnixMilli()).Scan(&it.Value, &it.ETag, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return state.Item{}, false, nil
	}
	if err != nil {
		return state.Item{}, false, fmt.Errorf("state/sqlite: get %q: %w", req.Key, err)
	}
	if it.Value == nil {
		it.Value = []byte{}
	}
	if expires.Valid {
		it.Expires = time.UnixMilli(expires.Int64)
	}
	return it, true, nil
}

// Set implements state.Store: the ETag or first-write check and the write
// are one statement.
func (s *Store) Set(ctx context.Context, req state.SetRequest) error {
	if s.isClosed() {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.lockWrite(ctx); err != nil {
		return fmt.Errorf("state/sqlite: set %q: %w", req.Key, err)
	}
	defer s.unlockWrite()
	return s.set(ctx, s.db, req)
}

// Delete implements state.Store. FirstWrite has no meaning for a delete
// without an ETag, which always succeeds.
func (s *Store) Delete(ctx context.Context, req state.DeleteRequest) error {
	if s.isClosed() {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.lockWrite(ctx); err != nil {
		return fmt.Errorf("state/sqlite: delete %q: %w", req.Key, err)
	}
	defer s.unlockWrite()
	return s.delete(ctx, s.db, req)
}

// Multi implements state.Transactional: the operations run in one
// transaction (BEGIN IMMEDIATE), each check seeing the earlier operations'
// writes, and the transaction commits only when all succeed.
func (s *Store) Multi(ctx context.Context, ops []state.Operation) error {
	if s.isClosed() {
		return errClosed
	}
	for i, op := range ops {
		if (op.Set == nil) == (op.Delete == nil) {
			return fmt.Errorf("state/sqlite: operation %d: needs exactly one of set and delete", i)
		}
	}
	if len(ops) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.lockWrite(ctx); err != nil {
		return fmt.Errorf("state/sqlite: transaction: %w", err)
	}
	defer s.unlockWrite()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state/sqlite: begin transaction: %w", err)
	}
	for i, op := range ops {
		if op.Set != nil {
			err = s.set(ctx, tx, *op.Set)
		} else {
			err = s.delete(ctx, tx, *op.Delete)
		}
		if err != nil {
			_ = tx.Rollback()
			return errors.Join(fmt.Errorf("state/sqlite: operation %d failed; the transaction was rolled back", i), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state/sqlite: commit: %w", err)
	}
	return nil
}

// execer is what set and delete write through: the database or a
// transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (s *Store) set(ctx context.Context, ex execer, req state.SetRequest) error {
	if req.ETag != nil && !validETag(*req.ETag) {
		return state.ETagInvalid(req.Key, *req.ETag)
	}
	now := s.now()
	var expires sql.NullInt64
	if req.TTL > 0 {
		expires = sql.NullInt64{Int64: now.Add(req.TTL).UnixMilli(), Valid: true}
	}
	value := req.Value
	if value == nil {
		value = []byte{}
	}
	etag := newETag()
	var (
		res sql.Result
		err error
	)
	switch {
	case req.ETag != nil:
		res, err = ex.ExecContext(ctx, s.q.update, value, etag, expires, req.Key, *req.ETag, now.UnixMilli())
	case req.FirstWrite:
		res, err = ex.ExecContext(ctx, s.q.create, req.Key, value, etag, expires, now.UnixMilli())
	default:
		_, err = ex.ExecContext(ctx, s.q.upsert, req.Key, value, etag, expires)
	}
	if err != nil {
		return fmt.Errorf("state/sqlite: set %q: %w", req.Key, err)
	}
	return checkOne(res, req.Key)
}

func (s *Store) delete(ctx context.Context, ex execer, req state.DeleteRequest) error {
	if req.ETag == nil {
		if _, err := ex.ExecContext(ctx, s.q.deleteAny, req.Key); err != nil {
			return fmt.Errorf("state/sqlite: delete %q: %w", req.Key, err)
		}
		return nil
	}
	if !validETag(*req.ETag) {
		return state.ETagInvalid(req.Key, *req.ETag)
	}
	res, err := ex.ExecContext(ctx, s.q.deleteIf, req.Key, *req.ETag, s.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("state/sqlite: delete %q: %w", req.Key, err)
	}
	return checkOne(res, req.Key)
}

// checkOne turns a conditional write that changed no row into an ETag
// mismatch; res is nil for an unconditional write.
func checkOne(res sql.Result, key string) error {
	if res == nil {
		return nil
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("state/sqlite: write %q: %w", key, err)
	}
	if n != 1 {
		return state.ETagMismatch(key)
	}
	return nil
}

// newETag is a fresh ETag: 128 random bits in hex.
func newETag() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// validETag reports whether the store could have issued etag.
func validETag(etag string) bool {
	if len(etag) != 32 {
		return false
	}
	for i := range len(etag) {
		c := etag[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// lockWrite waits for the store's write turn, or for ctx to end.
func (s *Store) lockWrite(ctx context.Context) error {
	select {
	case s.wlock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s *Store) unlockWrite() { <-s.wlock }

// cleanupLoop deletes expired rows every interval until ctx ends.
func (s *Store) cleanupLoop(ctx context.Context, interval time.Duration) {
	defer close(s.cleanupDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// A failed cleanup is retried at the next tick; expired rows
			// are invisible meanwhile.
			_, _ = s.purgeExpired(ctx)
		}
	}
}

// purgeExpired deletes the rows expired by now, a batch at a time, and
// returns how many it deleted.
func (s *Store) purgeExpired(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := s.purgeBatch(ctx)
		total += n
		if err != nil || n < cleanupBatch {
			return total, err
		}
	}
}

func (s *Store) purgeBatch(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.lockWrite(ctx); err != nil {
		return 0, err
	}
	defer s.unlockWrite()
	res, err := s.db.ExecContext(ctx, s.q.purge, s.now().UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Close implements state.Store: it stops the cleanup and closes the
// database. Calling it again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.stopCleanup != nil {
			s.stopCleanup()
			<-s.cleanupDone
		}
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

var errClosed = errors.New("state/sqlite: the store is closed")

package sqlite

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Metadata is the store's component metadata, with Dapr's names for its
// state.sqlite component.
type Metadata struct {
	// ConnectionString is a file path, a "file:" URI with SQLite URI
	// options, or ":memory:".
	ConnectionString string `meta:"connectionString" required:"true"`
	// TableName is the table items live in; created when missing.
	TableName string `meta:"tableName" default:"state"`
	// MetadataTableName is accepted for compatibility with Dapr's
	// component and validated, but this store keeps no metadata table.
	MetadataTableName string `meta:"metadataTableName" default:"metadata"`
	// Timeout bounds each operation (a transaction is one operation).
	Timeout time.Duration `meta:"timeout" default:"20s"`
	// BusyTimeout is how long SQLite waits for a lock another connection
	// (usually another process) holds before failing with SQLITE_BUSY.
	BusyTimeout time.Duration `meta:"busyTimeout" default:"2s"`
	// CleanupInterval is how often expired rows are deleted; zero or
	// negative disables the cleanup.
	CleanupInterval time.Duration `meta:"cleanupInterval" default:"1h"`
	// DisableWAL uses SQLite's rollback journal instead of write-ahead
	// logging, for a database on a network file system.
	DisableWAL bool `meta:"disableWAL" default:"false"`
}

// Validate checks the metadata after decoding: the connection string is
// present and leaves to the store the options it sets itself, the table
// names are plain identifiers and the timeouts make sense.
func (m Metadata) Validate() error {
	var errs []error
	if _, _, err := m.dsn(); err != nil {
		errs = append(errs, err)
	}
	if err := validIdentifier(m.TableName); err != nil {
		errs = append(errs, fmt.Errorf("metadata tableName %q: %w", m.TableName, err))
	}
	if err := validIdentifier(m.MetadataTableName); err != nil {
		errs = append(errs, fmt.Errorf("metadata metadataTableName %q: %w", m.MetadataTableName, err))
	}
	if m.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("metadata timeout %v: must be positive", m.Timeout))
	}
	if m.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("metadata busyTimeout %v: must not be negative", m.BusyTimeout))
	}
	return errors.Join(errs...)
}

// validIdentifier accepts a name made only of ASCII letters, digits and
// underscores, which is safe to quote into SQL, and not one SQLite keeps
// for itself.
func validIdentifier(name string) error {
	if name == "" {
		return errors.New("must not be empty")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return errors.New("may hold only letters, digits and underscores")
		}
	}
	if strings.HasPrefix(strings.ToLower(name), "sqlite_") {
		return errors.New(`names starting with "sqlite_" are reserved by SQLite`)
	}
	return nil
}

// reservedParams are the driver's DSN options and pragmas the store sets
// from its own metadata, or that would break it; a connection string
// setting them is refused rather than silently overridden.
var reservedParams = map[string]string{
	"_busy_timeout": "metadata busyTimeout instead",
	"_timeout":      "metadata busyTimeout instead",
	"busy_timeout":  "metadata busyTimeout instead",
	"_journal_mode": "metadata disableWAL instead",
	"_journal":      "metadata disableWAL instead",
	"journal_mode":  "metadata disableWAL instead",
	"_synchronous":  "nothing: the store always uses FULL",
	"_sync":         "nothing: the store always uses FULL",
	"synchronous":   "nothing: the store always uses FULL",
	"_txlock":       "nothing: the store always uses immediate",
	"_query_only":   "nothing: the store writes",
	"query_only":    "nothing: the store writes",
	"locking_mode":  "nothing: the store needs NORMAL",
}

// dsn is the data source name the driver opens: the connection string as a
// "file:" URI with the store's pragmas added. single reports a database
// that only one connection may use: an in-memory one (each connection would
// see its own) or a shared-cache one (whose table locks fail readers and
// writers with SQLITE_LOCKED, which the busy timeout does not cover).
func (m Metadata) dsn() (dsn string, single bool, err error) {
	var memory bool
	cs := strings.TrimSpace(m.ConnectionString)
	var base, query string
	switch {
	case cs == "":
		return "", false, errors.New("metadata connectionString: required")
	case cs == ":memory:":
		base, memory = "file::memory:", true
	case strings.HasPrefix(cs, "file:"):
		if strings.Contains(cs, "#") {
			return "", false, errors.New("metadata connectionString: a URI fragment (#) is not supported")
		}
		base, query, _ = strings.Cut(cs, "?")
		q, err := url.ParseQuery(query)
		if err != nil {
			return "", false, fmt.Errorf("metadata connectionString: bad URI options: %w", err)
		}
		for k, vs := range q {
			lk := strings.ToLower(k)
			if lk == "_pragma" {
				for _, v := range vs {
					name := strings.ToLower(strings.TrimSpace(v))
					if i := strings.IndexAny(name, "(= "); i >= 0 {
						name = name[:i]
					}
					if i := strings.LastIndexByte(name, '.'); i >= 0 {
						name = name[i+1:]
					}
					if by, ok := reservedParams[name]; ok {
						return "", false, fmt.Errorf("metadata connectionString: _pragma=%s is refused; use %s", v, by)
					}
				}
				continue
			}
			if by, ok := reservedParams[lk]; ok {
				return "", false, fmt.Errorf("metadata connectionString: option %s is refused; use %s", k, by)
			}
			if lk == "cache" && len(vs) > 0 && strings.EqualFold(vs[len(vs)-1], "shared") {
				single = true
			}
			if lk == "mode" && len(vs) > 0 && strings.EqualFold(vs[len(vs)-1], "memory") {
				memory = true
			}
			if lk == "mode" && len(vs) > 0 && strings.EqualFold(vs[len(vs)-1], "ro") {
				return "", false, errors.New("metadata connectionString: a read-only database (mode=ro) is not supported")
			}
			if lk == "immutable" {
				return "", false, errors.New("metadata connectionString: an immutable database is not supported")
			}
		}
		if strings.HasPrefix(base, "file::memory:") {
			memory = true
		}
	default:
		// A plain path: SQLite would read '?', '#' and '%' in a URI, so the
		// path is escaped into one.
		p := cs
		if filepath.IsAbs(p) {
			p = filepath.Clean(p)
		}
		base = "file:" + (&url.URL{Path: filepath.ToSlash(p)}).EscapedPath()
	}
	journal := "WAL"
	if m.DisableWAL || memory {
		journal = "DELETE"
		if memory {
			journal = "MEMORY"
		}
	}
	busy := m.BusyTimeout.Milliseconds()
	if m.BusyTimeout > 0 && busy == 0 {
		busy = 1
	}
	params := []string{
		"_pragma=" + url.QueryEscape("busy_timeout("+strconv.FormatInt(busy, 10)+")"),
		"_pragma=" + url.QueryEscape("journal_mode("+journal+")"),
		"_pragma=" + url.QueryEscape("synchronous(FULL)"),
		"_txlock=immediate",
	}
	if query != "" {
		params = append([]string{query}, params...)
	}
	return base + "?" + strings.Join(params, "&"), single || memory, nil
}

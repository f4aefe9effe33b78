package mysql

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/outrigger/outrigger/config/metadata"
)

// Metadata is the store's component metadata, with the names of Dapr's
// state.mysql.
type Metadata struct {
	// ConnectionString is a go-sql-driver/mysql DSN, such as
	// "user:password@tcp(host:3306)/?allowNativePasswords=true". Required.
	// Its database, if any, is not used: the table lives in SchemaName.
	ConnectionString string `meta:"connectionString" required:"true"`
	// SchemaName is the database (schema) holding the table; it is created
	// if missing.
	SchemaName string `meta:"schemaName" default:"dapr_state_store"`
	// TableName is the state table; it is created if missing.
	TableName string `meta:"tableName" default:"state"`
	// MetadataTableName is accepted, and validated, for compatibility with
	// Dapr, which keeps its last cleanup time there; this store creates no
	// such table.
	MetadataTableName string `meta:"metadataTableName" default:"dapr_metadata"`
	// TimeoutInSeconds bounds every database operation, and New's setup; a
	// value of zero or less means the default, as in Dapr.
	TimeoutInSeconds int `meta:"timeoutInSeconds" default:"20"`
	// CleanupIntervalInSeconds is how often expired rows are deleted; zero
	// or less disables the cleanup.
	CleanupIntervalInSeconds int `meta:"cleanupIntervalInSeconds" default:"3600"`
	// CleanupInterval is the same as a duration, the name Dapr's code reads;
	// when set it overrides CleanupIntervalInSeconds (zero or less
	// disables).
	CleanupInterval time.Duration `meta:"cleanupInterval"`
	// PemPath is a PEM file of the certificate authorities the server's
	// certificate is checked against: the connection then uses TLS.
	PemPath string `meta:"pemPath"`
	// PemContents is the same PEM, inline (for a secret reference).
	PemContents string `meta:"pemContents"`
	// MaxIdleConns, MaxOpenConns, ConnMaxLifetime and ConnMaxIdleTime size
	// the connection pool (database/sql's settings); zero keeps
	// database/sql's default.
	MaxIdleConns    int           `meta:"maxIdleConns"`
	MaxOpenConns    int           `meta:"maxOpenConns"`
	ConnMaxLifetime time.Duration `meta:"connMaxLifetime"`
	ConnMaxIdleTime time.Duration `meta:"connMaxIdleTime"`

	// cleanupIntervalSet records that CleanupInterval was given, so that an
	// explicit 0 disables the cleanup rather than meaning "absent".
	cleanupIntervalSet bool
}

// Defaults that apply when a value is out of range rather than absent.
const (
	defaultTimeout = 20 * time.Second
	// maxIdentifier is MySQL's limit on database and table names.
	maxIdentifier = 64
)

// decodeMetadata decodes meta into a Metadata, returning the keys it does not
// read.
func decodeMetadata(meta map[string]string) (Metadata, []string, error) {
	var m Metadata
	unknown, err := metadata.Decode(meta, &m)
	for k, v := range meta {
		if strings.EqualFold(k, "cleanupInterval") && v != "" {
			m.cleanupIntervalSet = true
		}
	}
	return m, unknown, err
}

// Validate checks the metadata beyond what Decode does: the names that go
// into SQL must be plain identifiers, the pool settings must not be
// negative, and at most one PEM source may be given.
func (m Metadata) Validate() error {
	var errs []error
	if strings.TrimSpace(m.ConnectionString) == "" {
		errs = append(errs, errors.New("metadata connectionString: required"))
	}
	for _, id := range []struct{ key, value string }{
		{"schemaName", m.SchemaName},
		{"tableName", m.TableName},
		{"metadataTableName", m.MetadataTableName},
	} {
		if err := validIdentifier(id.value); err != nil {
			errs = append(errs, fmt.Errorf("metadata %s %q: %w", id.key, id.value, err))
		}
	}
	if m.MaxIdleConns < 0 {
		errs = append(errs, fmt.Errorf("metadata maxIdleConns %d: must not be negative", m.MaxIdleConns))
	}
	if m.MaxOpenConns < 0 {
		errs = append(errs, fmt.Errorf("metadata maxOpenConns %d: must not be negative", m.MaxOpenConns))
	}
	if m.ConnMaxLifetime < 0 {
		errs = append(errs, fmt.Errorf("metadata connMaxLifetime %v: must not be negative", m.ConnMaxLifetime))
	}
	if m.ConnMaxIdleTime < 0 {
		errs = append(errs, fmt.Errorf("metadata connMaxIdleTime %v: must not be negative", m.ConnMaxIdleTime))
	}
	if m.PemPath != "" && m.PemContents != "" {
		errs = append(errs, errors.New("metadata pemPath and pemContents: give one, not both"))
	}
	return errors.Join(errs...)
}

// validIdentifier accepts names made of ASCII letters, digits and
// underscores, at most 64 of them: they are quoted into SQL, so nothing else
// may pass.
func validIdentifier(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if len(s) > maxIdentifier {
		return fmt.Errorf("longer than %d characters", maxIdentifier)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return errors.New("only letters, digits and underscores are allowed")
		}
	}
	return nil
}

// timeout is the bound of one operation.
func (m Metadata) timeout() time.Duration {
	if m.TimeoutInSeconds <= 0 {
		return defaultTimeout
	}
	return time.Duration(m.TimeoutInSeconds) * time.Second
}

// cleanupEvery is the interval of the expired-row cleanup; zero when it is
// disabled.
func (m Metadata) cleanupEvery() time.Duration {
	d := time.Duration(m.CleanupIntervalInSeconds) * time.Second
	if m.cleanupIntervalSet || m.CleanupInterval != 0 {
		d = m.CleanupInterval
	}
	return max(d, 0)
}

// driverConfig parses the connection string, applying the PEM, if any, as
// the TLS configuration, and a UTC session time zone unless the string sets
// one. Errors never quote the connection string: it may hold a password.
func (m Metadata) driverConfig() (*driver.Config, error) {
	dsn := m.ConnectionString
	var roots *x509.CertPool
	if m.PemPath != "" || m.PemContents != "" {
		pemData := []byte(m.PemContents)
		if m.PemPath != "" {
			b, err := os.ReadFile(m.PemPath)
			if err != nil {
				return nil, fmt.Errorf("metadata pemPath: %w", err)
			}
			pemData = b
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemData) {
			return nil, errors.New("metadata pemPath/pemContents: no PEM certificate found")
		}
		// Dapr registers the PEM as the driver's TLS config "custom", which
		// the connection string names with tls=custom. Here it applies to
		// this store's connections only; tls=custom or no tls parameter
		// both mean it.
		var tlsParam string
		dsn, tlsParam = cutParam(dsn, "tls")
		if tlsParam != "" && tlsParam != "custom" {
			return nil, fmt.Errorf("metadata connectionString: tls=%s contradicts pemPath/pemContents (use tls=custom, or no tls parameter)", tlsParam)
		}
	} else if _, tlsParam := cutParam(dsn, "tls"); tlsParam == "custom" {
		return nil, errors.New("metadata connectionString: tls=custom needs pemPath or pemContents")
	}
	cfg, err := driver.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("metadata connectionString: %w", err)
	}
	if roots != nil {
		host, _, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			host = cfg.Addr
		}
		cfg.TLS = &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if _, ok := cfg.Params["time_zone"]; !ok {
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		// Expiry times are compared and converted in the session's time
		// zone; UTC has no daylight-saving hour to repeat.
		cfg.Params["time_zone"] = "'+00:00'"
	}
	return cfg, nil
}

// cutParam removes every key=value parameter named key from a DSN's query
// string, returning the DSN without them and the last value.
func cutParam(dsn, key string) (rest, value string) {
	slash := strings.LastIndexByte(dsn, '/')
	if slash < 0 {
		return dsn, ""
	}
	q := strings.IndexByte(dsn[slash:], '?')
	if q < 0 {
		return dsn, ""
	}
	q += slash
	var kept []string
	for p := range strings.SplitSeq(dsn[q+1:], "&") {
		k, v, _ := strings.Cut(p, "=")
		if k == key {
			value = v
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == 0 {
		return dsn[:q], value
	}
	return dsn[:q+1] + strings.Join(kept, "&"), value
}

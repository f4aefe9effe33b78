package rabbitmq

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Metadata is the broker's component metadata, with the names of Dapr's
// RabbitMQ pub/sub. Where this broker's default differs from Dapr's, it is
// the one at-least-once delivery needs (durable queues that outlive their
// consumers, persistent messages, publisher confirms, requeue on failure).
type Metadata struct {
	// ConnectionString is the AMQP URI of the server, such as
	// amqp://guest:guest@localhost:5672/ (amqps:// for TLS). When empty,
	// the URI is built from Protocol, Hostname, Username and Password.
	ConnectionString string `meta:"connectionString"`
	// Host is Dapr's deprecated spelling of connectionString. A value
	// without a scheme is read as hostname instead.
	Host string `meta:"host"`
	// Protocol is amqp or amqps; with a connection string it must match the
	// URI's scheme.
	Protocol string `meta:"protocol"`
	// Hostname is the server, host or host:port; localhost when unset.
	Hostname string `meta:"hostname"`
	// Username and Password authenticate with PLAIN; ignored when a
	// connection string is given (it carries its own).
	Username string `meta:"username"`
	Password string `meta:"password"`
	// ConsumerID, when set, replaces the subscription's group (the app id)
	// as the prefix of queue names.
	ConsumerID string `meta:"consumerID"`
	// Durable declares the queues durable.
	Durable bool `meta:"durable" default:"true"`
	// DeletedWhenUnused declares the queues auto-delete: RabbitMQ deletes a
	// queue, and the messages in it, when its last consumer goes away.
	DeletedWhenUnused bool `meta:"deletedWhenUnused" default:"false"`
	// AutoAck has RabbitMQ consider a message delivered as soon as it sends
	// it: a failed handler or a lost connection then loses the message.
	AutoAck bool `meta:"autoAck" default:"false"`
	// DeliveryMode is the messages' delivery mode: 2 persistent, 0 or 1
	// transient.
	DeliveryMode int `meta:"deliveryMode" default:"2"`
	// RequeueInFailure requeues a message whose handler failed; false drops
	// it (or dead-letters it, with enableDeadLetter).
	RequeueInFailure bool `meta:"requeueInFailure" default:"true"`
	// PrefetchCount is the most unacknowledged messages RabbitMQ sends a
	// consumer; 0 is the subscription's handler concurrency.
	PrefetchCount int `meta:"prefetchCount" default:"0"`
	// ReconnectWait is the pause before reconnecting after the connection
	// is lost, and between failed attempts.
	ReconnectWait time.Duration `meta:"reconnectWait" default:"3s"`
	// ReconnectWaitSeconds is Dapr's name of ReconnectWait; when set it
	// takes its place.
	ReconnectWaitSeconds time.Duration `meta:"reconnectWaitSeconds"`
	// ConcurrencyMode is parallel (handlers run concurrently, up to the
	// subscription's MaxInFlight) or single (one at a time).
	ConcurrencyMode string `meta:"concurrencyMode" default:"parallel"`
	// EnableDeadLetter gives each queue a dead-letter exchange dlx-<queue>
	// bound to a queue dlq-<queue>, where RabbitMQ moves the messages it
	// drops from the queue (rejected without requeue, expired, overflowed).
	EnableDeadLetter bool `meta:"enableDeadLetter" default:"false"`
	// MaxLen and MaxLenBytes bound each queue (and dead-letter queue), in
	// messages and in bytes of bodies; 0 is no bound. RabbitMQ drops (or
	// dead-letters) the oldest messages past the bound.
	MaxLen      int64 `meta:"maxLen"`
	MaxLenBytes int64 `meta:"maxLenBytes"`
	// ExchangeKind is the kind of the topics' exchanges: fanout, topic,
	// direct or headers.
	ExchangeKind string `meta:"exchangeKind" default:"fanout"`
	// PublisherConfirm has Publish wait for the server's confirm.
	PublisherConfirm bool `meta:"publisherConfirm" default:"true"`
	// SaslExternal authenticates with SASL EXTERNAL (the client
	// certificate) instead of a username and password.
	SaslExternal bool `meta:"saslExternal" default:"false"`
	// CACert, ClientCert and ClientKey are PEM: the authority the server's
	// certificate is checked against (the system's roots when empty), and
	// the client's certificate and key for mutual TLS. They need amqps.
	CACert     string `meta:"caCert"`
	ClientCert string `meta:"clientCert"`
	ClientKey  string `meta:"clientKey"`
	// ClientName names the connection in RabbitMQ's management tools.
	ClientName string `meta:"clientName"`
	// HeartBeat is the connection's heartbeat interval; under a second is
	// the server's.
	HeartBeat time.Duration `meta:"heartBeat" default:"10s"`
	// TTLInSeconds is the time to live of messages published without an
	// expiry; 0 is none.
	TTLInSeconds int `meta:"ttlInSeconds"`
}

// Concurrency modes.
const (
	concurrencyParallel = "parallel"
	concurrencySingle   = "single"
)

// Validate checks m.
func (m *Metadata) Validate() error {
	var errs []error
	if _, err := m.uri(); err != nil {
		errs = append(errs, err)
	}
	if m.DeliveryMode < 0 || m.DeliveryMode > 2 {
		errs = append(errs, fmt.Errorf("metadata deliveryMode %d: want 0, 1 (transient) or 2 (persistent)", m.DeliveryMode))
	}
	if m.PrefetchCount < 0 || m.PrefetchCount > 65535 {
		errs = append(errs, fmt.Errorf("metadata prefetchCount %d: want 0 to 65535", m.PrefetchCount))
	}
	if m.ReconnectWait <= 0 {
		errs = append(errs, fmt.Errorf("metadata reconnectWait %v: must be positive", m.ReconnectWait))
	}
	if m.ReconnectWaitSeconds < 0 {
		errs = append(errs, fmt.Errorf("metadata reconnectWaitSeconds %v: must not be negative", m.ReconnectWaitSeconds))
	}
	switch strings.ToLower(m.ConcurrencyMode) {
	case concurrencyParallel, concurrencySingle:
	default:
		errs = append(errs, fmt.Errorf("metadata concurrencyMode %q: want parallel or single", m.ConcurrencyMode))
	}
	if m.MaxLen < 0 {
		errs = append(errs, fmt.Errorf("metadata maxLen %d: must not be negative", m.MaxLen))
	}
	if m.MaxLenBytes < 0 {
		errs = append(errs, fmt.Errorf("metadata maxLenBytes %d: must not be negative", m.MaxLenBytes))
	}
	switch m.ExchangeKind {
	case amqp.ExchangeFanout, amqp.ExchangeTopic, amqp.ExchangeDirect, amqp.ExchangeHeaders:
	default:
		errs = append(errs, fmt.Errorf("metadata exchangeKind %q: want fanout, topic, direct or headers", m.ExchangeKind))
	}
	if m.HeartBeat < 0 {
		errs = append(errs, fmt.Errorf("metadata heartBeat %v: must not be negative", m.HeartBeat))
	}
	if m.TTLInSeconds < 0 {
		errs = append(errs, fmt.Errorf("metadata ttlInSeconds %d: must not be negative", m.TTLInSeconds))
	}
	if (m.ClientCert == "") != (m.ClientKey == "") {
		errs = append(errs, errors.New("metadata clientCert, clientKey: give both or neither"))
	}
	if m.SaslExternal && (m.CACert == "" || m.ClientCert == "" || m.ClientKey == "") {
		errs = append(errs, errors.New("metadata saslExternal: needs caCert, clientCert and clientKey"))
	}
	if _, err := m.tlsConfig(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// reconnectWait is the effective pause between connection attempts.
func (m *Metadata) reconnectWait() time.Duration {
	if m.ReconnectWaitSeconds > 0 {
		return m.ReconnectWaitSeconds
	}
	return m.ReconnectWait
}

// uri is the AMQP URI to dial, from connectionString (or a host with a
// scheme) or else from protocol, hostname, username and password.
func (m *Metadata) uri() (string, error) {
	conn, hostname := m.ConnectionString, m.Hostname
	if m.Host != "" {
		if strings.Contains(m.Host, "://") {
			if conn != "" && conn != m.Host {
				return "", errors.New("metadata host: a URI here is Dapr's deprecated connectionString; give only one of them")
			}
			conn = m.Host
		} else {
			if hostname != "" && hostname != m.Host {
				return "", errors.New("metadata host: a host name here is hostname; give only one of them")
			}
			hostname = m.Host
		}
	}
	protocol := strings.ToLower(m.Protocol)
	switch protocol {
	case "", "amqp", "amqps":
	default:
		return "", fmt.Errorf("metadata protocol %q: want amqp or amqps", m.Protocol)
	}
	if conn != "" {
		u, err := amqp.ParseURI(conn)
		if err != nil {
			return "", fmt.Errorf("metadata connectionString: not an AMQP URI (amqp://user:password@host:port/vhost): %w", err)
		}
		if protocol != "" && protocol != u.Scheme {
			return "", fmt.Errorf("metadata protocol %q: the connection string's scheme is %s", m.Protocol, u.Scheme)
		}
		return conn, nil
	}
	if protocol == "" {
		protocol = "amqp"
	}
	if hostname == "" {
		hostname = "localhost"
	}
	u := url.URL{Scheme: protocol, Host: hostname, Path: "/"}
	switch {
	case m.Username != "" && m.Password != "":
		u.User = url.UserPassword(m.Username, m.Password)
	case m.Username != "":
		u.User = url.User(m.Username)
	}
	if _, err := amqp.ParseURI(u.String()); err != nil {
		return "", fmt.Errorf("metadata hostname %q: %w", hostname, err)
	}
	return u.String(), nil
}

// tlsConfig is the TLS configuration the certificates describe, nil when
// none is given (an amqps URI then verifies against the system's roots).
func (m *Metadata) tlsConfig() (*tls.Config, error) {
	if m.CACert == "" && m.ClientCert == "" {
		return nil, nil
	}
	uri, err := m.uri()
	if err != nil {
		return nil, nil // reported by Validate already
	}
	u, _ := amqp.ParseURI(uri)
	if u.Scheme != "amqps" {
		return nil, errors.New("metadata caCert, clientCert: TLS needs the amqps protocol (an amqps:// connection string, or protocol amqps)")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Host}
	if u.ServerName != "" {
		c.ServerName = u.ServerName
	}
	if m.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(m.CACert)) {
			return nil, errors.New("metadata caCert: no PEM certificate in it")
		}
		c.RootCAs = pool
	}
	if m.ClientCert != "" && m.ClientKey != "" {
		cert, err := tls.X509KeyPair([]byte(m.ClientCert), []byte(m.ClientKey))
		if err != nil {
			return nil, fmt.Errorf("metadata clientCert, clientKey: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// address is host:port of uri, for messages (no credentials).
func address(uri string) string {
	u, err := amqp.ParseURI(uri)
	if err != nil {
		return "?"
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
}

// queueArgs are the arguments queues are declared with.
func (m *Metadata) queueArgs() amqp.Table {
	args := amqp.Table{}
	if m.MaxLen > 0 {
		args["x-max-length"] = m.MaxLen
	}
	if m.MaxLenBytes > 0 {
		args["x-max-length-bytes"] = m.MaxLenBytes
	}
	return args
}

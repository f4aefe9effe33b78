package mqtt3

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
)

// Metadata is the broker's component metadata, with the names of Dapr's
// MQTT3 pub/sub. Where a default differs from Dapr's, it is the one
// at-least-once delivery needs.
type Metadata struct {
	// URL is the MQTT server, scheme://[user[:password]@]host:port. The
	// schemes are tcp and mqtt (plain), ssl, tls, tcps and mqtts (TLS), ws
	// and wss (WebSocket). Required.
	URL string `meta:"url" required:"true"`
	// ConsumerID, when set, replaces the subscription's group (the app id)
	// as the shared subscription's group and the prefix of client ids.
	ConsumerID string `meta:"consumerID"`
	// QoS is the quality of service of publishes and subscriptions: 1 (at
	// least once) or 2 (exactly once between client and server). 0 is
	// refused: it cannot be at least once.
	QoS int `meta:"qos" default:"1"`
	// Retain publishes messages with the retain flag, so the server keeps
	// the last one of each topic for later (non-shared) subscribers.
	Retain bool `meta:"retain" default:"false"`
	// CleanSession connects subscribers with a clean session: the server
	// forgets a subscriber's session, and the unacknowledged messages in it,
	// when it disconnects.
	CleanSession bool `meta:"cleanSession" default:"false"`
	// CACert, ClientCert and ClientKey are PEM: the authority the server's
	// certificate is checked against (the system's roots when empty), and
	// the client's certificate and key for mutual TLS. They need a TLS
	// scheme.
	CACert     string `meta:"caCert"`
	ClientCert string `meta:"clientCert"`
	ClientKey  string `meta:"clientKey"`
	// BackOffMaxRetries is how many times a message whose handler failed
	// is retried in this process before it is dropped; -1 retries until
	// the handler succeeds.
	BackOffMaxRetries int `meta:"backOffMaxRetries" default:"-1"`
	// BackOffInitialInterval is the wait before the first retry; each
	// further retry waits twice as long, up to BackOffMaxInterval.
	BackOffInitialInterval time.Duration `meta:"backOffInitialInterval" default:"100ms"`
	BackOffMaxInterval     time.Duration `meta:"backOffMaxInterval" default:"5s"`
}

// schemes maps the URL schemes accepted to whether they use TLS.
var schemes = map[string]bool{
	"tcp": false, "mqtt": false, "ws": false,
	"ssl": true, "tls": true, "tcps": true, "mqtts": true, "wss": true,
}

// Validate checks m.
func (m *Metadata) Validate() error {
	var errs []error
	if err := m.checkURL(); err != nil {
		errs = append(errs, err)
	}
	if m.ConsumerID != "" {
		if err := checkGroup(m.ConsumerID); err != nil {
			errs = append(errs, fmt.Errorf("metadata consumerID %q: %w", m.ConsumerID, err))
		}
	}
	switch m.QoS {
	case 1, 2:
	case 0:
		errs = append(errs, errors.New("metadata qos 0: at most once cannot give at-least-once delivery; use 1 or 2"))
	default:
		errs = append(errs, fmt.Errorf("metadata qos %d: want 1 or 2", m.QoS))
	}
	if m.BackOffMaxRetries < -1 {
		errs = append(errs, fmt.Errorf("metadata backOffMaxRetries %d: want -1 (no limit) or more", m.BackOffMaxRetries))
	}
	if m.BackOffInitialInterval <= 0 {
		errs = append(errs, fmt.Errorf("metadata backOffInitialInterval %v: must be positive", m.BackOffInitialInterval))
	}
	if m.BackOffMaxInterval < m.BackOffInitialInterval {
		errs = append(errs, fmt.Errorf("metadata backOffMaxInterval %v: must not be below backOffInitialInterval %v", m.BackOffMaxInterval, m.BackOffInitialInterval))
	}
	if _, err := m.tlsConfig(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkURL checks the server URL.
func (m *Metadata) checkURL() error {
	if m.URL == "" {
		return errors.New("metadata url: required")
	}
	u, err := url.Parse(m.URL)
	if err != nil {
		// url's errors quote the URL, which may hold a password.
		return errors.New("metadata url: not a URL; want scheme://host:port, such as tcp://localhost:1883")
	}
	shown := u.Redacted()
	if _, ok := schemes[u.Scheme]; !ok {
		return fmt.Errorf("metadata url %q: scheme %q: want tcp, mqtt, ssl, tls, tcps, mqtts, ws or wss", shown, u.Scheme)
	}
	if u.Scheme == "ws" || u.Scheme == "wss" {
		if u.Hostname() == "" {
			return fmt.Errorf("metadata url %q: no host", shown)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" || !validPort(port) || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("metadata url %q: want %s://host:port, such as %s://localhost:1883", shown, u.Scheme, u.Scheme)
	}
	return nil
}

func validPort(p string) bool {
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n > 0
}

// tlsConfig is the TLS configuration m describes: nil for a plain scheme.
func (m *Metadata) tlsConfig() (*tls.Config, error) {
	secure := false
	if u, err := url.Parse(m.URL); err == nil {
		secure = schemes[u.Scheme]
	}
	if !secure {
		if m.CACert != "" || m.ClientCert != "" || m.ClientKey != "" {
			return nil, errors.New("metadata caCert, clientCert, clientKey: need a TLS scheme in url (ssl, tls, tcps, mqtts or wss)")
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if m.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(m.CACert)) {
			return nil, errors.New("metadata caCert: no PEM certificate in it")
		}
		cfg.RootCAs = pool
	}
	switch {
	case m.ClientCert != "" && m.ClientKey != "":
		cert, err := tls.X509KeyPair([]byte(m.ClientCert), []byte(m.ClientKey))
		if err != nil {
			return nil, fmt.Errorf("metadata clientCert, clientKey: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case m.ClientCert != "":
		return nil, errors.New("metadata clientCert: needs clientKey")
	case m.ClientKey != "":
		return nil, errors.New("metadata clientKey: needs clientCert")
	}
	return cfg, nil
}

// checkGroup checks a shared subscription's group name: a single topic
// level without wildcards.
func checkGroup(g string) error {
	if g == "" {
		return errors.New("empty")
	}
	if strings.ContainsAny(g, "/+#\x00") {
		return errors.New("must not contain /, +, # or NUL (it names an MQTT shared subscription)")
	}
	return nil
}

// checkTopicName checks a topic to publish to.
func checkTopicName(t string) error {
	switch {
	case t == "":
		return errors.New("pubsub/mqtt3: empty topic")
	case len(t) > 65535:
		return errors.New("pubsub/mqtt3: topic longer than 65535 bytes")
	case strings.ContainsAny(t, "+#\x00"):
		return fmt.Errorf("pubsub/mqtt3: topic %q: a topic to publish to must not contain +, # or NUL", t)
	}
	return nil
}

// checkTopicFilter checks a topic to subscribe to, which may hold the
// wildcards + (a whole level) and # (the last level).
func checkTopicFilter(t string) error {
	switch {
	case t == "":
		return errors.New("pubsub/mqtt3: empty topic")
	case len(t) > 65000:
		return errors.New("pubsub/mqtt3: topic too long")
	case strings.Contains(t, "\x00"):
		return fmt.Errorf("pubsub/mqtt3: topic %q contains NUL", t)
	case strings.HasPrefix(t, "$share/") || t == "$share":
		return fmt.Errorf("pubsub/mqtt3: topic %q: subscriptions are shared already; subscribe to the plain topic", t)
	}
	levels := strings.Split(t, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("pubsub/mqtt3: topic %q: # must be the whole last level", t)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("pubsub/mqtt3: topic %q: + must be a whole level", t)
		}
	}
	return nil
}

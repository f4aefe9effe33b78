package jetstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/outrigger/outrigger/config/metadata"
)

// Metadata is the broker's component metadata, with the names of Dapr's
// JetStream pub/sub (pubsub.jetstream).
type Metadata struct {
	// NatsURL is the server's URL, or several separated by commas.
	// Required.
	NatsURL string `meta:"natsURL" required:"true"`
	// Name is the connection's name, as the server's monitoring shows it.
	Name string `meta:"name" default:"outrigger - pubsub.jetstream"`
	// StreamName is the one stream every topic goes to; empty: the stream
	// whose subjects take the topic, else one stream per topic.
	StreamName string `meta:"streamName"`
	// DurableName replaces the group (the app id) in consumer names.
	DurableName string `meta:"durableName"`
	// QueueGroupName is accepted and unused: the subscribers of a group
	// share one pull consumer, which already makes them a queue.
	QueueGroupName string `meta:"queueGroupName"`
	// StartSequence makes a new consumer start at this stream sequence.
	StartSequence int64 `meta:"startSequence"`
	// StartTime makes a new consumer start at this time, in Unix seconds.
	StartTime int64 `meta:"startTime"`
	// DeliverAll makes a new consumer start at the stream's first message.
	DeliverAll bool `meta:"deliverAll" default:"false"`
	// FlowControl is accepted and unused: it applies to push consumers.
	FlowControl bool `meta:"flowControl" default:"false"`
	// AckWait is how long a delivered message may stay unacknowledged
	// before the server delivers it again.
	AckWait time.Duration `meta:"ackWait" default:"30s"`
	// MaxDeliver bounds how many times a message is delivered; 0 or -1 is
	// no bound.
	MaxDeliver int `meta:"maxDeliver"`
	// BackOff is the consumer's redelivery delays, by delivery.
	BackOff []string `meta:"backOff"`
	// MaxAckPending bounds a group's unacknowledged messages; 0 is the
	// server's default.
	MaxAckPending int `meta:"maxAckPending"`
	// Replicas of the streams the broker creates and of its consumers; 0
	// is the server's default.
	Replicas int `meta:"replicas"`
	// MemoryStorage keeps created streams and consumers in memory.
	MemoryStorage bool `meta:"memoryStorage" default:"false"`
	// RateLimit bounds each subscription's delivery, in bits per second
	// of payload; 0 is none.
	RateLimit int64 `meta:"rateLimit"`
	// Hearbeat (sic, the spelling of Dapr's documentation) is the idle
	// heartbeat of pull requests.
	Hearbeat time.Duration `meta:"hearbeat"`
	// Heartbeat is Hearbeat under the name Dapr's code reads.
	Heartbeat time.Duration `meta:"heartbeat"`
	// DeliverPolicy is where a new consumer starts: all, last, new,
	// sequence or time. Empty: from startSequence, startTime or
	// deliverAll, else new.
	DeliverPolicy string `meta:"deliverPolicy"`
	// AckPolicy must be explicit.
	AckPolicy string `meta:"ackPolicy" default:"explicit"`
	// Domain is the JetStream domain.
	Domain string `meta:"domain"`
	// APIPrefix is the JetStream API's subject prefix.
	APIPrefix string `meta:"apiPrefix"`
	// JWT is the user JWT of decentralized authentication, with SeedKey.
	JWT string `meta:"jwt"`
	// SeedKey is the user's NKey seed: with JWT, or alone for NKey
	// authentication.
	SeedKey string `meta:"seedKey"`
	// TLSClientCert is the client certificate: a file, or PEM.
	TLSClientCert string `meta:"tls_client_cert"`
	// TLSClientKey is the client certificate's key: a file, or PEM.
	TLSClientKey string `meta:"tls_client_key"`
	// Token is the authentication token.
	Token string `meta:"token"`

	// Set by Validate.
	deliverPolicy jetstream.DeliverPolicy
	optStartSeq   uint64
	optStartTime  *time.Time
	backOff       []time.Duration
	heartbeat     time.Duration
}

// Validate checks m and derives the settings New uses.
func (m *Metadata) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("metadata "+format, args...)) }

	if strings.TrimSpace(m.NatsURL) == "" {
		bad("natsURL: required")
	} else {
		for _, u := range strings.Split(m.NatsURL, ",") {
			if err := checkURL(strings.TrimSpace(u)); err != nil {
				bad("natsURL %q: %v", m.NatsURL, err)
				break
			}
		}
	}
	if m.StreamName != "" && strings.ContainsAny(m.StreamName, ".*>/\\ \t\r\n") {
		bad("streamName %q: a stream name may not contain '.', '*', '>', '/', '\\' or white space", m.StreamName)
	}

	// Where a new consumer starts.
	var implied []string
	if m.StartSequence < 0 {
		bad("startSequence %d: must not be negative", m.StartSequence)
	} else if m.StartSequence > 0 {
		implied = append(implied, "sequence")
	}
	if m.StartTime < 0 {
		bad("startTime %d: must not be negative (Unix seconds)", m.StartTime)
	} else if m.StartTime > 0 {
		implied = append(implied, "time")
	}
	if m.DeliverAll {
		implied = append(implied, "all")
	}
	policy := strings.ToLower(strings.TrimSpace(m.DeliverPolicy))
	switch {
	case len(implied) > 1:
		bad("startSequence, startTime and deliverAll: set at most one")
		if policy == "" {
			policy = implied[0]
		}
	case policy == "" && len(implied) == 1:
		policy = implied[0]
	case policy == "":
		policy = "new"
	case len(implied) == 1 && implied[0] != policy:
		bad("deliverPolicy %q: conflicts with %s", m.DeliverPolicy, map[string]string{
			"sequence": "startSequence (deliverPolicy sequence)",
			"time":     "startTime (deliverPolicy time)",
			"all":      "deliverAll (deliverPolicy all)",
		}[implied[0]])
	}
	switch policy {
	case "all":
		m.deliverPolicy = jetstream.DeliverAllPolicy
	case "last":
		m.deliverPolicy = jetstream.DeliverLastPolicy
	case "new":
		m.deliverPolicy = jetstream.DeliverNewPolicy
	case "sequence":
		m.deliverPolicy = jetstream.DeliverByStartSequencePolicy
		if m.StartSequence <= 0 {
			bad("deliverPolicy sequence: needs startSequence")
		}
		m.optStartSeq = uint64(max(m.StartSequence, 0))
	case "time":
		m.deliverPolicy = jetstream.DeliverByStartTimePolicy
		if m.StartTime <= 0 {
			bad("deliverPolicy time: needs startTime (Unix seconds)")
		}
		t := time.Unix(m.StartTime, 0).UTC()
		m.optStartTime = &t
	default:
		bad("deliverPolicy %q: want all, last, new, sequence or time", m.DeliverPolicy)
	}

	switch strings.ToLower(strings.TrimSpace(m.AckPolicy)) {
	case "explicit", "":
	case "all", "none":
		bad("ackPolicy %q: not supported; the runtime acknowledges each message on its own and has unacknowledged ones redelivered, which needs ackPolicy explicit", m.AckPolicy)
	default:
		bad("ackPolicy %q: want explicit", m.AckPolicy)
	}

	if m.AckWait <= 0 {
		bad("ackWait %v: must be positive", m.AckWait)
	}
	if m.MaxDeliver < -1 {
		bad("maxDeliver %d: want -1 or 0 (no bound) or a positive count", m.MaxDeliver)
	}
	m.backOff = nil
	for _, s := range m.BackOff {
		d, err := metadata.ParseDuration(s)
		if err == nil && d <= 0 {
			err = errors.New("must be positive")
		}
		if err != nil {
			bad("backOff %q: %v", s, err)
			continue
		}
		m.backOff = append(m.backOff, d)
	}
	if m.MaxDeliver > 0 && len(m.backOff) > m.MaxDeliver {
		bad("backOff: %d delays but maxDeliver %d; maxDeliver must be at least the number of delays", len(m.backOff), m.MaxDeliver)
	}
	if m.MaxAckPending < -1 {
		bad("maxAckPending %d: want -1 (no bound), 0 (the server's default) or a positive count", m.MaxAckPending)
	}
	if m.Replicas < 0 || m.Replicas > 5 {
		bad("replicas %d: want 0 (the server's default) to 5", m.Replicas)
	}
	if m.RateLimit < 0 {
		bad("rateLimit %d: must not be negative", m.RateLimit)
	}
	switch {
	case m.Hearbeat < 0:
		bad("hearbeat %v: must not be negative", m.Hearbeat)
	case m.Heartbeat < 0:
		bad("heartbeat %v: must not be negative", m.Heartbeat)
	case m.Hearbeat > 0 && m.Heartbeat > 0 && m.Hearbeat != m.Heartbeat:
		bad("hearbeat %v and heartbeat %v: two spellings of one setting with different values", m.Hearbeat, m.Heartbeat)
	default:
		m.heartbeat = max(m.Hearbeat, m.Heartbeat)
		if m.heartbeat > 0 && m.heartbeat < 100*time.Millisecond {
			bad("hearbeat %v: want at least 100ms", m.heartbeat)
		}
	}

	if m.Domain != "" && m.APIPrefix != "" {
		bad("domain and apiPrefix: set one (a domain is an API prefix of its own)")
	}
	if m.JWT != "" && m.SeedKey == "" {
		bad("jwt: needs seedKey, the seed that signs the server's challenge")
	}
	if m.SeedKey != "" {
		if _, err := nkeys.FromSeed([]byte(m.SeedKey)); err != nil {
			bad("seedKey: not an NKey seed (%v)", err)
		}
	}
	if m.Token != "" && (m.JWT != "" || m.SeedKey != "") {
		bad("token: set either token or jwt/seedKey, not both")
	}
	if (m.TLSClientCert == "") != (m.TLSClientKey == "") {
		bad("tls_client_cert and tls_client_key: set both or neither")
	}
	return errors.Join(errs...)
}

// checkURL checks one server address: a URL of scheme nats, tls, ws or
// wss, or host:port.
func checkURL(u string) error {
	if u == "" {
		return errors.New("an empty address")
	}
	if !strings.Contains(u, "://") {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil {
		return err
	}
	switch strings.ToLower(p.Scheme) {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %q: want nats, tls, ws or wss", p.Scheme)
	}
	if p.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// options are the connection's authentication and TLS options.
func (m *Metadata) options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case m.JWT != "":
		opts = append(opts, nats.UserJWTAndSeed(m.JWT, m.SeedKey))
	case m.SeedKey != "":
		kp, err := nkeys.FromSeed([]byte(m.SeedKey))
		if err != nil {
			return nil, fmt.Errorf("metadata seedKey: %w", err)
		}
		pub, err := kp.PublicKey()
		kp.Wipe()
		if err != nil {
			return nil, fmt.Errorf("metadata seedKey: %w", err)
		}
		seed := m.SeedKey
		opts = append(opts, nats.Nkey(pub, func(nonce []byte) ([]byte, error) {
			kp, err := nkeys.FromSeed([]byte(seed))
			if err != nil {
				return nil, err
			}
			defer kp.Wipe()
			return kp.Sign(nonce)
		}))
	case m.Token != "":
		opts = append(opts, nats.Token(m.Token))
	}
	if m.TLSClientCert != "" {
		cert, err := loadKeyPair(m.TLSClientCert, m.TLSClientKey)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}
	return opts, nil
}

// loadKeyPair reads a client certificate and key given as PEM or as files.
func loadKeyPair(cert, key string) (tls.Certificate, error) {
	isPEM := func(s string) bool { return strings.Contains(s, "-----BEGIN") }
	if isPEM(cert) != isPEM(key) {
		return tls.Certificate{}, errors.New("metadata tls_client_cert and tls_client_key: give both as PEM or both as files")
	}
	if isPEM(cert) {
		c, err := tls.X509KeyPair([]byte(cert), []byte(key))
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("metadata tls_client_cert and tls_client_key: %w", err)
		}
		return c, nil
	}
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("metadata tls_client_cert %q and tls_client_key %q: %w", cert, key, err)
	}
	return c, nil
}

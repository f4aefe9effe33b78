package state

import (
	"errors"
	"fmt"
	"strings"

	"github.com/outrigger/outrigger/config/metadata"
)

// Component is a loaded state store with the state API's own settings of
// it: the metadata keys every Dapr state store understands, whatever its
// backend.
type Component struct {
	Store Store
	// KeyPrefix is the keyPrefix strategy: "appid" (the default), "name",
	// "namespace", "none", or a custom prefix.
	KeyPrefix string
	// ActorStateStore marks the store actors keep their state in.
	ActorStateStore bool

	enc *encryption // nil when values are stored as given
}

// Encrypted reports whether the store encrypts values at rest.
func (c *Component) Encrypted() bool { return c.enc != nil }

// Capabilities are the store's features as daprd's metadata API names
// them.
func (c *Component) Capabilities() []string {
	out := []string{"ETAG"}
	f := c.Store.Features()
	if f.Transactional {
		out = append(out, "TRANSACTIONAL")
	}
	if f.TTL {
		out = append(out, "TTL")
	}
	if f.Query {
		out = append(out, "QUERY_API")
	}
	if c.ActorStateStore && f.Transactional {
		out = append(out, "ACTOR")
	}
	return out
}

// Close closes the store.
func (c *Component) Close() error { return c.Store.Close() }

// apiMetadata is what the state API reads of a component's metadata.
type apiMetadata struct {
	KeyPrefix              string `meta:"keyPrefix" default:"appid"`
	ActorStateStore        bool   `meta:"actorStateStore" default:"false"`
	PrimaryEncryptionKey   string `meta:"primaryEncryptionKey"`
	SecondaryEncryptionKey string `meta:"secondaryEncryptionKey"`
	// The outbox is read, so it is not reported as unknown, but not
	// supported yet: a component that sets it fails.
	OutboxPublishPubsub string `meta:"outboxPublishPubsub"`
	OutboxPublishTopic  string `meta:"outboxPublishTopic"`
	OutboxPubsub        string `meta:"outboxPubsub"`
	OutboxDiscard       string `meta:"outboxDiscardWhenMissingState"`
}

// NewComponent builds a state store component: it reads the state API's
// own keys of meta, hands the rest to newStore, and returns the keys
// neither reads, for the pipeline to warn about. secretNames names the
// secret each secretKeyRef'd metadata value came from (encryption keys are
// named by their secrets).
func NewComponent[S Store](meta map[string]string, secretNames map[string]string, newStore func(map[string]string) (S, []string, error)) (*Component, []string, error) {
	var m apiMetadata
	rest, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, nil, err
	}
	if strings.Contains(m.KeyPrefix, keySeparator) {
		return nil, nil, fmt.Errorf("metadata keyPrefix %q: must not contain %q", m.KeyPrefix, keySeparator)
	}
	var enc *encryption
	if m.PrimaryEncryptionKey != "" {
		enc = &encryption{}
		if enc.primary, err = newAESKey(lookupFold(secretNames, "primaryEncryptionKey"), m.PrimaryEncryptionKey); err != nil {
			return nil, nil, fmt.Errorf("metadata primaryEncryptionKey: %w", err)
		}
		if m.SecondaryEncryptionKey != "" {
			if enc.secondary, err = newAESKey(lookupFold(secretNames, "secondaryEncryptionKey"), m.SecondaryEncryptionKey); err != nil {
				return nil, nil, fmt.Errorf("metadata secondaryEncryptionKey: %w", err)
			}
		}
	} else if m.SecondaryEncryptionKey != "" {
		return nil, nil, errors.New("metadata secondaryEncryptionKey: needs a primaryEncryptionKey")
	}
	if m.OutboxPublishPubsub != "" || m.OutboxPubsub != "" {
		return nil, nil, errors.New("metadata outboxPublishPubsub: the transactional outbox is not supported yet")
	}
	backend := make(map[string]string, len(rest))
	for _, k := range rest {
		backend[k] = meta[k]
	}
	store, unknown, err := newStore(backend)
	if err != nil {
		return nil, unknown, err
	}
	prefix := strings.ToLower(m.KeyPrefix)
	switch prefix {
	case prefixAppID, prefixName, prefixNamespace, prefixNone:
	default:
		prefix = m.KeyPrefix // a custom prefix keeps its case
	}
	return &Component{Store: store, KeyPrefix: prefix, ActorStateStore: m.ActorStateStore, enc: enc}, unknown, nil
}

// Key prefix strategies, and the separator Dapr puts between a prefix and a
// key.
const (
	prefixAppID     = "appid"
	prefixName      = "name"
	prefixNamespace = "namespace"
	prefixNone      = "none"
	keySeparator    = "||"
)

// StoreKey is the key a store holds for the app's key, as daprd makes it.
// A key containing "||" is refused.
func (c *Component) StoreKey(key, storeName, appID, namespace string) (string, error) {
	if strings.Contains(key, keySeparator) {
		return "", fmt.Errorf("input key/keyPrefix '%s' can't contain '%s'", key, keySeparator)
	}
	switch c.KeyPrefix {
	case prefixNone:
		return key, nil
	case prefixName:
		return storeName + keySeparator + key, nil
	case prefixAppID, "":
		if appID == "" {
			return key, nil
		}
		return appID + keySeparator + key, nil
	case prefixNamespace:
		if appID == "" {
			return key, nil
		}
		if namespace == "" {
			return appID + keySeparator + key, nil
		}
		return namespace + "." + appID + keySeparator + key, nil
	default:
		return c.KeyPrefix + keySeparator + key, nil
	}
}

// AppKey is the app's key of a key the store holds: what follows the first
// "||", as daprd answers.
func AppKey(storeKey string) string {
	parts := strings.SplitN(storeKey, keySeparator, 3)
	if len(parts) <= 1 {
		return storeKey
	}
	return parts[1]
}

// seal is the value stored for v.
func (c *Component) seal(v []byte) ([]byte, error) {
	if c.enc == nil {
		return v, nil
	}
	return c.enc.encrypt(v)
}

// open is the value the app gets for a stored v.
func (c *Component) open(v []byte) ([]byte, error) {
	if c.enc == nil {
		return v, nil
	}
	return c.enc.decrypt(v)
}

// lookupFold is m[key] with the key matched case-insensitively, as metadata
// names are.
func lookupFold(m map[string]string, key string) string {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

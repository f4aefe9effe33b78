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
}

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
	KeyPrefix       string `meta:"keyPrefix" default:"appid"`
	ActorStateStore bool   `meta:"actorStateStore" default:"false"`
	// Encryption and the outbox are read, so they are not reported as
	// unknown, but not supported yet: a component that sets them fails.
	PrimaryEncryptionKey   string `meta:"primaryEncryptionKey"`
	SecondaryEncryptionKey string `meta:"secondaryEncryptionKey"`
	OutboxPublishPubsub    string `meta:"outboxPublishPubsub"`
	OutboxPublishTopic     string `meta:"outboxPublishTopic"`
	OutboxPubsub           string `meta:"outboxPubsub"`
	OutboxDiscard          string `meta:"outboxDiscardWhenMissingState"`
}

// NewComponent builds a state store component: it reads the state API's
// own keys of meta, hands the rest to newStore, and returns the keys
// neither reads, for the pipeline to warn about.
func NewComponent[S Store](meta map[string]string, newStore func(map[string]string) (S, []string, error)) (*Component, []string, error) {
	var m apiMetadata
	rest, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, nil, err
	}
	if strings.Contains(m.KeyPrefix, keySeparator) {
		return nil, nil, fmt.Errorf("metadata keyPrefix %q: must not contain %q", m.KeyPrefix, keySeparator)
	}
	if m.PrimaryEncryptionKey != "" || m.SecondaryEncryptionKey != "" {
		return nil, nil, errors.New("metadata primaryEncryptionKey: encryption at rest is not supported yet")
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
	return &Component{Store: store, KeyPrefix: prefix, ActorStateStore: m.ActorStateStore}, unknown, nil
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

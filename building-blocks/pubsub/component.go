package pubsub

import (
	"fmt"
	"slices"
	"strings"

	"github.com/outrigger/outrigger/config/metadata"
)

// Component is a loaded broker with the runtime's own settings of it: the
// topic scopes every Dapr pub/sub component understands.
type Component struct {
	Broker Broker
	// publishing and subscribing scopes by app-id; an app that is not a
	// key is not limited by them.
	publishing, subscribing map[string][]string
	allowed, protected      []string
}

// Close closes the broker.
func (c *Component) Close() error { return c.Broker.Close() }

type scopeMetadata struct {
	PublishingScopes   string   `meta:"publishingScopes"`
	SubscriptionScopes string   `meta:"subscriptionScopes"`
	AllowedTopics      []string `meta:"allowedTopics"`
	ProtectedTopics    []string `meta:"protectedTopics"`
}

// NewComponent builds a pub/sub component: it reads the runtime's own keys
// of meta (publishingScopes, subscriptionScopes, allowedTopics,
// protectedTopics), hands the rest to newBroker, and returns the keys
// neither reads.
func NewComponent[B Broker](meta map[string]string, newBroker func(map[string]string) (B, []string, error)) (*Component, []string, error) {
	var m scopeMetadata
	rest, err := metadata.Decode(meta, &m)
	if err != nil {
		return nil, nil, err
	}
	c := &Component{allowed: m.AllowedTopics, protected: m.ProtectedTopics}
	if c.publishing, err = parseScopes(m.PublishingScopes); err != nil {
		return nil, nil, fmt.Errorf("metadata publishingScopes: %w", err)
	}
	if c.subscribing, err = parseScopes(m.SubscriptionScopes); err != nil {
		return nil, nil, fmt.Errorf("metadata subscriptionScopes: %w", err)
	}
	backend := make(map[string]string, len(rest))
	for _, k := range rest {
		backend[k] = meta[k]
	}
	b, unknown, err := newBroker(backend)
	if err != nil {
		return nil, unknown, err
	}
	c.Broker = b
	return c, unknown, nil
}

// parseScopes reads "app1=topic1,topic2;app2=;app3=topic3": an app given
// with no topics may use none.
func parseScopes(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		app, topics, ok := strings.Cut(part, "=")
		app = strings.TrimSpace(app)
		if !ok || app == "" {
			return nil, fmt.Errorf("%q: want app-id=topic,topic", part)
		}
		list := []string{}
		for _, t := range strings.Split(topics, ",") {
			if t = strings.TrimSpace(t); t != "" {
				list = append(list, t)
			}
		}
		out[app] = append(out[app], list...)
	}
	return out, nil
}

// CanPublish reports whether appID may publish to topic.
func (c *Component) CanPublish(appID, topic string) bool {
	return c.allowedFor(c.publishing, appID, topic)
}

// CanSubscribe reports whether appID may subscribe to topic.
func (c *Component) CanSubscribe(appID, topic string) bool {
	return c.allowedFor(c.subscribing, appID, topic)
}

// allowedFor applies Dapr's rules: an app with scopes may use only the
// topics they list; allowedTopics limits the apps without scopes; a
// protected topic needs an explicit scope.
func (c *Component) allowedFor(scopes map[string][]string, appID, topic string) bool {
	scoped, hasScope := scopes[appID]
	if hasScope {
		return slices.Contains(scoped, topic)
	}
	if slices.Contains(c.protected, topic) {
		return false
	}
	if len(c.allowed) > 0 {
		return slices.Contains(c.allowed, topic)
	}
	return true
}

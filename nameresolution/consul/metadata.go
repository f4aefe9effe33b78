package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// DefaultDaprPortMetaKey is the service meta key that carries a sidecar's
// mesh port when the configuration does not name another (Dapr's default).
const DefaultDaprPortMetaKey = "DAPR_PORT"

// Metadata is the nameResolution.configuration of a Dapr Configuration whose
// nameResolution.component is "consul", as Dapr's consul resolver reads it.
// Keys match case-insensitively, as Dapr's JSON decoding does: "Client",
// "client" and "CLIENT" are one key.
type Metadata struct {
	// Client is how to reach the Consul agent. Empty fields take the consul
	// api defaults, which read the CONSUL_HTTP_* environment variables
	// (address 127.0.0.1:8500 when none is set).
	Client Client `json:"client"`
	// QueryOptions parameterise the health queries that find an app's
	// instances. Absent: {useCache: true}, as in Dapr.
	QueryOptions *QueryOptions `json:"queryOptions,omitempty"`
	// Checks are added to the sidecar's own health check when the sidecar
	// registers itself.
	Checks []Check `json:"checks,omitempty"`
	// Tags are the tags of the sidecar's registration.
	Tags []string `json:"tags,omitempty"`
	// Meta is added to the meta of the sidecar's registration.
	Meta map[string]string `json:"meta,omitempty"`
	// DaprPortMetaKey is the service meta key holding the sidecar's mesh
	// port, read when resolving and written when registering (default
	// DefaultDaprPortMetaKey).
	DaprPortMetaKey string `json:"daprPortMetaKey,omitempty"`
	// SelfRegister makes the sidecar register its app with the agent.
	SelfRegister bool `json:"selfRegister,omitempty"`
	// SelfDeregister is Dapr's switch to deregister on shutdown. Outrigger
	// always deregisters when the announcement ends; the key is accepted
	// for compatibility.
	SelfDeregister bool `json:"selfDeregister,omitempty"`
	// AdvancedRegistration, when set, is the registration used as given
	// (whatever SelfRegister says, as in Dapr), instead of the one built
	// from Checks, Tags and Meta.
	AdvancedRegistration *Registration `json:"advancedRegistration,omitempty"`
	// UseCache is Dapr's switch to cache resolved instances with blocking
	// queries. Outrigger always follows an app with blocking queries; the
	// key is accepted for compatibility.
	UseCache bool `json:"useCache,omitempty"`
}

// Client is the consul api.Config fields a configuration may set.
type Client struct {
	// Address is the agent's HTTP address, host:port, or unix://PATH.
	Address string `json:"address,omitempty"`
	// Scheme is http or https.
	Scheme string `json:"scheme,omitempty"`
	// PathPrefix is prepended to every request path (an API gateway in front).
	PathPrefix string `json:"pathPrefix,omitempty"`
	// Datacenter is the datacenter to query; default the agent's.
	Datacenter string `json:"datacenter,omitempty"`
	// HTTPAuth is HTTP basic authentication.
	HTTPAuth *HTTPAuth `json:"httpAuth,omitempty"`
	// WaitTime bounds a blocking query when QueryOptions.WaitTime is not set.
	WaitTime time.Duration `json:"waitTime,omitempty"`
	// Token is the ACL token.
	Token string `json:"token,omitempty"`
	// TokenFile is a file holding the ACL token.
	TokenFile string `json:"tokenFile,omitempty"`
	// Namespace is the Consul Enterprise namespace.
	Namespace string `json:"namespace,omitempty"`
	// Partition is the Consul Enterprise admin partition.
	Partition string `json:"partition,omitempty"`
	// TLSConfig configures TLS to the agent.
	TLSConfig TLSConfig `json:"tlsConfig"`
}

// HTTPAuth is HTTP basic authentication.
type HTTPAuth struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// TLSConfig configures TLS to the agent.
type TLSConfig struct {
	// Address is the server name to verify.
	Address            string `json:"address,omitempty"`
	CAFile             string `json:"caFile,omitempty"`
	CAPath             string `json:"caPath,omitempty"`
	CertFile           string `json:"certFile,omitempty"`
	KeyFile            string `json:"keyFile,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
}

// QueryOptions are the consul api.QueryOptions fields a configuration may
// set. WaitIndex, WaitHash, RelayFactor, LocalOnly and Connect are accepted
// for compatibility and have no effect: the watcher keeps its own index.
type QueryOptions struct {
	Namespace         string            `json:"namespace,omitempty"`
	Partition         string            `json:"partition,omitempty"`
	Datacenter        string            `json:"datacenter,omitempty"`
	AllowStale        bool              `json:"allowStale,omitempty"`
	RequireConsistent bool              `json:"requireConsistent,omitempty"`
	UseCache          bool              `json:"useCache,omitempty"`
	MaxAge            time.Duration     `json:"maxAge,omitempty"`
	StaleIfError      time.Duration     `json:"staleIfError,omitempty"`
	WaitIndex         uint64            `json:"waitIndex,omitempty"`
	WaitHash          string            `json:"waitHash,omitempty"`
	WaitTime          time.Duration     `json:"waitTime,omitempty"`
	Token             string            `json:"token,omitempty"`
	Near              string            `json:"near,omitempty"`
	NodeMeta          map[string]string `json:"nodeMeta,omitempty"`
	RelayFactor       uint8             `json:"relayFactor,omitempty"`
	LocalOnly         bool              `json:"localOnly,omitempty"`
	Connect           bool              `json:"connect,omitempty"`
	Filter            string            `json:"filter,omitempty"`
}

// Check is an agent service check (consul api.AgentServiceCheck). Exactly
// one of HTTP, TCP, UDP, GRPC, H2Ping, TTL, Args, DockerContainerID,
// AliasService and AliasNode says what is checked.
type Check struct {
	CheckID                        string              `json:"checkID,omitempty"`
	Name                           string              `json:"name,omitempty"`
	Args                           []string            `json:"args,omitempty"`
	DockerContainerID              string              `json:"dockerContainerID,omitempty"`
	Shell                          string              `json:"shell,omitempty"`
	Interval                       string              `json:"interval,omitempty"`
	Timeout                        string              `json:"timeout,omitempty"`
	TTL                            string              `json:"ttl,omitempty"`
	HTTP                           string              `json:"http,omitempty"`
	Header                         map[string][]string `json:"header,omitempty"`
	Method                         string              `json:"method,omitempty"`
	Body                           string              `json:"body,omitempty"`
	TCP                            string              `json:"tcp,omitempty"`
	TCPUseTLS                      bool                `json:"tcpUseTLS,omitempty"`
	UDP                            string              `json:"udp,omitempty"`
	Status                         string              `json:"status,omitempty"`
	Notes                          string              `json:"notes,omitempty"`
	TLSServerName                  string              `json:"tlsServerName,omitempty"`
	TLSSkipVerify                  bool                `json:"tlsSkipVerify,omitempty"`
	GRPC                           string              `json:"grpc,omitempty"`
	GRPCUseTLS                     bool                `json:"grpcUseTLS,omitempty"`
	H2Ping                         string              `json:"h2ping,omitempty"`
	H2PingUseTLS                   bool                `json:"h2pingUseTLS,omitempty"`
	AliasNode                      string              `json:"aliasNode,omitempty"`
	AliasService                   string              `json:"aliasService,omitempty"`
	SuccessBeforePassing           int                 `json:"successBeforePassing,omitempty"`
	FailuresBeforeWarning          int                 `json:"failuresBeforeWarning,omitempty"`
	FailuresBeforeCritical         int                 `json:"failuresBeforeCritical,omitempty"`
	DeregisterCriticalServiceAfter string              `json:"deregisterCriticalServiceAfter,omitempty"`
}

// Registration is an agent service registration (consul
// api.AgentServiceRegistration) given whole. Consul Connect's proxy and
// connect blocks are not supported (their keys are reported unknown).
type Registration struct {
	Kind              string                    `json:"kind,omitempty"`
	ID                string                    `json:"id,omitempty"`
	Name              string                    `json:"name,omitempty"`
	Tags              []string                  `json:"tags,omitempty"`
	Port              int                       `json:"port,omitempty"`
	Address           string                    `json:"address,omitempty"`
	TaggedAddresses   map[string]ServiceAddress `json:"taggedAddresses,omitempty"`
	EnableTagOverride bool                      `json:"enableTagOverride,omitempty"`
	Meta              map[string]string         `json:"meta,omitempty"`
	Weights           *Weights                  `json:"weights,omitempty"`
	Check             *Check                    `json:"check,omitempty"`
	Checks            []Check                   `json:"checks,omitempty"`
}

// ServiceAddress is one of a registration's tagged addresses.
type ServiceAddress struct {
	Address string `json:"address,omitempty"`
	Port    int    `json:"port,omitempty"`
}

// Weights are a registration's DNS weights.
type Weights struct {
	Passing int `json:"passing,omitempty"`
	Warning int `json:"warning,omitempty"`
}

// ParseMetadata reads a nameResolution.configuration (as decoded from YAML or
// JSON: maps, lists and scalars), applies the defaults and validates the
// result. Keys no field reads are returned, sorted, as dotted paths
// ("client.foo", "checks[1].bar") for the caller to log as warnings; Dapr's
// files may carry keys of newer or older versions. A value of the wrong kind,
// or an invalid one, is an error naming the field.
func ParseMetadata(raw map[string]any) (Metadata, []string, error) {
	var md Metadata
	var unknown []string
	norm, err := normalize(raw, reflect.TypeFor[Metadata](), "", &unknown)
	if err != nil {
		return Metadata{}, unknown, fmt.Errorf("nameresolution/consul: configuration: %v", err)
	}
	data, err := json.Marshal(norm)
	if err != nil {
		return Metadata{}, unknown, fmt.Errorf("nameresolution/consul: configuration: %v", err)
	}
	if err := json.Unmarshal(data, &md); err != nil {
		return Metadata{}, unknown, fmt.Errorf("nameresolution/consul: configuration: %v", err)
	}
	md.applyDefaults()
	slices.Sort(unknown)
	if err := md.Validate(); err != nil {
		return Metadata{}, unknown, err
	}
	return md, unknown, nil
}

// applyDefaults fills what Dapr fills when it is absent.
func (m *Metadata) applyDefaults() {
	if m.DaprPortMetaKey == "" {
		m.DaprPortMetaKey = DefaultDaprPortMetaKey
	}
	if m.QueryOptions == nil {
		m.QueryOptions = &QueryOptions{UseCache: true}
	}
}

// withDefaults returns m with the defaults applied, for a Metadata built in
// Go rather than parsed.
func (m Metadata) withDefaults() Metadata {
	m.applyDefaults()
	return m
}

// maxWait is the longest blocking query Consul serves.
const maxWait = 10 * time.Minute

// Validate checks the metadata; each problem is an error naming its field,
// all of them joined.
func (m Metadata) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("nameresolution/consul: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch m.Client.Scheme {
	case "", "http", "https":
	default:
		bad("client.scheme", "%q: want http or https", m.Client.Scheme)
	}
	if a := m.Client.Address; a != "" {
		if scheme, rest, ok := strings.Cut(a, "://"); ok {
			if scheme != "http" && scheme != "https" && scheme != "unix" {
				bad("client.address", "%q: unknown scheme %q (want http, https or unix)", a, scheme)
			} else if rest == "" {
				bad("client.address", "%q: no address after the scheme", a)
			}
		} else if strings.ContainsAny(a, " /") {
			bad("client.address", "%q: want host:port or unix://PATH", a)
		}
	}
	if m.Client.HTTPAuth != nil && m.Client.HTTPAuth.Username == "" {
		bad("client.httpAuth.username", "required when httpAuth is set")
	}
	if m.Client.WaitTime < 0 || m.Client.WaitTime > maxWait {
		bad("client.waitTime", "%s: want 0 to %s", m.Client.WaitTime, maxWait)
	}
	if (m.Client.TLSConfig.CertFile == "") != (m.Client.TLSConfig.KeyFile == "") {
		bad("client.tlsConfig", "certFile and keyFile go together")
	}
	if q := m.QueryOptions; q != nil {
		if q.AllowStale && q.RequireConsistent {
			bad("queryOptions", "allowStale and requireConsistent exclude each other")
		}
		if q.WaitTime < 0 || q.WaitTime > maxWait {
			bad("queryOptions.waitTime", "%s: want 0 to %s", q.WaitTime, maxWait)
		}
		if q.MaxAge < 0 {
			bad("queryOptions.maxAge", "%s: want 0 or more", q.MaxAge)
		}
		if q.StaleIfError < 0 {
			bad("queryOptions.staleIfError", "%s: want 0 or more", q.StaleIfError)
		}
	}
	for i, c := range m.Checks {
		errs = append(errs, c.validate(fmt.Sprintf("checks[%d]", i))...)
	}
	for i, t := range m.Tags {
		if t == "" {
			bad(fmt.Sprintf("tags[%d]", i), "empty")
		}
	}
	errs = append(errs, validateMeta("meta", m.Meta)...)
	if m.DaprPortMetaKey != "" {
		errs = append(errs, validateMetaKey("daprPortMetaKey", m.DaprPortMetaKey)...)
		if m.DaprPortMetaKey == MetaNamespace {
			bad("daprPortMetaKey", "%q is the key of the namespace", m.DaprPortMetaKey)
		}
	}
	if r := m.AdvancedRegistration; r != nil {
		switch r.Kind {
		case "", "typical":
		default:
			bad("advancedRegistration.kind", "%q: only typical services are supported", r.Kind)
		}
		if r.Port < 0 || r.Port > 65535 {
			bad("advancedRegistration.port", "%d: want 0 to 65535", r.Port)
		}
		for k, ta := range r.TaggedAddresses {
			if ta.Port < 0 || ta.Port > 65535 {
				bad("advancedRegistration.taggedAddresses."+k+".port", "%d: want 0 to 65535", ta.Port)
			}
		}
		for i, t := range r.Tags {
			if t == "" {
				bad(fmt.Sprintf("advancedRegistration.tags[%d]", i), "empty")
			}
		}
		errs = append(errs, validateMeta("advancedRegistration.meta", r.Meta)...)
		if r.Weights != nil && (r.Weights.Passing < 0 || r.Weights.Warning < 0) {
			bad("advancedRegistration.weights", "negative weight")
		}
		if r.Check != nil {
			errs = append(errs, r.Check.validate("advancedRegistration.check")...)
		}
		for i, c := range r.Checks {
			errs = append(errs, c.validate(fmt.Sprintf("advancedRegistration.checks[%d]", i))...)
		}
	}
	return errors.Join(errs...)
}

// Consul's limits on service meta (agent/structs ValidateServiceMetadata).
const (
	metaMaxPairs    = 64
	metaMaxKeyLen   = 128
	metaMaxValueLen = 512
)

func validateMeta(field string, meta map[string]string) []error {
	var errs []error
	if len(meta) > metaMaxPairs-2 { // two keys are Outrigger's
		errs = append(errs, fmt.Errorf("nameresolution/consul: %s: %d pairs: want at most %d", field, len(meta), metaMaxPairs-2))
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		errs = append(errs, validateMetaKey(field+"."+k, k)...)
		if len(meta[k]) > metaMaxValueLen {
			errs = append(errs, fmt.Errorf("nameresolution/consul: %s.%s: value of %d bytes: want at most %d", field, k, len(meta[k]), metaMaxValueLen))
		}
	}
	return errs
}

func validateMetaKey(field, k string) []error {
	var problem string
	switch {
	case k == "":
		problem = "empty key"
	case len(k) > metaMaxKeyLen:
		problem = fmt.Sprintf("key of %d bytes: want at most %d", len(k), metaMaxKeyLen)
	case strings.HasPrefix(k, "consul-"):
		problem = fmt.Sprintf("key %q: the consul- prefix is reserved", k)
	default:
		for _, r := range k {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				problem = fmt.Sprintf("key %q: want letters, digits, _ and - only", k)
				break
			}
		}
	}
	if problem == "" {
		return nil
	}
	return []error{fmt.Errorf("nameresolution/consul: %s: %s", field, problem)}
}

// validate checks one check; field names it in errors.
func (c Check) validate(field string) []error {
	var errs []error
	bad := func(sub, format string, args ...any) {
		f := field
		if sub != "" {
			f += "." + sub
		}
		errs = append(errs, fmt.Errorf("nameresolution/consul: %s: %s", f, fmt.Sprintf(format, args...)))
	}
	var kinds []string
	for _, k := range []struct {
		name string
		set  bool
	}{
		{"http", c.HTTP != ""}, {"tcp", c.TCP != ""}, {"udp", c.UDP != ""}, {"grpc", c.GRPC != ""},
		{"h2ping", c.H2Ping != ""}, {"ttl", c.TTL != ""}, {"args", len(c.Args) > 0},
		{"dockerContainerID", c.DockerContainerID != ""}, {"aliasService", c.AliasService != ""},
		{"aliasNode", c.AliasNode != "" && c.AliasService == ""},
	} {
		if k.set {
			kinds = append(kinds, k.name)
		}
	}
	switch len(kinds) {
	case 0:
		bad("", "says nothing to check: want one of http, tcp, udp, grpc, h2ping, ttl, args, dockerContainerID, aliasService")
	case 1:
	default:
		bad("", "several kinds of check (%s): want one", strings.Join(kinds, ", "))
	}
	durations := []struct {
		name, v string
	}{{"interval", c.Interval}, {"timeout", c.Timeout}, {"ttl", c.TTL}, {"deregisterCriticalServiceAfter", c.DeregisterCriticalServiceAfter}}
	for _, d := range durations {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v <= 0 {
			bad(d.name, "%q: want a positive duration such as \"10s\"", d.v)
		}
	}
	if c.Interval == "" && len(kinds) == 1 {
		switch kinds[0] {
		case "http", "tcp", "udp", "grpc", "h2ping", "args", "dockerContainerID":
			bad("interval", "required for a %s check", kinds[0])
		}
	}
	if c.HTTP != "" {
		if u, err := url.Parse(c.HTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("http", "%q: want an http:// or https:// URL", c.HTTP)
		}
	}
	switch c.Status {
	case "", api.HealthPassing, api.HealthWarning, api.HealthCritical:
	default:
		bad("status", "%q: want passing, warning or critical", c.Status)
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"successBeforePassing", c.SuccessBeforePassing}, {"failuresBeforeWarning", c.FailuresBeforeWarning}, {"failuresBeforeCritical", c.FailuresBeforeCritical}} {
		if n.v < 0 {
			bad(n.name, "%d: want 0 or more", n.v)
		}
	}
	return errs
}

// apiConfig is the consul client configuration.
func (c Client) apiConfig() *api.Config {
	cfg := &api.Config{
		Address:    c.Address,
		Scheme:     c.Scheme,
		PathPrefix: c.PathPrefix,
		Datacenter: c.Datacenter,
		WaitTime:   c.WaitTime,
		Token:      c.Token,
		TokenFile:  c.TokenFile,
		Namespace:  c.Namespace,
		Partition:  c.Partition,
		TLSConfig: api.TLSConfig{
			Address:            c.TLSConfig.Address,
			CAFile:             c.TLSConfig.CAFile,
			CAPath:             c.TLSConfig.CAPath,
			CertFile:           c.TLSConfig.CertFile,
			KeyFile:            c.TLSConfig.KeyFile,
			InsecureSkipVerify: c.TLSConfig.InsecureSkipVerify,
		},
	}
	if c.HTTPAuth != nil {
		cfg.HttpAuth = &api.HttpBasicAuth{Username: c.HTTPAuth.Username, Password: c.HTTPAuth.Password}
	}
	return cfg
}

// api returns the query options the watcher starts from.
func (q *QueryOptions) api() api.QueryOptions {
	if q == nil {
		return api.QueryOptions{}
	}
	return api.QueryOptions{
		Namespace:         q.Namespace,
		Partition:         q.Partition,
		Datacenter:        q.Datacenter,
		AllowStale:        q.AllowStale,
		RequireConsistent: q.RequireConsistent,
		UseCache:          q.UseCache,
		MaxAge:            q.MaxAge,
		StaleIfError:      q.StaleIfError,
		Token:             q.Token,
		Near:              q.Near,
		NodeMeta:          maps.Clone(q.NodeMeta),
		Filter:            q.Filter,
	}
}

// api returns the check as the consul api spells it.
func (c Check) api() *api.AgentServiceCheck {
	return &api.AgentServiceCheck{
		CheckID:                        c.CheckID,
		Name:                           c.Name,
		Args:                           slices.Clone(c.Args),
		DockerContainerID:              c.DockerContainerID,
		Shell:                          c.Shell,
		Interval:                       c.Interval,
		Timeout:                        c.Timeout,
		TTL:                            c.TTL,
		HTTP:                           c.HTTP,
		Header:                         c.Header,
		Method:                         c.Method,
		Body:                           c.Body,
		TCP:                            c.TCP,
		TCPUseTLS:                      c.TCPUseTLS,
		UDP:                            c.UDP,
		Status:                         c.Status,
		Notes:                          c.Notes,
		TLSServerName:                  c.TLSServerName,
		TLSSkipVerify:                  c.TLSSkipVerify,
		GRPC:                           c.GRPC,
		GRPCUseTLS:                     c.GRPCUseTLS,
		H2PING:                         c.H2Ping,
		H2PingUseTLS:                   c.H2PingUseTLS,
		AliasNode:                      c.AliasNode,
		AliasService:                   c.AliasService,
		SuccessBeforePassing:           c.SuccessBeforePassing,
		FailuresBeforeWarning:          c.FailuresBeforeWarning,
		FailuresBeforeCritical:         c.FailuresBeforeCritical,
		DeregisterCriticalServiceAfter: c.DeregisterCriticalServiceAfter,
	}
}

var durationType = reflect.TypeFor[time.Duration]()

// normalize walks raw (maps, lists and scalars as YAML or JSON decoding
// makes them) along t, the type it is decoded into. It spells every key as
// t's json tag does, matching case-insensitively as encoding/json does for
// Dapr; converts scalars to the kind t wants (a duration string to
// nanoseconds, "true" to true, 8 to "8"), and drops the keys t has no field
// for, adding their paths to unknown. Its result marshals to JSON that
// decodes into t without error. path names raw in errors.
func normalize(raw any, t reflect.Type, path string, unknown *[]string) (any, error) {
	if raw == nil {
		return nil, nil
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	field := path
	if field == "" {
		field = "configuration"
	}
	switch {
	case t == durationType:
		switch v := raw.(type) {
		case string:
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("%s: %q: want a duration such as \"30s\"", field, v)
			}
			return int64(d), nil
		default:
			// A bare number is nanoseconds, as Dapr's JSON decoding reads it.
			n, err := toInt(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %v: want a duration such as \"30s\"", field, raw)
			}
			return n, nil
		}
	case t.Kind() == reflect.Struct:
		m, ok := asMap(raw)
		if !ok {
			return nil, fmt.Errorf("%s: want an object, got %s", field, describe(raw))
		}
		type fieldInfo struct {
			name string
			typ  reflect.Type
		}
		byFold := map[string]fieldInfo{}
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			byFold[strings.ToLower(name)] = fieldInfo{name, sf.Type}
		}
		out := make(map[string]any, len(m))
		seen := map[string]string{}
		for _, k := range sortedKeys(m) {
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			f, ok := byFold[strings.ToLower(k)]
			if !ok {
				*unknown = append(*unknown, sub)
				continue
			}
			if prev, dup := seen[f.name]; dup {
				return nil, fmt.Errorf("%s: keys %q and %q are one key", field, prev, k)
			}
			seen[f.name] = k
			fpath := f.name
			if path != "" {
				fpath = path + "." + f.name
			}
			v, err := normalize(m[k], f.typ, fpath, unknown)
			if err != nil {
				return nil, err
			}
			out[f.name] = v
		}
		return out, nil
	case t.Kind() == reflect.Map:
		m, ok := asMap(raw)
		if !ok {
			return nil, fmt.Errorf("%s: want an object, got %s", field, describe(raw))
		}
		out := make(map[string]any, len(m))
		for _, k := range sortedKeys(m) {
			v, err := normalize(m[k], t.Elem(), path+"."+k, unknown)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	case t.Kind() == reflect.Slice:
		l, ok := raw.([]any)
		if !ok {
			if s, isStrings := raw.([]string); isStrings {
				for _, e := range s {
					l = append(l, e)
				}
			} else {
				return nil, fmt.Errorf("%s: want a list, got %s", field, describe(raw))
			}
		}
		out := make([]any, len(l))
		for i, e := range l {
			v, err := normalize(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), unknown)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case t.Kind() == reflect.String:
		switch v := raw.(type) {
		case string:
			return v, nil
		case bool, int, int64, uint64, float64, int32, uint32, float32:
			return fmt.Sprint(v), nil
		}
		return nil, fmt.Errorf("%s: want a string, got %s", field, describe(raw))
	case t.Kind() == reflect.Bool:
		switch v := raw.(type) {
		case bool:
			return v, nil
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("%s: %q: want true or false", field, v)
			}
			return b, nil
		}
		return nil, fmt.Errorf("%s: want true or false, got %s", field, describe(raw))
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		n, err := toInt(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %v: want an integer", field, raw)
		}
		z := reflect.New(t).Elem()
		switch {
		case t.Kind() >= reflect.Uint:
			if n < 0 || z.OverflowUint(uint64(n)) {
				return nil, fmt.Errorf("%s: %d: out of range", field, n)
			}
		case z.OverflowInt(n):
			return nil, fmt.Errorf("%s: %d: out of range", field, n)
		}
		return n, nil
	}
	return nil, fmt.Errorf("%s: unsupported field type %s", field, t)
}

// toInt reads an integer from a decoded number or a string.
func toInt(raw any) (int64, error) {
	switch v := raw.(type) {
	case int:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case int64:
		return v, nil
	case uint32:
		return int64(v), nil
	case uint64:
		if v > math.MaxInt64 {
			return 0, errors.New("out of range")
		}
		return int64(v), nil
	case float64:
		if v != math.Trunc(v) || v > math.MaxInt64 || v < math.MinInt64 {
			return 0, errors.New("not an integer")
		}
		return int64(v), nil
	case json.Number:
		return v.Int64()
	case string:
		return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	}
	return 0, errors.New("not a number")
}

// asMap accepts the map types YAML and JSON decoders make.
func asMap(raw any) (map[string]any, bool) {
	switch m := raw.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	case map[string]string:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out, true
	}
	return nil, false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// describe names the kind of a decoded value for an error message.
func describe(raw any) string {
	switch raw.(type) {
	case string:
		return fmt.Sprintf("the string %q", raw)
	case bool:
		return fmt.Sprintf("%v", raw)
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "an object"
	case int, int64, uint64, float64, int32, uint32, float32:
		return fmt.Sprintf("the number %v", raw)
	}
	return fmt.Sprintf("a %T", raw)
}

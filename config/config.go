// Package config reads Dapr Configuration documents (apiVersion
// dapr.io/v1alpha1, kind Configuration) into typed sections. It knows the
// sections Outrigger acts on today (mtls, accessControl, secrets,
// nameResolution and tracing); other sections
// of a Dapr file are accepted and left alone, so existing files load
// unchanged. The xDS configuration pipeline will carry the same types.
package config

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outrigger/outrigger/building-blocks/secrets"
	"github.com/outrigger/outrigger/mtls/acl"
	"github.com/outrigger/outrigger/telemetry"
)

// Configuration is one Configuration document.
type Configuration struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`

	// JSON is the whole document as JSON and Source where it was read,
	// when it came from a resources folder.
	JSON   []byte `yaml:"-"`
	Source Source `yaml:"-"`
}

// Metadata names the document.
type Metadata struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

// Spec holds the sections Outrigger reads.
type Spec struct {
	MTLS          *MTLS     `yaml:"mtls"`
	AccessControl *acl.Spec `yaml:"accessControl"`
	Secrets       *Secrets  `yaml:"secrets"`
	// NameResolution picks and configures how the sidecar finds other
	// apps, as daprd's section of that name.
	NameResolution *NameResolution `yaml:"nameResolution"`
	// Tracing sets sampling and where spans are exported.
	Tracing *telemetry.Spec `yaml:"tracing"`
}

// NameResolution is the nameResolution section: a resolver component
// (consul, kubernetes, mdns) and its configuration, which also carries the
// balancer's loadBalancing and outlierDetection.
type NameResolution struct {
	Component     string         `yaml:"component"`
	Version       string         `yaml:"version"`
	Configuration map[string]any `yaml:"configuration"`
}

// Secrets is the secrets section: which secrets of which store the app may read.
type Secrets struct {
	Scopes secrets.Scopes `yaml:"scopes"`
}

// SecretsPolicy compiles the secrets section; nil allows every secret.
func (c *Configuration) SecretsPolicy() (*secrets.Policy, error) {
	if c == nil || c.Spec.Secrets == nil {
		return nil, nil
	}
	return c.Spec.Secrets.Scopes.Compile()
}

// MTLS is the mtls section, as Dapr Sentry reads it.
type MTLS struct {
	Enabled *bool `yaml:"enabled"`
	// WorkloadCertTTL and AllowedClockSkew are Go durations ("24h", "15m").
	WorkloadCertTTL         string `yaml:"workloadCertTTL"`
	AllowedClockSkew        string `yaml:"allowedClockSkew"`
	ControlPlaneTrustDomain string `yaml:"controlPlaneTrustDomain"`
	SentryAddress           string `yaml:"sentryAddress"`
}

// Durations parses WorkloadCertTTL and AllowedClockSkew; an empty one is 0.
func (m *MTLS) Durations() (ttl, skew time.Duration, err error) {
	if m == nil {
		return 0, 0, nil
	}
	parse := func(field, v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("spec.mtls.%s %q: want a duration such as 24h or 15m", field, v)
		}
		if d < 0 {
			return 0, fmt.Errorf("spec.mtls.%s %q: must not be negative", field, v)
		}
		return d, nil
	}
	if ttl, err = parse("workloadCertTTL", m.WorkloadCertTTL); err != nil {
		return 0, 0, err
	}
	if skew, err = parse("allowedClockSkew", m.AllowedClockSkew); err != nil {
		return 0, 0, err
	}
	return ttl, skew, nil
}

// Parse reads a Configuration document. Errors name the field.
func Parse(data []byte) (*Configuration, error) {
	var c Configuration
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("not a Configuration document: %w", err)
	}
	if c.Kind != "Configuration" {
		return nil, fmt.Errorf("kind %q: want Configuration", c.Kind)
	}
	switch c.APIVersion {
	case "dapr.io/v1alpha1", "":
	default:
		return nil, fmt.Errorf("apiVersion %q: want dapr.io/v1alpha1", c.APIVersion)
	}
	if _, _, err := c.Spec.MTLS.Durations(); err != nil {
		return nil, err
	}
	if err := c.Spec.Tracing.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// ParseJSONConfiguration reads a Configuration document carried as JSON
// (JSON is YAML, so the same rules apply).
func ParseJSONConfiguration(data []byte) (*Configuration, error) {
	c, err := Parse(data)
	if err != nil {
		return nil, err
	}
	c.JSON = data
	return c, nil
}

// Load reads the Configuration file at path.
func Load(path string) (*Configuration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// AccessControl compiles the accessControl section; nil when there is none.
func (c *Configuration) AccessControl() (*acl.Policy, error) {
	if c == nil {
		return nil, nil
	}
	p, err := acl.Compile(c.Spec.AccessControl)
	if err != nil {
		return nil, fmt.Errorf("spec.accessControl: %w", err)
	}
	return p, nil
}

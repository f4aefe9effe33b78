package kubernetes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/miekg/dns"

	"github.com/outrigger/outrigger/config/metadata"
	"github.com/outrigger/outrigger/nameresolution"
)

// Type is the name resolution component this package implements, as a Dapr
// Configuration names it (spec.nameResolution.component: kubernetes), version v1.
const Type = "nameresolution.kubernetes"

// Defaults of the metadata fields.
const (
	// DefaultClusterDomain is the cluster's DNS domain unless told otherwise.
	DefaultClusterDomain = "cluster.local"
	// DefaultPort is daprd's internal gRPC port, which the <app-id>-dapr
	// service exposes as dapr-internal: the mesh port used when no SRV
	// record gives one.
	DefaultPort = 50002
	// DefaultTimeout bounds one DNS exchange.
	DefaultTimeout = 2 * time.Second
)

// resolvConf is where the default DNS server is read from.
const resolvConf = "/etc/resolv.conf"

// Metadata is the configuration of the resolver: the map under
// spec.nameResolution.configuration of a Dapr Configuration whose
// spec.nameResolution.component is "kubernetes".
type Metadata struct {
	// ClusterDomain is the cluster's DNS domain: an app resolves through
	// <app-id>-dapr.<namespace>.svc.<clusterDomain>. Ignored when Template
	// is set (Dapr documents the two as mutually exclusive, and lets the
	// template win).
	ClusterDomain string `meta:"clusterDomain" default:"cluster.local"`
	// Template, when set, is a Go text/template rendering the address of an
	// app instead: "host" or "host:port", from .ID (the app-id), .Namespace,
	// .Port (the Port field) and .Data (always empty: daprd fills no data
	// when it resolves for service invocation either). The host is looked up
	// with A and AAAA records only, as Dapr does, or taken as it is when it
	// is an IP address.
	Template string `meta:"template"`
	// DNSServer is the DNS server asked, "ip:port" or "ip" (port 53).
	// Empty: the first nameserver of /etc/resolv.conf, filled in by
	// ParseMetadata.
	DNSServer string `meta:"dnsServer"`
	// Port is the mesh port of an instance found by A or AAAA records
	// (no SRV record names its port), and .Port of Template.
	Port int `meta:"port" default:"50002"`
	// Timeout bounds one DNS exchange (UDP, and TCP after a truncated
	// answer).
	Timeout time.Duration `meta:"timeout" default:"2s"`
}

// ParseMetadata reads the resolver's configuration, applying the defaults,
// and validates it. Values may be strings, as Dapr's metadata are, or
// YAML/JSON scalars (numbers, booleans). unknown lists, sorted, the keys the
// resolver does not read: the caller warns about them rather than fail, as
// Dapr passes such keys through. A bad value is an error naming its key.
func ParseMetadata(raw map[string]any) (m Metadata, unknown []string, err error) {
	return parseMetadata(raw, resolvConf)
}

func parseMetadata(raw map[string]any, resolvConfPath string) (Metadata, []string, error) {
	var m Metadata
	in := make(map[string]string, len(raw))
	var errs []error
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s, err := scalar(raw[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("metadata %s: %w", k, err))
			continue
		}
		in[k] = s
	}
	unknown, err := metadata.Decode(in, &m)
	if err = errors.Join(append(errs, err)...); err != nil {
		return m, unknown, fmt.Errorf("nameresolution/kubernetes: %w", err)
	}
	if m.DNSServer == "" {
		m.DNSServer, err = firstNameserver(resolvConfPath)
		if err != nil {
			return m, unknown, fmt.Errorf("nameresolution/kubernetes: metadata dnsServer: not set, and %w", err)
		}
	}
	if err := m.Validate(); err != nil {
		return m, unknown, err
	}
	return m, unknown, nil
}

// scalar renders one configuration value as the string metadata.Decode reads.
func scalar(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case json.Number:
		return v.String(), nil
	case time.Duration:
		return v.String(), nil
	}
	return "", fmt.Errorf("want a string, a number or a boolean, got %T", v)
}

// firstNameserver returns "ip:port" of the first nameserver in a resolv.conf.
func firstNameserver(path string) (string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("%s lists no nameserver", path)
	}
	port := cc.Port
	if port == "" {
		port = "53"
	}
	return net.JoinHostPort(cc.Servers[0], port), nil
}

// Validate checks m; each error names the field's key.
func (m *Metadata) Validate() error {
	var errs []error
	if m.Template == "" {
		if err := checkDomain(m.ClusterDomain); err != nil {
			errs = append(errs, fmt.Errorf("metadata clusterDomain %q: %w", m.ClusterDomain, err))
		}
	} else if _, err := m.parseTemplate(); err != nil {
		errs = append(errs, fmt.Errorf("metadata template %q: %w", m.Template, err))
	}
	if _, err := serverAddr(m.DNSServer); err != nil {
		errs = append(errs, fmt.Errorf("metadata dnsServer %q: %w", m.DNSServer, err))
	}
	if m.Port < 1 || m.Port > 65535 {
		errs = append(errs, fmt.Errorf("metadata port %d: want 1 to 65535", m.Port))
	}
	if m.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("metadata timeout %v: want a positive duration", m.Timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nameresolution/kubernetes: %w", err)
	}
	return nil
}

// serverAddr reads a DNS server address: "ip:port", or "ip" for port 53.
func serverAddr(s string) (string, error) {
	if s == "" {
		return "", errors.New("want ip:port")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", errors.New("port 0: want 1 to 65535")
		}
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	return "", errors.New("want an IP address and a port, such as 10.96.0.10:53 or [fd00::a]:53")
}

// checkDomain accepts a DNS domain of one or more labels, with or without
// the final dot.
func checkDomain(d string) error {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return errors.New("empty")
	}
	if len(d) > 200 {
		return errors.New("longer than 200 bytes")
	}
	for l := range strings.SplitSeq(d, ".") {
		if err := checkLabel(l); err != nil {
			return err
		}
	}
	return nil
}

// checkLabel accepts a DNS label of letters, digits, '-' and '_', not
// starting or ending with '-'.
func checkLabel(l string) error {
	if l == "" {
		return errors.New("empty label")
	}
	if len(l) > 63 {
		return fmt.Errorf("label %q is longer than 63 bytes", l)
	}
	for i := range len(l) {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("label %q has %q: want letters, digits, '-' and '_'", l, c)
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with '-'", l)
	}
	return nil
}

// templateData is what Template is executed with: the fields of Dapr's
// nameresolution.ResolveRequest.
type templateData struct {
	ID        string
	Namespace string
	Port      int
	Data      map[string]string
}

// parseTemplate parses Template and renders it once for a sample app, so a
// template that cannot render an address fails at load, not at the first call.
func (m *Metadata) parseTemplate() (*template.Template, error) {
	t, err := template.New("kubernetes").Option("missingkey=error").Parse(m.Template)
	if err != nil {
		return nil, err
	}
	if _, _, err := m.render(t, "app-id", nameresolution.DefaultNamespace); err != nil {
		return nil, err
	}
	return t, nil
}

// render executes the template for an app and splits the result into a
// host (a DNS name or an IP address) and a port (Port when the template
// gives none).
func (m *Metadata) render(t *template.Template, appID, namespace string) (host string, port int, err error) {
	var b bytes.Buffer
	if err := t.Execute(&b, templateData{ID: appID, Namespace: namespace, Port: m.Port, Data: map[string]string{}}); err != nil {
		return "", 0, err
	}
	s := strings.TrimSpace(b.String())
	host, port = s, m.Port
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("rendered %q: port %q: want 1 to 65535", s, p)
		}
		host, port = h, n
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Zone() == "" {
		return a.Unmap().String(), port, nil
	}
	if err := checkDomain(host); err != nil {
		return "", 0, fmt.Errorf("rendered %q: want host or host:port, host an IP address or a DNS name: %w", s, err)
	}
	return host, port, nil
}

package static

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/outrigger/outrigger/nameresolution"
)

// File is the parsed form of a static resolution file.
type File struct {
	// Apps lists every app the file resolves.
	Apps []App `yaml:"apps"`
}

// App is one app of a static resolution file.
type App struct {
	// AppID is the app's id.
	AppID string `yaml:"appID"`
	// Namespace is the app's namespace; Parse fills in DefaultNamespace
	// when the file leaves it out.
	Namespace string `yaml:"namespace,omitempty"`
	// Addresses are the mesh addresses ("host:port") of the app's
	// instances, in the order the file gives them. Parse normalises them.
	Addresses []string `yaml:"addresses"`
}

// document is the shape decoded from YAML; a pointer tells a missing apps key
// from an empty list.
type document struct {
	Apps *[]App `yaml:"apps"`
}

// Parse decodes and validates a static resolution file. Decoding is strict:
// an unknown field, a second YAML document, a missing apps key, an app
// without an app-id or addresses, an address that is not host:port, or the
// same app listed twice is an error. Addresses are normalised
// (net.JoinHostPort of the host and the decimal port).
func Parse(data []byte) (File, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return File{}, errors.New("file is empty")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc document
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return File{}, errors.New("file has no YAML document")
		}
		return File{}, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return File{}, errors.New("file has more than one YAML document")
	}
	if doc.Apps == nil {
		return File{}, errors.New(`missing "apps" (write "apps: []" for none)`)
	}
	f := File{Apps: *doc.Apps}
	type key struct{ appID, namespace string }
	seen := make(map[key]int, len(f.Apps))
	for i := range f.Apps {
		a := &f.Apps[i]
		if err := validName(a.AppID); err != nil {
			return File{}, fmt.Errorf("apps[%d]: appID %q: %v", i, a.AppID, err)
		}
		a.Namespace = nameresolution.NamespaceOrDefault(a.Namespace)
		if err := validName(a.Namespace); err != nil {
			return File{}, fmt.Errorf("apps[%d] (%s): namespace %q: %v", i, a.AppID, a.Namespace, err)
		}
		k := key{a.AppID, a.Namespace}
		if j, dup := seen[k]; dup {
			return File{}, fmt.Errorf("apps[%d]: app %q in namespace %q is already listed at apps[%d]", i, a.AppID, a.Namespace, j)
		}
		seen[k] = i
		if len(a.Addresses) == 0 {
			return File{}, fmt.Errorf("apps[%d] (%s): no addresses", i, a.AppID)
		}
		addrs := make([]string, len(a.Addresses))
		for j, raw := range a.Addresses {
			addr, err := normaliseAddress(raw)
			if err != nil {
				return File{}, fmt.Errorf("apps[%d] (%s): addresses[%d] %q: %v", i, a.AppID, j, raw, err)
			}
			for _, prev := range addrs[:j] {
				if prev == addr {
					return File{}, fmt.Errorf("apps[%d] (%s): addresses[%d] %q is listed twice", i, a.AppID, j, raw)
				}
			}
			addrs[j] = addr
		}
		a.Addresses = addrs
	}
	return f, nil
}

// yamlError flattens yaml.v3's multi-line unmarshal errors onto one line.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(strings.Join(te.Errors, "; "))
	}
	return err
}

// validName checks an app-id or namespace: not empty, at most 253 bytes, no
// spaces or control characters.
func validName(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > 253:
		return errors.New("longer than 253 bytes")
	}
	for _, c := range s {
		if unicode.IsSpace(c) || unicode.IsControl(c) || c == unicode.ReplacementChar {
			return fmt.Errorf("contains %q", c)
		}
	}
	return nil
}

// normaliseAddress checks that s is host:port with a non-empty host (an IP
// address other than the unspecified one, or a DNS name) and a port from 1
// to 65535, and returns it in net.JoinHostPort form.
func normaliseAddress(s string) (string, error) {
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		return "", err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", portText)
	}
	if host == "" {
		return "", errors.New("missing host")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() {
			return "", fmt.Errorf("host %s is the unspecified address", host)
		}
		host = ip.String()
	} else if err := validHostname(host); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.FormatUint(port, 10)), nil
}

// validHostname checks a DNS name: at most 253 bytes, dot-separated labels of
// 1 to 63 letters, digits, '-' or '_', not starting or ending with '-', the
// last one not all digits (so a mistyped IPv4 address is not taken for a
// name). One trailing dot is allowed.
func validHostname(host string) error {
	name := strings.TrimSuffix(host, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("host %q is not a valid DNS name or IP address", host)
	}
	last := name[strings.LastIndexByte(name, '.')+1:]
	if strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("host %q is not a valid DNS name or IP address", host)
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q is not a valid DNS name or IP address", host)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host %q is not a valid DNS name or IP address", host)
			}
		}
	}
	return nil
}

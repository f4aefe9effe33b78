package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Source is where a document, or a field of it, was read.
type Source struct {
	File string
	Line int
}

func (s Source) String() string {
	if s.Line > 0 {
		return fmt.Sprintf("%s:%d", s.File, s.Line)
	}
	return s.File
}

// Component is a Dapr Component document (dapr.io/v1alpha1).
type Component struct {
	Name      string
	Namespace string
	Type      string // e.g. secretstores.local.file
	Version   string // e.g. v1
	Metadata  []MetadataItem
	Scopes    []string
	// SecretStore resolves the secretKeyRefs of this component (auth.secretStore).
	SecretStore  string
	InitTimeout  time.Duration
	IgnoreErrors bool
	Source       Source
}

// MetadataItem is one entry of a component's spec.metadata: a value, a
// reference to a secret, or a reference to an environment variable.
type MetadataItem struct {
	Name         string
	Value        string // scalars as written; maps and lists as JSON, as daprd passes them
	SecretKeyRef *SecretKeyRef
	EnvRef       string
	Line         int
}

// SecretKeyRef names a secret of the component's secret store.
type SecretKeyRef struct {
	Name string
	Key  string
}

// Document is a resource of a kind this package carries but does not
// interpret (Resiliency, Subscription): its identity, its source and its
// whole text as JSON, for the building block that owns it.
type Document struct {
	Kind       string
	APIVersion string
	Name       string
	Namespace  string
	Scopes     []string
	JSON       []byte
	Source     Source
}

// Resources are the documents of one file or of several.
type Resources struct {
	Components     []Component
	Configurations []*Configuration
	Resiliencies   []Document
	Subscriptions  []Document
}

// Append adds the resources of o to r.
func (r *Resources) Append(o *Resources) {
	r.Components = append(r.Components, o.Components...)
	r.Configurations = append(r.Configurations, o.Configurations...)
	r.Resiliencies = append(r.Resiliencies, o.Resiliencies...)
	r.Subscriptions = append(r.Subscriptions, o.Subscriptions...)
}

// FieldError is a problem with one field of one document.
type FieldError struct {
	Source Source
	// What names the document: `component "statestore"`.
	What  string
	Field string
	Err   error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source.String())
	if e.What != "" {
		b.WriteString(": " + e.What)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// ParseResources reads every YAML document of one file. The file's
// resources come back only when all of them are valid; otherwise the
// errors name the file, the line and the field of each problem, so a
// caller can keep the file's last good version.
func ParseResources(file string, data []byte) (*Resources, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	res := &Resources{}
	var errs []error
	for i := 0; ; i++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, &FieldError{Source: Source{File: file}, Err: fmt.Errorf("not YAML: %w", err)})
			break
		}
		if len(doc.Content) == 0 || isEmptyDoc(doc.Content[0]) {
			continue
		}
		root := doc.Content[0]
		src := Source{File: file, Line: root.Line}
		if root.Kind != yaml.MappingNode {
			errs = append(errs, &FieldError{Source: src, Err: errors.New("a resource document must be a mapping")})
			continue
		}
		kind := scalar(root, "kind")
		switch kind {
		case "Component":
			c, err := parseComponent(root, src)
			if err != nil {
				errs = append(errs, err...)
				continue
			}
			res.Components = append(res.Components, c)
		case "Configuration":
			var text bytes.Buffer
			enc := yaml.NewEncoder(&text)
			_ = enc.Encode(root)
			cfg, err := Parse(text.Bytes())
			if err != nil {
				errs = append(errs, &FieldError{Source: src, What: "configuration " + quote(scalar(mapping(root, "metadata"), "name")), Err: err})
				continue
			}
			d, derr := parseDocument(root, src, "Configuration")
			if derr != nil {
				errs = append(errs, derr)
				continue
			}
			cfg.JSON, cfg.Source = d.JSON, src
			res.Configurations = append(res.Configurations, cfg)
		case "Resiliency", "Subscription":
			d, err := parseDocument(root, src, kind)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if kind == "Resiliency" {
				if _, err := ParseResiliency(d); err != nil {
					errs = append(errs, pathErrors(root, src, "resiliency "+quote(d.Name), err)...)
					continue
				}
				res.Resiliencies = append(res.Resiliencies, d)
			} else {
				res.Subscriptions = append(res.Subscriptions, d)
			}
		case "":
			errs = append(errs, &FieldError{Source: src, Field: "kind", Err: errors.New("missing: want Component, Configuration, Resiliency or Subscription")})
		default:
			// Other kinds (HTTPEndpoint, ...) are Dapr's but not carried yet.
			errs = append(errs, &FieldError{Source: src, Field: "kind", Err: fmt.Errorf("%q is not supported: want Component, Configuration, Resiliency or Subscription", kind)})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return res, nil
}

// pathErrors turns the PathErrors joined in err into FieldErrors that carry
// the line of each path in the document root.
func pathErrors(root *yaml.Node, src Source, what string, err error) []error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		var pe *PathError
		if !errors.As(e, &pe) {
			out = append(out, &FieldError{Source: src, What: what, Err: e})
			continue
		}
		line, n := src.Line, root
		for _, key := range pe.Path {
			line = keyLine(n, key, line)
			if n = value(n, key); n == nil {
				break
			}
		}
		out = append(out, &FieldError{Source: Source{File: src.File, Line: line}, What: what, Field: strings.Join(pe.Path, "."), Err: pe.Err})
	}
	return out
}

func isEmptyDoc(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// mapping returns the mapping value of key in n, or nil.
func mapping(n *yaml.Node, key string) *yaml.Node {
	v := value(n, key)
	if v == nil || v.Kind != yaml.MappingNode {
		return nil
	}
	return v
}

// value returns the value node of key in the mapping n, or nil.
func value(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node, key string) string {
	v := value(n, key)
	if v == nil || v.Kind != yaml.ScalarNode {
		return ""
	}
	return v.Value
}

func checkAPIVersion(root *yaml.Node, src Source, what string) error {
	switch v := scalar(root, "apiVersion"); v {
	case "dapr.io/v1alpha1", "dapr.io/v2alpha1", "":
		return nil
	default:
		return &FieldError{Source: Source{File: src.File, Line: lineOf(root, "apiVersion", src.Line)}, What: what, Field: "apiVersion", Err: fmt.Errorf("%q: want dapr.io/v1alpha1", v)}
	}
}

// keyLine is the line of key in the mapping n, or def.
func keyLine(n *yaml.Node, key string, def int) int {
	if n != nil && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i].Line
			}
		}
	}
	return def
}

func lineOf(n *yaml.Node, key string, def int) int {
	if v := value(n, key); v != nil {
		return v.Line
	}
	return def
}

func parseComponent(root *yaml.Node, src Source) (Component, []error) {
	meta := mapping(root, "metadata")
	spec := mapping(root, "spec")
	c := Component{
		Name:      scalar(meta, "name"),
		Namespace: scalar(meta, "namespace"),
		Source:    src,
	}
	what := "component " + quote(c.Name)
	var errs []error
	fail := func(line int, field string, err error) {
		errs = append(errs, &FieldError{Source: Source{File: src.File, Line: line}, What: what, Field: field, Err: err})
	}
	if err := checkAPIVersion(root, src, what); err != nil {
		errs = append(errs, err)
	}
	if c.Name == "" {
		fail(src.Line, "metadata.name", errors.New("required"))
	}
	if spec == nil {
		fail(src.Line, "spec", errors.New("required"))
		return c, errs
	}
	c.Type = scalar(spec, "type")
	c.Version = scalar(spec, "version")
	specLine := keyLine(root, "spec", src.Line)
	if c.Type == "" {
		fail(lineOf(spec, "type", specLine), "spec.type", errors.New("required"))
	}
	if c.Version == "" {
		fail(lineOf(spec, "version", specLine), "spec.version", errors.New("required (e.g. v1)"))
	}
	if v := scalar(spec, "ignoreErrors"); v != "" {
		switch strings.ToLower(v) {
		case "true":
			c.IgnoreErrors = true
		case "false":
		default:
			fail(lineOf(spec, "ignoreErrors", src.Line), "spec.ignoreErrors", fmt.Errorf("%q: want true or false", v))
		}
	}
	if v := scalar(spec, "initTimeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			fail(lineOf(spec, "initTimeout", src.Line), "spec.initTimeout", fmt.Errorf("%q: want a duration such as 5s", v))
		}
		c.InitTimeout = d
	}
	if auth := mapping(root, "auth"); auth != nil {
		c.SecretStore = scalar(auth, "secretStore")
	}
	scopes, err := stringList(value(root, "scopes"))
	if err != nil {
		fail(lineOf(root, "scopes", src.Line), "scopes", err)
	}
	c.Scopes = scopes
	if md := value(spec, "metadata"); md != nil {
		if md.Kind != yaml.SequenceNode {
			fail(md.Line, "spec.metadata", errors.New("want a list of {name, value | secretKeyRef | envRef}"))
		} else {
			seen := map[string]bool{}
			for i, item := range md.Content {
				field := fmt.Sprintf("spec.metadata[%d]", i)
				m, err := parseMetadataItem(item)
				if err != nil {
					fail(item.Line, field, err)
					continue
				}
				if seen[strings.ToLower(m.Name)] {
					fail(item.Line, field+".name", fmt.Errorf("%q appears twice", m.Name))
					continue
				}
				seen[strings.ToLower(m.Name)] = true
				c.Metadata = append(c.Metadata, m)
			}
		}
	}
	return c, errs
}

func parseMetadataItem(n *yaml.Node) (MetadataItem, error) {
	if n.Kind != yaml.MappingNode {
		return MetadataItem{}, errors.New("want {name, value | secretKeyRef | envRef}")
	}
	m := MetadataItem{Name: scalar(n, "name"), EnvRef: scalar(n, "envRef"), Line: n.Line}
	if m.Name == "" {
		return m, errors.New("name is required")
	}
	sources := 0
	if v := value(n, "value"); v != nil {
		sources++
		switch v.Kind {
		case yaml.ScalarNode:
			if v.Tag != "!!null" {
				m.Value = v.Value
			}
		default:
			var x any
			if err := v.Decode(&x); err != nil {
				return m, fmt.Errorf("value: %w", err)
			}
			b, err := json.Marshal(jsonable(x))
			if err != nil {
				return m, fmt.Errorf("value: %w", err)
			}
			m.Value = string(b)
		}
	}
	if ref := value(n, "secretKeyRef"); ref != nil {
		sources++
		if ref.Kind != yaml.MappingNode || scalar(ref, "name") == "" {
			return m, errors.New("secretKeyRef: want {name, key} with a name")
		}
		m.SecretKeyRef = &SecretKeyRef{Name: scalar(ref, "name"), Key: scalar(ref, "key")}
		if m.SecretKeyRef.Key == "" {
			// Dapr reads the secret's own name as the key when none is given.
			m.SecretKeyRef.Key = m.SecretKeyRef.Name
		}
	}
	if m.EnvRef != "" {
		sources++
	}
	if sources > 1 {
		return m, fmt.Errorf("%q: give one of value, secretKeyRef and envRef", m.Name)
	}
	return m, nil
}

// jsonable turns yaml.v3's decoded maps into ones encoding/json takes.
func jsonable(x any) any {
	switch v := x.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonable(e)
		}
		return v
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	case []any:
		for i, e := range v {
			v[i] = jsonable(e)
		}
		return v
	}
	return x
}

func stringList(n *yaml.Node) ([]string, error) {
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, errors.New("want a list of app-ids")
	}
	out := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		if e.Kind != yaml.ScalarNode || e.Value == "" {
			return nil, errors.New("want a list of app-ids")
		}
		out = append(out, e.Value)
	}
	return out, nil
}

func parseDocument(root *yaml.Node, src Source, kind string) (Document, error) {
	meta := mapping(root, "metadata")
	d := Document{Kind: kind, APIVersion: scalar(root, "apiVersion"), Name: scalar(meta, "name"), Namespace: scalar(meta, "namespace"), Source: src}
	what := strings.ToLower(kind) + " " + quote(d.Name)
	if err := checkAPIVersion(root, src, what); err != nil {
		return d, err
	}
	if d.Name == "" {
		return d, &FieldError{Source: src, What: what, Field: "metadata.name", Err: errors.New("required")}
	}
	scopes, err := stringList(value(root, "scopes"))
	if err != nil {
		return d, &FieldError{Source: Source{File: src.File, Line: lineOf(root, "scopes", src.Line)}, What: what, Field: "scopes", Err: err}
	}
	d.Scopes = scopes
	var x any
	if err := root.Decode(&x); err != nil {
		return d, &FieldError{Source: src, What: what, Err: err}
	}
	if d.JSON, err = json.Marshal(jsonable(x)); err != nil {
		return d, &FieldError{Source: src, What: what, Err: err}
	}
	return d, nil
}

// LoadResources reads every .yaml and .yml file directly in each folder (as
// daprd reads --resources-path). It returns the resources of the files that
// are valid and, joined, the errors of the others.
func LoadResources(dirs []string) (*Resources, error) {
	all := &Resources{}
	var errs []error
	for _, dir := range dirs {
		files, err := ResourceFiles(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			res, err := ReadResourceFile(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			all.Append(res)
		}
	}
	return all, errors.Join(errs...)
}

// ReadResourceFile reads and parses one resource file.
func ReadResourceFile(path string) (*Resources, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseResources(path, data)
}

// ResourceFiles lists the YAML files directly in dir, sorted.
func ResourceFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("resources path: %w", err)
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml":
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	return files, nil
}

// Applies reports whether a resource scoped to scopes applies to appID:
// no scopes means every app.
func Applies(scopes []string, appID string) bool {
	if len(scopes) == 0 {
		return true
	}
	for _, s := range scopes {
		if s == appID {
			return true
		}
	}
	return false
}

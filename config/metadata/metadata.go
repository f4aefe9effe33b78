// Package metadata decodes a component's metadata, the name/value pairs under
// spec.metadata of a Dapr Component with secret references already resolved,
// into a backend's typed struct.
//
// A backend declares its fields with struct tags:
//
//	type Metadata struct {
//		SecretsFile     string `meta:"secretsFile" required:"true"`
//		NestedSeparator string `meta:"nestedSeparator" default:":"`
//		MultiValued     bool   `meta:"multiValued" default:"false"`
//	}
//
// and calls Decode, then its own Validate. Names match keys case-insensitively,
// as Dapr's decoder (mapstructure) does, so "secretsfile" fills SecretsFile.
// An empty value counts as absent: the default applies and a required field
// is reported missing. Keys no field reads come back sorted, for the pipeline
// to log as warnings; Dapr passes such keys through, and real files carry
// them.
//
// Value syntax, compared with Dapr 1.18 (dapr/kit/metadata):
//
//   - string: taken as written.
//   - bool: true, t, yes, y, on, 1 or false, f, no, n, off, 0, in any case,
//     with surrounding space ignored. Dapr reads anything that is not true as
//     false; Decode rejects other words instead.
//   - int, int64: strconv.ParseInt with base 0, as Dapr does: "0x1f", "0o17",
//     "0b101" and "1_000" are accepted, and a leading 0 means octal ("010" is
//     8).
//   - float64: strconv.ParseFloat, as Dapr does.
//   - time.Duration: a Go duration ("1m30s", "250ms"), or else a whole number
//     of seconds ("90"), exactly the two forms Dapr accepts. Fractional
//     seconds without a unit ("1.5") are rejected by both.
//   - []string: split at commas, as Dapr does; unlike Dapr, each element is
//     trimmed of space and empty elements are dropped, so "a, b," is
//     [a b].
package metadata

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Struct tags read by Decode.
const (
	tagName     = "meta"     // the metadata key; "-" or no tag: not decoded
	tagDefault  = "default"  // value used when the key is absent or empty
	tagRequired = "required" // "true": absent or empty is an error
)

var durationType = reflect.TypeFor[time.Duration]()

// Decode fills the tagged fields of the struct out points to from in.
//
// A field whose key is present with a non-empty value is set from it; else
// from its default tag; else it keeps what out held, so a backend may also
// set defaults in code before calling Decode. Embedded structs are decoded
// as if their fields were out's own.
//
// unknown lists, sorted and spelled as in in, the keys no field reads. err
// joins one error per bad field, each naming the field's key and the bad
// value, such as `metadata multiValued "maybe": want true or false` or
// `metadata secretsFile: required`. Two keys of in that differ only in case
// are an error, as in Dapr. A mistake in out's declaration (a pointer to no
// struct, a tag on an unsupported type, a bad default) is an error too.
func Decode(in map[string]string, out any) (unknown []string, err error) {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("metadata: Decode needs a non-nil pointer to a struct, got %T", out)
	}
	fields, err := fieldsOf(rv.Elem().Type())
	if err != nil {
		return nil, err
	}

	// Fold the keys, refusing two spellings of one key.
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	folded := make(map[string]string, len(in)) // lower-cased key → key as written
	var errs []error
	for _, k := range keys {
		lk := strings.ToLower(k)
		if prev, dup := folded[lk]; dup {
			errs = append(errs, fmt.Errorf("metadata: keys %q and %q differ only in case", prev, k))
			continue
		}
		folded[lk] = k
	}

	used := make(map[string]bool, len(fields))
	for _, f := range fields {
		lk := strings.ToLower(f.key)
		key, present := folded[lk]
		used[lk] = true
		raw := in[key]
		dst := rv.Elem().FieldByIndex(f.index)
		switch {
		case present && raw != "":
			if err := set(dst, raw); err != nil {
				errs = append(errs, fmt.Errorf("metadata %s %q: %w", f.key, raw, err))
			}
		case f.required:
			errs = append(errs, fmt.Errorf("metadata %s: required", f.key))
		case f.hasDefault:
			if err := set(dst, f.def); err != nil {
				errs = append(errs, fmt.Errorf("metadata %s: bad default %q in the struct tag: %w", f.key, f.def, err))
			}
		}
	}

	for _, k := range keys {
		if !used[strings.ToLower(k)] {
			unknown = append(unknown, k)
		}
	}
	return unknown, errors.Join(errs...)
}

// Field describes one field Decode fills, for documentation and for checking
// a backend's metadata.yaml against its struct.
type Field struct {
	// Key is the metadata key, as the meta tag spells it.
	Key string
	// Type is "string", "bool", "number" or "duration", as Dapr's
	// metadata.yaml spells types; a []string field is a "string" list.
	Type string
	// Default is the default tag; empty when there is none.
	Default string
	// Required is the required tag.
	Required bool
}

// Fields lists the fields Decode fills in the struct v is or points to, in
// declaration order, embedded structs' fields in place.
func Fields(v any) ([]Field, error) {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("metadata: Fields needs a struct or a pointer to one, got %T", v)
	}
	fs, err := fieldsOf(t)
	if err != nil {
		return nil, err
	}
	out := make([]Field, len(fs))
	for i, f := range fs {
		ft := t.FieldByIndex(f.index).Type
		typ := "string"
		switch {
		case ft == durationType:
			typ = "duration"
		case ft.Kind() == reflect.Bool:
			typ = "bool"
		case ft.Kind() == reflect.Int, ft.Kind() == reflect.Int64, ft.Kind() == reflect.Float64:
			typ = "number"
		}
		out[i] = Field{Key: f.key, Type: typ, Default: f.def, Required: f.required}
	}
	return out, nil
}

// field is one decodable struct field.
type field struct {
	key        string
	index      []int
	def        string
	hasDefault bool
	required   bool
}

// fieldsOf lists the tagged fields of t, embedded structs included.
func fieldsOf(t reflect.Type) ([]field, error) {
	var out []field
	seen := map[string]string{} // lower-cased key → Go field name
	var walk func(t reflect.Type, index []int) error
	walk = func(t reflect.Type, index []int) error {
		for i := range t.NumField() {
			sf := t.Field(i)
			idx := append(slices.Clone(index), i)
			name, tagged := sf.Tag.Lookup(tagName)
			if sf.Anonymous && !tagged && sf.Type.Kind() == reflect.Struct {
				if err := walk(sf.Type, idx); err != nil {
					return err
				}
				continue
			}
			if !tagged || name == "-" {
				continue
			}
			if !sf.IsExported() {
				return fmt.Errorf("metadata: field %s (key %q) is not exported", sf.Name, name)
			}
			if name == "" {
				return fmt.Errorf("metadata: field %s has an empty %s tag", sf.Name, tagName)
			}
			if !supported(sf.Type) {
				return fmt.Errorf("metadata: field %s (key %q) has unsupported type %s", sf.Name, name, sf.Type)
			}
			if prev, dup := seen[strings.ToLower(name)]; dup {
				return fmt.Errorf("metadata: fields %s and %s both read key %q", prev, sf.Name, name)
			}
			seen[strings.ToLower(name)] = sf.Name
			f := field{key: name, index: idx}
			f.def, f.hasDefault = sf.Tag.Lookup(tagDefault)
			if r, ok := sf.Tag.Lookup(tagRequired); ok {
				switch r {
				case "true":
					f.required = true
				case "false":
				default:
					return fmt.Errorf("metadata: field %s: %s tag %q: want true or false", sf.Name, tagRequired, r)
				}
			}
			out = append(out, f)
		}
		return nil
	}
	if err := walk(t, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// supported reports whether Decode can set a field of type t.
func supported(t reflect.Type) bool {
	if t == durationType {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

// set parses s into v, whose type supported accepts. Errors say what was
// wanted; the caller adds the key and the value.
func set(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 0, v.Type().Bits())
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return errors.New("out of range")
			}
			return errors.New("want an integer")
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return errors.New("out of range")
			}
			return errors.New("want a number")
		}
		v.SetFloat(f)
	case reflect.Slice:
		v.Set(reflect.ValueOf(SplitList(s)).Convert(v.Type()))
	default:
		// fieldsOf accepts only what supported does.
		panic("metadata: unsupported kind " + v.Kind().String())
	}
	return nil
}

// ParseBool reads a metadata flag: true, t, yes, y, on, 1 or false, f, no, n,
// off, 0, in any case and with surrounding space ignored.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "t", "yes", "y", "on", "1":
		return true, nil
	case "false", "f", "no", "n", "off", "0":
		return false, nil
	}
	return false, errors.New("want true or false")
}

// ParseDuration reads a metadata duration as Dapr does: a Go duration such as
// "1m30s", or else a whole number of seconds such as "90". Surrounding space
// is ignored.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	secs, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, errors.New("out of range")
		}
		return 0, errors.New("want a duration such as 30s or 1m30s, or a whole number of seconds")
	}
	if secs > math.MaxInt64/int64(time.Second) || secs < math.MinInt64/int64(time.Second) {
		return 0, errors.New("out of range")
	}
	return time.Duration(secs) * time.Second, nil
}

// SplitList reads a comma-separated metadata list: each element is trimmed of
// space and empty elements are dropped. It returns nil for a list with no
// elements.
func SplitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

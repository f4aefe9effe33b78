package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"google.golang.org/protobuf/encoding/protowire"
)

// startCPUProfile starts the process's CPU profile; stop ends it and splits
// the sampled CPU time by the goroutines' "role" pprof label (goroutines
// inherit their creator's labels, so each side's gRPC and TLS goroutines
// carry the label of the goroutine that started them).
func startCPUProfile() (stop func() (map[string]float64, error), err error) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	return func() (map[string]float64, error) {
		pprof.StopCPUProfile()
		if path := os.Getenv("XDSSCALE_CPUPROFILE"); path != "" {
			// Kept for `go tool pprof` when asked for.
			_ = os.WriteFile(path, buf.Bytes(), 0o644)
		}
		byRole, err := sumByLabel(buf.Bytes(), "cpu", "role")
		if err != nil {
			return nil, err
		}
		var total int64
		for _, v := range byRole {
			total += v
		}
		if total == 0 {
			return nil, errors.New("CPU profile: no samples")
		}
		share := make(map[string]float64, len(byRole))
		for k, v := range byRole {
			share[k] = float64(v) / float64(total)
		}
		return share, nil
	}, nil
}

// goroutinesByRole counts the process's goroutines by their "role" label.
func goroutinesByRole() (map[string]int64, error) {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 0); err != nil {
		return nil, err
	}
	return sumByLabel(buf.Bytes(), "goroutine", "role")
}

// sumByLabel sums the values of sample type typ (e.g. "cpu") of a gzipped
// pprof profile by the value of the string label key ("" for samples
// without it). It reads only the fields it needs of profile.proto:
// sample_type (1), sample (2) with its value (2) and label (3), and
// string_table (6).
func sumByLabel(gz []byte, typ, key string) (map[string]int64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	type label struct{ key, str int64 }
	type sample struct {
		values []int64
		labels []label
	}
	var (
		strs        []string
		sampleTypes []int64 // string index of each value's type
		samples     []sample
	)
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if wt != protowire.BytesType || (num != 1 && num != 2 && num != 6) {
			n = protowire.ConsumeFieldValue(num, wt, b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		msg, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1: // ValueType{type = 1, unit = 2}
			var t int64
			err := fields(msg, func(num protowire.Number, v uint64, _ []byte) error {
				if num == 1 {
					t = int64(v)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			sampleTypes = append(sampleTypes, t)
		case 2: // Sample{location_id = 1, value = 2, label = 3}
			var s sample
			err := fields(msg, func(num protowire.Number, v uint64, sub []byte) error {
				switch {
				case num == 2 && sub == nil:
					s.values = append(s.values, int64(v))
				case num == 2: // packed
					for len(sub) > 0 {
						x, n := protowire.ConsumeVarint(sub)
						if n < 0 {
							return protowire.ParseError(n)
						}
						s.values = append(s.values, int64(x))
						sub = sub[n:]
					}
				case num == 3 && sub != nil: // Label{key = 1, str = 2}
					var l label
					err := fields(sub, func(num protowire.Number, v uint64, _ []byte) error {
						switch num {
						case 1:
							l.key = int64(v)
						case 2:
							l.str = int64(v)
						}
						return nil
					})
					if err != nil {
						return err
					}
					s.labels = append(s.labels, l)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			samples = append(samples, s)
		case 6:
			strs = append(strs, string(msg))
		}
	}
	str := func(i int64) string {
		if i < 0 || i >= int64(len(strs)) {
			return ""
		}
		return strs[i]
	}
	vi := -1
	for i, t := range sampleTypes {
		if str(t) == typ {
			vi = i
		}
	}
	if vi < 0 {
		return nil, fmt.Errorf("profile: no sample type %q", typ)
	}
	out := map[string]int64{}
	for _, s := range samples {
		if vi >= len(s.values) {
			continue
		}
		role := ""
		for _, l := range s.labels {
			if str(l.key) == key {
				role = str(l.str)
			}
		}
		out[role] += s.values[vi]
	}
	return out, nil
}

// fields calls f for each field of a message: varints with v, length-
// delimited fields with their bytes (sub non-nil); others are skipped.
func fields(b []byte, f func(num protowire.Number, v uint64, sub []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			if err := f(num, v, nil); err != nil {
				return err
			}
		case protowire.BytesType:
			sub, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			if sub == nil {
				sub = []byte{}
			}
			if err := f(num, 0, sub); err != nil {
				return err
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return nil
}

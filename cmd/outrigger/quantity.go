package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// quantitySuffixes are the Kubernetes resource-quantity suffixes daprd accepts
// for --max-body-size and --read-buffer-size.
var quantitySuffixes = []struct {
	suffix string
	mult   float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"B", 1},
}

// parseQuantity parses a byte size such as "4Mi", "128Mi", "1.5Gi", "512k"
// or a plain number of bytes.
func parseQuantity(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := 1.0
	for _, q := range quantitySuffixes {
		if strings.HasSuffix(t, q.suffix) {
			t = strings.TrimSuffix(t, q.suffix)
			mult = q.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) || strings.ContainsAny(t, "xXpPeE_") {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes or a quantity such as 4Mi", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("invalid size %q: must not be negative", s)
	}
	v := n * mult
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return int64(v), nil
}

// quantityFlag is a flag.Value holding a byte size.
type quantityFlag struct {
	bytes *int64
	set   bool
}

func (q *quantityFlag) String() string {
	if q.bytes == nil {
		return ""
	}
	return strconv.FormatInt(*q.bytes, 10)
}

func (q *quantityFlag) Set(s string) error {
	n, err := parseQuantity(s)
	if err != nil {
		return err
	}
	*q.bytes = n
	q.set = true
	return nil
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

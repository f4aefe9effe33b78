package balance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Keys of a Configuration's nameResolution.configuration that the balancer
// reads; the rest belongs to the name resolution backend.
const (
	KeyLoadBalancing    = "loadBalancing"
	KeyOutlierDetection = "outlierDetection"
)

// Settings are the balancer's part of nameResolution.configuration:
//
//	loadBalancing:
//	  policy: round_robin | least_request | ring_hash
//	  hashHeader: x-user          # ring_hash: the header whose value is hashed
//	outlierDetection:
//	  consecutiveFailures: 5      # 0 or absent: 5; -1 turns detection off
//	  baseEjectionTime: 30s
//	  maxEjectionTime: 300s
//	  maxEjectionPercent: 10
type Settings struct {
	Options    Options
	HashHeader string
}

// ParseSettings takes the balancer's keys out of a nameResolution
// configuration and returns them parsed, with the backend's keys in rest.
// Errors name the field.
func ParseSettings(raw map[string]any) (s Settings, rest map[string]any, err error) {
	rest = make(map[string]any, len(raw))
	for k, v := range raw {
		if k != KeyLoadBalancing && k != KeyOutlierDetection {
			rest[k] = v
		}
	}
	var lb struct {
		Policy     string `json:"policy"`
		HashHeader string `json:"hashHeader"`
	}
	if err := decodeStrict(raw[KeyLoadBalancing], &lb); err != nil {
		return s, rest, fmt.Errorf("nameResolution.configuration.%s: %w", KeyLoadBalancing, err)
	}
	if s.Options.Policy, err = ParsePolicy(lb.Policy); err != nil {
		return s, rest, fmt.Errorf("nameResolution.configuration.%s.policy: %w", KeyLoadBalancing, err)
	}
	if lb.HashHeader != "" && s.Options.Policy != RingHash {
		return s, rest, fmt.Errorf("nameResolution.configuration.%s.hashHeader: only the %s policy hashes a header", KeyLoadBalancing, RingHash)
	}
	if s.Options.Policy == RingHash && lb.HashHeader == "" {
		return s, rest, fmt.Errorf("nameResolution.configuration.%s.hashHeader: the %s policy needs the header to hash", KeyLoadBalancing, RingHash)
	}
	s.HashHeader = lb.HashHeader
	var od struct {
		ConsecutiveFailures *int   `json:"consecutiveFailures"`
		BaseEjectionTime    string `json:"baseEjectionTime"`
		MaxEjectionTime     string `json:"maxEjectionTime"`
		MaxEjectionPercent  *int   `json:"maxEjectionPercent"`
	}
	field := "nameResolution.configuration." + KeyOutlierDetection
	if err := decodeStrict(raw[KeyOutlierDetection], &od); err != nil {
		return s, rest, fmt.Errorf("%s: %w", field, err)
	}
	if od.ConsecutiveFailures != nil {
		if *od.ConsecutiveFailures < -1 {
			return s, rest, fmt.Errorf("%s.consecutiveFailures %d: want a count, or -1 to turn detection off", field, *od.ConsecutiveFailures)
		}
		s.Options.Outlier.ConsecutiveFailures = *od.ConsecutiveFailures
	}
	for _, d := range []struct {
		name string
		in   string
		out  *time.Duration
	}{{"baseEjectionTime", od.BaseEjectionTime, &s.Options.Outlier.BaseEjection}, {"maxEjectionTime", od.MaxEjectionTime, &s.Options.Outlier.MaxEjection}} {
		if d.in == "" {
			continue
		}
		v, err := time.ParseDuration(d.in)
		if err != nil || v <= 0 {
			return s, rest, fmt.Errorf("%s.%s %q: want a positive duration such as 30s", field, d.name, d.in)
		}
		*d.out = v
	}
	if p := od.MaxEjectionPercent; p != nil {
		if *p < 0 || *p > 100 {
			return s, rest, fmt.Errorf("%s.maxEjectionPercent %d: want 0 to 100", field, *p)
		}
		s.Options.Outlier.MaxEjectionPercent = *p
	}
	return s, rest, nil
}

// decodeStrict reads a YAML-decoded section into out, refusing unknown
// fields; nil leaves out as it is.
func decodeStrict(v any, out any) error {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

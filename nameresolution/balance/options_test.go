package balance

import (
	"strings"
	"testing"
	"time"
)

func TestParseSettings(t *testing.T) {
	s, rest, err := ParseSettings(map[string]any{
		"client":           map[string]any{"address": "127.0.0.1:8500"},
		"loadBalancing":    map[string]any{"policy": "ring_hash", "hashHeader": "x-user"},
		"outlierDetection": map[string]any{"consecutiveFailures": 3, "baseEjectionTime": "2s", "maxEjectionPercent": 50},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Options.Policy != RingHash || s.HashHeader != "x-user" || s.Options.Outlier.ConsecutiveFailures != 3 ||
		s.Options.Outlier.BaseEjection != 2*time.Second || s.Options.Outlier.MaxEjectionPercent != 50 {
		t.Errorf("settings: %+v", s)
	}
	if _, ok := rest["client"]; !ok || len(rest) != 1 {
		t.Errorf("the backend's keys: %v", rest)
	}
	s, _, err = ParseSettings(nil)
	if err != nil || s.Options.Policy != RoundRobin {
		t.Errorf("no settings: %+v %v", s, err)
	}
	for _, c := range []struct {
		raw  map[string]any
		want string
	}{
		{map[string]any{"loadBalancing": map[string]any{"policy": "random"}}, "loadBalancing.policy"},
		{map[string]any{"loadBalancing": map[string]any{"policy": "ring_hash"}}, "hashHeader"},
		{map[string]any{"loadBalancing": map[string]any{"hashHeader": "x"}}, "hashHeader"},
		{map[string]any{"loadBalancing": map[string]any{"polcy": "x"}}, "polcy"},
		{map[string]any{"outlierDetection": map[string]any{"baseEjectionTime": "soon"}}, "baseEjectionTime"},
		{map[string]any{"outlierDetection": map[string]any{"maxEjectionPercent": 101}}, "maxEjectionPercent"},
		{map[string]any{"outlierDetection": map[string]any{"consecutiveFailures": -7}}, "consecutiveFailures"},
		{map[string]any{"outlierDetection": "yes"}, "outlierDetection"},
	} {
		if _, _, err := ParseSettings(c.raw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one naming %s", c.raw, err, c.want)
		}
	}
}

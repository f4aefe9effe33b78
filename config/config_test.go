package config

import (
	"strings"
	"testing"
	"time"
)

const full = `
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
  tracing:
    samplingRate: "1"
  mtls:
    enabled: true
    workloadCertTTL: "1h"
    allowedClockSkew: "2m"
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: caller
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /orders/*
        httpVerb: ["POST"]
        action: allow
`

func TestParseReadsKnownSectionsAndKeepsTheRest(t *testing.T) {
	c, err := Parse([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	ttl, skew, err := c.Spec.MTLS.Durations()
	if err != nil || ttl != time.Hour || skew != 2*time.Minute {
		t.Fatalf("durations %v %v %v", ttl, skew, err)
	}
	p, err := c.AccessControl()
	if err != nil || p == nil {
		t.Fatalf("access control: %v %v", p, err)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"kind: Component\n", "kind"},
		{"apiVersion: v9\nkind: Configuration\n", "apiVersion"},
		{"kind: Configuration\nspec:\n  mtls:\n    workloadCertTTL: soon\n", "spec.mtls.workloadCertTTL"},
		{"kind: Configuration\nspec:\n  mtls:\n    allowedClockSkew: -1m\n", "negative"},
		{"kind: [\n", "not a Configuration"},
		{"kind: Configuration\nspec:\n  tracing:\n    samplingRate: lots\n", "spec.tracing.samplingRate"},
		{"kind: Configuration\nspec:\n  tracing:\n    otel:\n      protocol: grpc\n", "spec.tracing.otel.endpointAddress"},
	} {
		_, err := Parse([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %q", c.doc, err, c.want)
		}
	}
	cfg, err := Parse([]byte("kind: Configuration\nspec:\n  accessControl:\n    policies:\n    - appId: a\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.AccessControl(); err == nil || !strings.Contains(err.Error(), "trustDomain") {
		t.Errorf("a policy without its trust domain: %v", err)
	}
}

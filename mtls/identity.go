// Package mtls holds the pieces of Outrigger's zero-trust mesh that the
// sidecar, the control plane and the CA share: the SPIFFE identity of an app
// (spiffe://<trust-domain>/ns/<namespace>/<app-id>) and the mutual-TLS
// configurations that prove and check it on every connection. The
// certificate authority lives in mtls/ca, a sidecar's own certificate in
// mtls/svid, access-control policies in mtls/acl and the SPIFFE Workload API
// served to apps in mtls/workloadapi.
package mtls

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults shared with Dapr.
const (
	DefaultTrustDomain = "public"
	DefaultNamespace   = "default"
	// ControlPlaneName is the app-id part of the control plane's own SPIFFE
	// ID. It is Dapr Sentry's, so daprd accepts Outrigger's control plane as
	// its CA; the CA never signs it for anyone else.
	ControlPlaneName = "dapr-sentry"
)

// Identity is who a workload is: an app in a namespace of a trust domain.
type Identity struct {
	TrustDomain spiffeid.TrustDomain
	Namespace   string
	AppID       string
}

// NewIdentity checks the parts and builds an identity. An empty trust domain
// or namespace takes the default.
func NewIdentity(trustDomain, namespace, appID string) (Identity, error) {
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return Identity{}, fmt.Errorf("trust domain %q: %w", trustDomain, err)
	}
	if err := checkSegment("namespace", namespace); err != nil {
		return Identity{}, err
	}
	if err := checkSegment("app-id", appID); err != nil {
		return Identity{}, err
	}
	return Identity{TrustDomain: td, Namespace: namespace, AppID: appID}, nil
}

func checkSegment(what, v string) error {
	if v == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if err := spiffeid.ValidatePathSegment(v); err != nil {
		return fmt.Errorf("%s %q: %w", what, v, err)
	}
	return nil
}

// ID is the identity's SPIFFE ID.
func (i Identity) ID() spiffeid.ID {
	id, err := spiffeid.FromSegments(i.TrustDomain, "ns", i.Namespace, i.AppID)
	if err != nil {
		// NewIdentity and ParseID validated the segments; a zero Identity
		// has none and yields the zero ID.
		return spiffeid.ID{}
	}
	return id
}

// String is the SPIFFE ID as a URI.
func (i Identity) String() string { return i.ID().String() }

// ParseID reads an identity from a SPIFFE ID of the form
// spiffe://<trust-domain>/ns/<namespace>/<app-id>.
func ParseID(id spiffeid.ID) (Identity, error) {
	if id.IsZero() {
		return Identity{}, errors.New("empty SPIFFE ID")
	}
	parts := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(parts) != 3 || parts[0] != "ns" || parts[1] == "" || parts[2] == "" {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: want spiffe://<trust-domain>/ns/<namespace>/<app-id>", id)
	}
	return Identity{TrustDomain: id.TrustDomain(), Namespace: parts[1], AppID: parts[2]}, nil
}

// ParseIDString reads an identity from a SPIFFE ID written as a URI.
func ParseIDString(s string) (Identity, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	return ParseID(id)
}

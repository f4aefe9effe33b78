package mtls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source is a workload's current X.509-SVID and the bundles it trusts. Both
// may change at any time (renewal, root rotation); the TLS configurations
// below read them on every handshake, so a change reaches new connections at
// once and in-flight ones never notice.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// Authorizer decides whether a peer with a verified identity may connect.
type Authorizer func(peer Identity) error

// AuthorizeMemberOf accepts any app of the trust domain td.
func AuthorizeMemberOf(td spiffeid.TrustDomain) Authorizer {
	return func(peer Identity) error {
		if peer.TrustDomain != td {
			return fmt.Errorf("peer %s is not in trust domain %q", peer, td.Name())
		}
		return nil
	}
}

// AuthorizeIdentity accepts exactly want.
func AuthorizeIdentity(want Identity) Authorizer {
	return func(peer Identity) error {
		if peer != want {
			return fmt.Errorf("peer is %s, want %s", peer, want)
		}
		return nil
	}
}

// ServerConfig is the mesh listener's TLS: TLS 1.3 only, a client
// certificate required, the client's chain verified against the source's
// bundle and its identity passed to authorize. Verification runs in
// VerifyConnection, which crypto/tls calls on resumed sessions too, so a
// resumed session is checked against the bundle of the moment.
func ServerConfig(src Source, authorize Authorizer) *tls.Config {
	certs := &certCache{src: src}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAnyClientCert,
		NextProtos:     []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return certs.get() },
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := VerifyPeer(cs, src, authorize)
			return err
		},
	}
}

// ClientConfig is the TLS a sidecar dials another with: TLS 1.3, its own
// certificate offered, the server's chain verified against the bundle and
// its identity passed to authorize, sessions resumed from a shared cache.
func ClientConfig(src Source, authorize Authorizer, sessions tls.ClientSessionCache) *tls.Config {
	certs := &certCache{src: src}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		// The standard verification knows neither SPIFFE IDs nor bundles;
		// VerifyConnection does the whole check instead.
		InsecureSkipVerify:   true, //nolint:gosec // verified in VerifyConnection
		ClientSessionCache:   sessions,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return certs.get() },
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := VerifyPeer(cs, src, authorize)
			return err
		},
	}
}

// ErrNoPeerCertificate means the peer offered no certificate.
var ErrNoPeerCertificate = errors.New("the peer offered no certificate")

// VerifyPeer checks the peer's chain in cs against the bundles of src and
// returns its identity, after authorize (if not nil) accepted it.
func VerifyPeer(cs tls.ConnectionState, bundles x509bundle.Source, authorize Authorizer) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	id, _, err := x509svid.Verify(cs.PeerCertificates, bundles)
	if err != nil {
		return Identity{}, fmt.Errorf("peer certificate: %w", err)
	}
	peer, err := ParseID(id)
	if err != nil {
		return Identity{}, err
	}
	if authorize != nil {
		if err := authorize(peer); err != nil {
			return Identity{}, err
		}
	}
	return peer, nil
}

// PeerIdentity reads the identity of a peer whose chain VerifyConnection
// already checked (a connection made with ServerConfig or ClientConfig).
func PeerIdentity(cs *tls.ConnectionState) (Identity, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return Identity{}, err
	}
	return ParseID(id)
}

// certCache turns the source's SVID into a tls.Certificate once per SVID.
type certCache struct {
	src Source

	mu   sync.Mutex
	svid *x509svid.SVID
	cert *tls.Certificate
}

func (c *certCache) get() (*tls.Certificate, error) {
	svid, err := c.src.GetX509SVID()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if svid == c.svid && c.cert != nil {
		return c.cert, nil
	}
	c.svid, c.cert = svid, TLSCertificate(svid)
	return c.cert, nil
}

// TLSCertificate turns an SVID into a certificate crypto/tls can offer.
func TLSCertificate(svid *x509svid.SVID) *tls.Certificate {
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

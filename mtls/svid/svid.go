// Package svid keeps a sidecar's own X.509-SVID current: it makes a key and
// a certificate signing request, sends it to the certificate authority over
// Dapr Sentry's API (dapr.proto.sentry.v1.CA/SignCertificate) on a mutual-TLS
// connection, and renews at about 70% of the certificate's life. The Manager
// is the source of the mesh's TLS configurations (mtls.Source) and of the
// SPIFFE Workload API served to the app; a renewal reaches new handshakes at
// once and never disturbs a connection in flight.
package svid

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/mtls"
)

// Options configure a Manager.
type Options struct {
	// Identity is the SPIFFE identity asked for.
	Identity mtls.Identity
	// CAAddress is host:port of the certificate authority (the control plane).
	CAAddress string
	// TrustAnchors verify the authority's own certificate until the first
	// answer brings the authority's bundle.
	TrustAnchors []*x509.Certificate
	// Token returns the join token proving Identity; nil or an empty token
	// sends none (a renewal proves itself with the current certificate).
	Token func() (string, error)
	// RenewFraction of a certificate's life after which it is renewed (0.7).
	RenewFraction float64
	Logger        *slog.Logger
	// Metrics, when set, count the first certificate and the renewals.
	Metrics *Metrics
}

// Manager holds the current SVID and bundle. Create it with New and call
// Start before use.
type Manager struct {
	opts  Options
	creds credentials.TransportCredentials
	caTLS *tls.Config

	mu      sync.RWMutex
	svid    *x509svid.SVID
	bundle  *x509bundle.Bundle
	changed chan struct{}

	renewals chan chan error
}

// New prepares a manager; nothing is requested until Start.
func New(opts Options) (*Manager, error) {
	if opts.CAAddress == "" {
		return nil, errors.New("svid: the certificate authority's address is required")
	}
	if len(opts.TrustAnchors) == 0 {
		return nil, errors.New("svid: trust anchors are required to verify the certificate authority (--trust-anchors-file or DAPR_TRUST_ANCHORS)")
	}
	if opts.RenewFraction <= 0 || opts.RenewFraction >= 1 {
		opts.RenewFraction = 0.7
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Manager{
		opts:     opts,
		bundle:   x509bundle.FromX509Authorities(opts.Identity.TrustDomain, opts.TrustAnchors),
		changed:  make(chan struct{}),
		renewals: make(chan chan error),
	}
	tlsCfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection against the bundle
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := mtls.VerifyPeer(cs, m, isControlPlane)
			return err
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			m.mu.RLock()
			s := m.svid
			m.mu.RUnlock()
			if s == nil || time.Now().After(s.Certificates[0].NotAfter) {
				return &tls.Certificate{}, nil // none yet: prove the identity with a token
			}
			return mtls.TLSCertificate(s), nil
		},
	}
	m.creds = credentials.NewTLS(tlsCfg)
	m.caTLS = tlsCfg
	return m, nil
}

// isControlPlane accepts the authority's own identity in any namespace.
func isControlPlane(peer mtls.Identity) error {
	if peer.AppID != mtls.ControlPlaneName {
		return fmt.Errorf("the certificate authority presented %s, not a control plane identity", peer)
	}
	return nil
}

// Start gets the first certificate, retrying until ctx is done. Run keeps
// it renewed afterwards.
func (m *Manager) Start(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		reason, err := m.fetch(ctx)
		if err == nil {
			break
		}
		switch status.Code(err) {
		case codes.PermissionDenied, codes.InvalidArgument, codes.Unauthenticated:
			// The authority refused; asking again will not change its mind.
			m.opts.Metrics.initFailed(reason)
			return fmt.Errorf("svid: the certificate authority at %s refused: %s", m.opts.CAAddress, status.Convert(err).Message())
		}
		m.opts.Logger.Warn("getting this sidecar's certificate failed; retrying", "ca", m.opts.CAAddress, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			m.opts.Metrics.initFailed(reason)
			return fmt.Errorf("svid: no certificate from %s: %w", m.opts.CAAddress, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	m.opts.Metrics.initialized()
	return nil
}

// Renew asks for a new certificate now and waits for the answer.
func (m *Manager) Renew(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case m.renewals <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run renews the certificate at RenewFraction of its life, and whenever
// Renew asks, until ctx is done. A failed renewal is retried with backoff
// while the current certificate serves on.
func (m *Manager) Run(ctx context.Context) {
	retry := time.Second
	next := m.renewAt()
	for {
		t := time.NewTimer(time.Until(next))
		var done chan error
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case done = <-m.renewals:
			t.Stop()
		case <-t.C:
		}
		reason, err := m.fetch(ctx)
		// Counted before the answer goes back: whoever asked may stop Run
		// as soon as it has it.
		switch {
		case err == nil:
			m.opts.Metrics.renewed()
		case ctx.Err() == nil:
			m.opts.Metrics.renewFailed(reason)
		}
		if done != nil {
			done <- err
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.opts.Logger.Error("renewing this sidecar's certificate failed; retrying", "err", err, "retry_in", retry, "expires", m.expiry().UTC())
			next = time.Now().Add(retry)
			retry = min(retry*2, time.Minute)
			continue
		}
		retry = time.Second
		next = m.renewAt()
	}
}

func (m *Manager) expiry() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.svid == nil {
		return time.Time{}
	}
	return m.svid.Certificates[0].NotAfter
}

// renewAt is RenewFraction of the way from the last issue to the expiry.
func (m *Manager) renewAt() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.svid == nil {
		return time.Now()
	}
	c := m.svid.Certificates[0]
	// The certificate's NotBefore is back-dated by the allowed clock skew,
	// so the life left counts from now, when it arrived.
	now := time.Now()
	life := c.NotAfter.Sub(now)
	return now.Add(time.Duration(float64(life) * m.opts.RenewFraction))
}

// fetch asks the authority for a new certificate; a failure comes with its
// reason for the metrics.
func (m *Manager) fetch(ctx context.Context) (reason string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return reasonCSR, err
	}
	id := m.opts.Identity
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.AppID},
		URIs:    nil,
	}, key)
	if err != nil {
		return reasonCSR, err
	}
	req := &sentryv1pb.SignCertificateRequest{
		Id:                        id.AppID,
		Namespace:                 id.Namespace,
		TrustDomain:               id.TrustDomain.Name(),
		CertificateSigningRequest: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
	}
	if m.opts.Token != nil {
		tok, err := m.opts.Token()
		if err != nil {
			return reasonToken, fmt.Errorf("join token: %w", err)
		}
		req.Token = strings.TrimSpace(tok)
	}
	// A connection per request: each handshake offers the certificate of
	// the moment, which is what proves a renewal.
	conn, err := grpc.NewClient(m.opts.CAAddress, grpc.WithTransportCredentials(m.creds))
	if err != nil {
		return reasonConn, fmt.Errorf("certificate authority %s: %w", m.opts.CAAddress, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := sentryv1pb.NewCAClient(conn).SignCertificate(cctx, req)
	if err != nil {
		return signReason(err), err
	}
	certs, err := mtls.ParseCertsPEM(resp.GetWorkloadCertificate())
	if err != nil {
		return reasonInvalid, fmt.Errorf("the authority's answer: %w", err)
	}
	s := &x509svid.SVID{Certificates: certs, PrivateKey: key}
	if s.ID, err = x509svid.IDFromCert(certs[0]); err != nil {
		return reasonInvalid, fmt.Errorf("the authority's answer: %w", err)
	}
	if s.ID != id.ID() {
		return reasonInvalid, fmt.Errorf("the authority signed %s, not %s", s.ID, id)
	}
	var anchors []*x509.Certificate
	for _, p := range resp.GetTrustChainCertificates() {
		c, err := mtls.ParseCertsPEM(p)
		if err != nil {
			return reasonInvalid, fmt.Errorf("the authority's trust bundle: %w", err)
		}
		anchors = append(anchors, c...)
	}
	m.mu.Lock()
	bundle := m.bundle
	if len(anchors) > 0 {
		bundle = x509bundle.FromX509Authorities(id.TrustDomain, anchors)
	}
	m.mu.Unlock()
	if _, _, err := x509svid.Verify(certs, bundle); err != nil {
		return reasonInvalid, fmt.Errorf("the signed certificate does not verify against the trust bundle: %w", err)
	}
	m.mu.Lock()
	m.svid, m.bundle = s, bundle
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	m.opts.Metrics.expires(certs[0].NotAfter)
	m.opts.Logger.Debug("certificate renewed", "id", s.ID.String(), "expires", certs[0].NotAfter.UTC())
	return "", nil
}

// SetTrustAnchors replaces the trust bundle (pushed over xDS between
// renewals). The current certificate must still verify against it, so a
// bundle that would cut this sidecar off is refused.
func (m *Manager) SetTrustAnchors(anchors []*x509.Certificate) error {
	if len(anchors) == 0 {
		return errors.New("svid: an empty trust bundle")
	}
	bundle := x509bundle.FromX509Authorities(m.opts.Identity.TrustDomain, anchors)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.svid != nil {
		if _, _, err := x509svid.Verify(m.svid.Certificates, bundle); err != nil {
			return fmt.Errorf("svid: the new trust bundle does not verify this sidecar's own certificate: %w", err)
		}
	}
	if m.bundle.Equal(bundle) {
		return nil
	}
	m.bundle = bundle
	close(m.changed)
	m.changed = make(chan struct{})
	m.opts.Logger.Info("trust bundle updated", "anchors", len(anchors))
	return nil
}

// GetX509SVID returns the current SVID (an x509svid.Source).
func (m *Manager) GetX509SVID() (*x509svid.SVID, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.svid == nil {
		return nil, errors.New("svid: no certificate yet")
	}
	return m.svid, nil
}

// GetX509BundleForTrustDomain returns the bundle (an x509bundle.Source).
func (m *Manager) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if td != m.bundle.TrustDomain() {
		return nil, fmt.Errorf("svid: no bundle for trust domain %q", td.Name())
	}
	return m.bundle, nil
}

// X509SVID returns the SVID with its trust domain's bundle.
func (m *Manager) X509SVID() (*x509svid.SVID, *x509bundle.Bundle, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.svid == nil {
		return nil, nil, errors.New("svid: no certificate yet")
	}
	return m.svid, m.bundle, nil
}

// Changed is closed at the next change of the SVID or the bundle.
func (m *Manager) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed
}

// ControlPlaneTLS is the TLS towards the control plane (the CA and the
// xDS server): this sidecar's current certificate offered, the control
// plane's identity required.
func (m *Manager) ControlPlaneTLS() *tls.Config { return m.caTLS.Clone() }

// Identity is the identity this manager holds.
func (m *Manager) Identity() mtls.Identity { return m.opts.Identity }

// ServerConfig is the mesh listener's TLS: any app of the trust domain may connect.
func (m *Manager) ServerConfig() *tls.Config {
	return mtls.ServerConfig(m, mtls.AuthorizeMemberOf(m.opts.Identity.TrustDomain))
}

// ClientConfig is the TLS towards the sidecar of appID in namespace: the
// peer must prove exactly that identity.
func (m *Manager) ClientConfig(appID, namespace string, sessions tls.ClientSessionCache) *tls.Config {
	want := mtls.Identity{TrustDomain: m.opts.Identity.TrustDomain, Namespace: namespace, AppID: appID}
	return mtls.ClientConfig(m, mtls.AuthorizeIdentity(want), sessions)
}

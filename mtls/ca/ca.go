// Package ca is Outrigger's certificate authority: it keeps a root and an
// issuing certificate (generated and persisted, or brought by the user),
// signs X.509-SVIDs for proven identities, mints join tokens that prove an
// identity to it, rotates its root without breaking trust, and serves Dapr
// Sentry's SignCertificate API (server.go) so that Outrigger sidecars and
// daprd alike get their certificates from it.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrigger/outrigger/mtls"
)

// Defaults, as Dapr Sentry's.
const (
	DefaultWorkloadCertTTL  = 24 * time.Hour
	DefaultAllowedClockSkew = 15 * time.Minute
	// DefaultRootTTL is the lifetime of a generated root and issuer.
	DefaultRootTTL = 365 * 24 * time.Hour
)

// File names in the data directory.
const (
	// TrustAnchorsFile holds every anchor a workload must trust now; give it
	// to sidecars as --trust-anchors-file.
	TrustAnchorsFile = "trust-anchors.pem"
	generationsDir   = "generations"
	tokenKeyFile     = "token.key"
)

// Options configure an Authority.
type Options struct {
	// DataDir keeps generated roots, the trust anchors file and the join
	// token key. Required.
	DataDir string
	// TrustDomain of every identity signed (default "public").
	TrustDomain string
	// WorkloadCertTTL and AllowedClockSkew shape signed certificates
	// (the Configuration's mtls.workloadCertTTL and mtls.allowedClockSkew).
	WorkloadCertTTL  time.Duration
	AllowedClockSkew time.Duration
	// RootTTL is the lifetime of generated roots (default one year); a root
	// is rotated when less than three workload lifetimes of it remain.
	RootTTL time.Duration

	// IssuerCertFile, IssuerKeyFile and TrustAnchorsFile bring the user's
	// own issuer (PEM certificate chain and key) and the roots it chains to.
	// All three or none. With them nothing is generated or rotated.
	IssuerCertFile   string
	IssuerKeyFile    string
	TrustAnchorsFile string

	Logger *slog.Logger
	// Now is the clock (tests move it); default time.Now.
	Now func() time.Time
}

// generation is one root with its issuer. Generations overlap during a
// rotation: a new one is trusted before it signs, an old one is trusted
// until every certificate it signed has expired.
type generation struct {
	N          int       `json:"n"`
	SignFrom   time.Time `json:"signFrom"`
	TrustUntil time.Time `json:"trustUntil,omitzero"`

	roots      []*x509.Certificate
	issuer     []*x509.Certificate // issuer first, then its parents below the root
	issuerKey  crypto.Signer
	generation bool // false: brought by the user
}

// Authority signs workload certificates. It is safe for concurrent use.
type Authority struct {
	opts Options
	td   spiffeid.TrustDomain
	log  *slog.Logger

	tokenKey []byte

	mu   sync.RWMutex
	gens []*generation // by N
}

// New loads the authority's keys from opts, generating a first root and
// issuer in the data directory when there are none and none were brought.
func New(opts Options) (*Authority, error) {
	if opts.DataDir == "" {
		return nil, errors.New("ca: a data directory is required")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = mtls.DefaultTrustDomain
	}
	if opts.WorkloadCertTTL == 0 {
		opts.WorkloadCertTTL = DefaultWorkloadCertTTL
	}
	if opts.AllowedClockSkew == 0 {
		opts.AllowedClockSkew = DefaultAllowedClockSkew
	}
	if opts.RootTTL == 0 {
		opts.RootTTL = DefaultRootTTL
	}
	if opts.WorkloadCertTTL < 0 || opts.AllowedClockSkew < 0 || opts.RootTTL < 0 {
		return nil, errors.New("ca: workloadCertTTL, allowedClockSkew and the root lifetime must not be negative")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	td, err := spiffeid.TrustDomainFromString(opts.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("ca: trust domain %q: %w", opts.TrustDomain, err)
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: data directory: %w", err)
	}
	a := &Authority{opts: opts, td: td, log: opts.Logger}

	brought := 0
	for _, f := range []string{opts.IssuerCertFile, opts.IssuerKeyFile, opts.TrustAnchorsFile} {
		if f != "" {
			brought++
		}
	}
	switch brought {
	case 0:
		if err := a.loadGenerations(); err != nil {
			return nil, err
		}
		if len(a.gens) == 0 {
			if _, err := a.newGeneration(opts.Now()); err != nil {
				return nil, err
			}
		}
		if a.tokenKey, err = loadOrCreateTokenKey(filepath.Join(opts.DataDir, tokenKeyFile)); err != nil {
			return nil, err
		}
	case 3:
		g, err := loadBrought(opts.IssuerCertFile, opts.IssuerKeyFile, opts.TrustAnchorsFile)
		if err != nil {
			return nil, err
		}
		a.gens = []*generation{g}
		// Replicas given the same issuer key mint and accept the same tokens.
		if a.tokenKey, err = deriveTokenKey(g.issuerKey); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("ca: --issuer-cert, --issuer-key and --trust-anchors go together: give all three or none")
	}
	if err := a.writeTrustAnchors(); err != nil {
		return nil, err
	}
	return a, nil
}

// TrustDomain is the trust domain the authority signs in.
func (a *Authority) TrustDomain() spiffeid.TrustDomain { return a.td }

// Bundle is every anchor trusted now.
func (a *Authority) Bundle() *x509bundle.Bundle {
	now := a.opts.Now()
	a.mu.RLock()
	defer a.mu.RUnlock()
	b := x509bundle.New(a.td)
	for _, g := range a.gens {
		if g.TrustUntil.IsZero() || now.Before(g.TrustUntil) {
			for _, r := range g.roots {
				b.AddX509Authority(r)
			}
		}
	}
	return b
}

// GetX509BundleForTrustDomain makes the authority an x509bundle.Source.
func (a *Authority) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != a.td {
		return nil, fmt.Errorf("no bundle for trust domain %q", td.Name())
	}
	return a.Bundle(), nil
}

// signer is the generation that signs now: the newest whose SignFrom has come.
func (a *Authority) signer(now time.Time) *generation {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var cur *generation
	for _, g := range a.gens {
		if !g.SignFrom.After(now) {
			cur = g
		}
	}
	if cur == nil && len(a.gens) > 0 {
		cur = a.gens[0]
	}
	return cur
}

// ErrBadCSR marks a certificate signing request the authority refuses.
var ErrBadCSR = errors.New("bad certificate signing request")

// Sign checks a DER certificate signing request and signs a certificate
// for id, whatever names the request asked for. It returns the chain: the
// workload certificate, then the issuer certificates up to (not including)
// the root.
func (a *Authority) Sign(csrDER []byte, id mtls.Identity) ([]*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if id.TrustDomain != a.td {
		return nil, fmt.Errorf("identity %s is not in the authority's trust domain %q", id, a.td.Name())
	}
	return a.issue(csr.PublicKey, id, a.opts.WorkloadCertTTL)
}

func (a *Authority) issue(pub crypto.PublicKey, id mtls.Identity, ttl time.Duration, hosts ...string) ([]*x509.Certificate, error) {
	now := a.opts.Now()
	g := a.signer(now)
	if g == nil {
		return nil, errors.New("ca: no issuer")
	}
	notAfter := now.Add(ttl)
	if issuerEnd := g.issuer[0].NotAfter; notAfter.After(issuerEnd) {
		notAfter = issuerEnd
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{id.Namespace}, CommonName: id.AppID},
		URIs:                  []*url.URL{id.ID().URL()},
		NotBefore:             now.Add(-a.opts.AllowedClockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	// Other SANs are allowed beside the one URI SAN (X509-SVID spec); the
	// control plane's own certificate names its addresses for clients that
	// check host names.
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, g.issuer[0], pub, g.issuerKey)
	if err != nil {
		return nil, fmt.Errorf("ca: signing: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return append([]*x509.Certificate{leaf}, g.issuer...), nil
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA curve %s: want P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

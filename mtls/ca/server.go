package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	sentryv1pb "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outrigger/outrigger/mtls"
)

// maxCSRSize bounds a signing request; a real one is under 1 KiB.
const maxCSRSize = 16 << 10

// ServerOptions configure the Sentry API server.
type ServerOptions struct {
	// Dev also signs, without a token, requests that arrive over loopback:
	// the development control process of `outrigger run` trusts every local
	// app of its user.
	Dev bool
	// Registerer receives the server's metrics (Dapr Sentry's names); nil
	// leaves them unregistered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Server is Dapr Sentry's CA service (dapr.proto.sentry.v1.CA) on an
// Authority. A caller proves the identity it asks for by one of: the
// still-valid certificate of that identity offered in the TLS handshake (a
// renewal), a join token for it, or (Dev) a loopback address.
type Server struct {
	sentryv1pb.UnimplementedCAServer
	ca  *Authority
	dev bool
	log *slog.Logger

	received prometheus.Counter
	signed   prometheus.Counter
	failed   *prometheus.CounterVec
}

// NewServer makes the CA service of a.
func NewServer(a *Authority, opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		ca:  a,
		dev: opts.Dev,
		log: opts.Logger,
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dapr_sentry_cert_sign_request_received_total", Help: "Certificate signing requests received.",
		}),
		signed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dapr_sentry_cert_sign_success_total", Help: "Certificates signed.",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_sentry_cert_sign_failure_total", Help: "Certificate signing requests refused, by reason.",
		}, []string{"reason"}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.received, s.signed, s.failed)
	}
	return s
}

// Register adds the CA service to g.
func (s *Server) Register(g *grpc.Server) { sentryv1pb.RegisterCAServer(g, s) }

// SignCertificate signs the CSR of a proven identity.
func (s *Server) SignCertificate(ctx context.Context, req *sentryv1pb.SignCertificateRequest) (*sentryv1pb.SignCertificateResponse, error) {
	s.received.Inc()
	from := "unknown"
	p, _ := peer.FromContext(ctx)
	if p != nil && p.Addr != nil {
		from = p.Addr.String()
	}
	refuse := func(reason string, code codes.Code, format string, args ...any) error {
		s.failed.WithLabelValues(reason).Inc()
		msg := fmt.Sprintf(format, args...)
		s.log.Warn("certificate request refused", "reason", reason, "app_id", req.GetId(), "namespace", req.GetNamespace(), "from", from, "err", msg)
		return status.Error(code, msg)
	}

	td := req.GetTrustDomain()
	if td == "" {
		td = s.ca.TrustDomain().Name()
	}
	if td != s.ca.TrustDomain().Name() {
		return nil, refuse("trust_domain", codes.PermissionDenied, "trust domain %q: this authority signs only in %q", td, s.ca.TrustDomain().Name())
	}
	want, err := mtls.NewIdentity(td, req.GetNamespace(), req.GetId())
	if err != nil {
		return nil, refuse("bad_identity", codes.InvalidArgument, "identity: %v", err)
	}
	if want.AppID == mtls.ControlPlaneName {
		return nil, refuse("reserved_identity", codes.PermissionDenied, "app-id %q is the control plane's own", want.AppID)
	}
	csrPEM := req.GetCertificateSigningRequest()
	if len(csrPEM) == 0 || len(csrPEM) > maxCSRSize {
		return nil, refuse("bad_csr", codes.InvalidArgument, "certificate_signing_request: want a PEM CSR of at most %d bytes, got %d bytes", maxCSRSize, len(csrPEM))
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, refuse("bad_csr", codes.InvalidArgument, "certificate_signing_request: not a PEM CERTIFICATE REQUEST")
	}

	how, err := s.proven(p, req, want)
	if err != nil {
		return nil, refuse("unproven_identity", codes.PermissionDenied, "%s: %v", want, err)
	}
	chain, err := s.ca.Sign(block.Bytes, want)
	if err != nil {
		if errors.Is(err, ErrBadCSR) {
			return nil, refuse("bad_csr", codes.InvalidArgument, "%v", err)
		}
		return nil, refuse("sign", codes.Internal, "%v", err)
	}
	s.signed.Inc()
	s.log.Info("certificate signed", "id", want.String(), "proof", how, "from", from, "expires", chain[0].NotAfter.UTC())
	resp := &sentryv1pb.SignCertificateResponse{
		WorkloadCertificate: mtls.CertsPEM(chain),
		ValidUntil:          timestamppb.New(chain[0].NotAfter),
	}
	// The bundle rides with every certificate: a workload learns new
	// anchors (a root rotation) when it renews.
	for _, anchor := range s.ca.Bundle().X509Authorities() {
		resp.TrustChainCertificates = append(resp.TrustChainCertificates, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: anchor.Raw}))
	}
	return resp, nil
}

// proven says how the caller proved it is want, or why it did not.
func (s *Server) proven(p *peer.Peer, req *sentryv1pb.SignCertificateRequest, want mtls.Identity) (string, error) {
	var reasons []error
	if p != nil {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			got, err := mtls.VerifyPeer(ti.State, s.ca, nil)
			switch {
			case err != nil:
				reasons = append(reasons, fmt.Errorf("client certificate: %w", err))
			case got != want:
				reasons = append(reasons, fmt.Errorf("client certificate is %s", got))
			default:
				return "certificate", nil
			}
		}
	}
	if tok := req.GetToken(); tok != "" {
		if req.GetTokenValidator() == sentryv1pb.SignCertificateRequest_KUBERNETES {
			reasons = append(reasons, errors.New("Kubernetes service-account tokens are not supported yet; use a join token"))
		} else {
			app, ns, err := s.ca.VerifyToken(tok)
			switch {
			case err != nil:
				reasons = append(reasons, err)
			case app != want.AppID || ns != want.Namespace:
				reasons = append(reasons, fmt.Errorf("the join token is for app-id %q in namespace %q", app, ns))
			default:
				return "token", nil
			}
		}
	}
	if s.dev && p != nil && isLoopback(p.Addr) {
		return "dev-loopback", nil
	}
	if len(reasons) == 0 {
		return "", errors.New("no proof of identity: give a join token (OUTRIGGER_JOIN_TOKEN or --join-token-file)")
	}
	return "", errors.Join(reasons...)
}

func isLoopback(a net.Addr) bool {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServingCertificates returns a tls.Config.GetCertificate for the control
// plane's own certificate (spiffe://<td>/ns/<namespace>/dapr-sentry), signed
// by the authority itself and renewed at half its life.
// hosts (IP addresses or DNS names) are added as SANs.
func (a *Authority) ServingCertificates(namespace string, hosts ...string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	var mu sync.Mutex
	var cur *tls.Certificate
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		now := a.opts.Now()
		if cur != nil && now.Before(cur.Leaf.NotBefore.Add(cur.Leaf.NotAfter.Sub(cur.Leaf.NotBefore)/2)) {
			return cur, nil
		}
		id, err := mtls.NewIdentity(a.td.Name(), namespace, mtls.ControlPlaneName)
		if err != nil {
			return nil, err
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		chain, err := a.issue(&key.PublicKey, id, a.opts.WorkloadCertTTL, hosts...)
		if err != nil {
			return nil, err
		}
		c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
		for _, x := range chain {
			c.Certificate = append(c.Certificate, x.Raw)
		}
		cur = c
		return cur, nil
	}
}

// ServerTLSConfig is the control plane's TLS: its own certificate, and a
// client certificate asked for but not required (a renewal offers one; a
// first request proves itself with a token instead). Verification of an
// offered certificate happens in SignCertificate, so an expired one does
// not break the handshake that carries a token.
func (a *Authority) ServerTLSConfig(namespace string, hosts ...string) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: a.ServingCertificates(namespace, hosts...),
		ClientAuth:     tls.RequestClientCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

package workloadapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// securityHeader is the metadata key every Workload API call must carry with
// the value "true". It proves the call was made deliberately by a Workload API
// client (a browser or a confused proxy cannot set it), as the SPIFFE Workload
// Endpoint specification requires.
const securityHeader = "workload.spiffe.io"

// Canonical errors of this server. The security header message is SPIRE's.
var (
	errSecurityHeader = status.Error(codes.InvalidArgument, "security header missing from request")
	errJWTUnsupported = status.Error(codes.Unimplemented,
		"JWT-SVIDs are not supported by the Outrigger Workload API; only X.509-SVIDs (FetchX509SVID, FetchX509Bundles) are served")
	errWITUnsupported = status.Error(codes.Unimplemented,
		"WIT-SVIDs are not supported by the Outrigger Workload API; only X.509-SVIDs (FetchX509SVID, FetchX509Bundles) are served")
)

func checkSecurityHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(securityHeader); len(v) != 1 || v[0] != "true" {
		return errSecurityHeader
	}
	return nil
}

func requireSecurityHeaderUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkSecurityHeader(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func requireSecurityHeaderStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := checkSecurityHeader(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

// service implements the generated SpiffeWorkloadAPIServer. It is separate
// from Server so the gRPC methods do not become part of Server's API.
type service struct {
	workloadpb.UnimplementedSpiffeWorkloadAPIServer

	src    Source
	logger *slog.Logger
}

var _ workloadpb.SpiffeWorkloadAPIServer = (*service)(nil)

// FetchX509SVID streams the current X.509-SVID, then a new message after each
// change of the source, until the client goes away.
func (s *service) FetchX509SVID(_ *workloadpb.X509SVIDRequest, stream grpc.ServerStreamingServer[workloadpb.X509SVIDResponse]) error {
	return s.watch(stream.Context(), "FetchX509SVID", func() error {
		resp, err := s.x509SVIDResponse()
		if err != nil {
			return err
		}
		return stream.Send(resp)
	})
}

// FetchX509Bundles streams the current trust bundle, then a new message after
// each change of the source, until the client goes away.
func (s *service) FetchX509Bundles(_ *workloadpb.X509BundlesRequest, stream grpc.ServerStreamingServer[workloadpb.X509BundlesResponse]) error {
	return s.watch(stream.Context(), "FetchX509Bundles", func() error {
		resp, err := s.x509BundlesResponse()
		if err != nil {
			return err
		}
		return stream.Send(resp)
	})
}

// FetchJWTSVID is not supported.
func (s *service) FetchJWTSVID(context.Context, *workloadpb.JWTSVIDRequest) (*workloadpb.JWTSVIDResponse, error) {
	return nil, errJWTUnsupported
}

// FetchJWTBundles is not supported.
func (s *service) FetchJWTBundles(*workloadpb.JWTBundlesRequest, grpc.ServerStreamingServer[workloadpb.JWTBundlesResponse]) error {
	return errJWTUnsupported
}

// ValidateJWTSVID is not supported.
func (s *service) ValidateJWTSVID(context.Context, *workloadpb.ValidateJWTSVIDRequest) (*workloadpb.ValidateJWTSVIDResponse, error) {
	return nil, errJWTUnsupported
}

// FetchWITSVID is not supported.
func (s *service) FetchWITSVID(*workloadpb.WITSVIDRequest, grpc.ServerStreamingServer[workloadpb.WITSVIDResponse]) error {
	return errWITUnsupported
}

// FetchWITBundles is not supported.
func (s *service) FetchWITBundles(*workloadpb.WITBundlesRequest, grpc.ServerStreamingServer[workloadpb.WITBundlesResponse]) error {
	return errWITUnsupported
}

// watch calls send once, then again each time the source changes, until ctx
// is done or send fails. The change channel is taken before each send so that
// a change during the send is not missed.
func (s *service) watch(ctx context.Context, method string, send func() error) error {
	s.logger.Debug("workload API stream opened", "method", method)
	defer s.logger.Debug("workload API stream closed", "method", method)
	for {
		changed := s.src.Changed()
		if err := send(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-changed:
		}
	}
}

func (s *service) x509SVIDResponse() (*workloadpb.X509SVIDResponse, error) {
	svid, bundle, err := s.current()
	if err != nil {
		return nil, err
	}
	certs, key, err := svid.MarshalRaw()
	if err != nil {
		s.logger.Warn("workload API: cannot marshal X.509-SVID", "spiffe_id", svid.ID.String(), "error", err)
		return nil, status.Errorf(codes.Unavailable, "X.509-SVID not available: %v", err)
	}
	return &workloadpb.X509SVIDResponse{
		Svids: []*workloadpb.X509SVID{{
			SpiffeId:    svid.ID.String(),
			X509Svid:    certs,
			X509SvidKey: key,
			Bundle:      concatDER(bundle.X509Authorities()),
		}},
	}, nil
}

func (s *service) x509BundlesResponse() (*workloadpb.X509BundlesResponse, error) {
	_, bundle, err := s.current()
	if err != nil {
		return nil, err
	}
	return &workloadpb.X509BundlesResponse{
		Bundles: map[string][]byte{
			bundle.TrustDomain().IDString(): concatDER(bundle.X509Authorities()),
		},
	}, nil
}

// current reads the source and checks what it returned. Errors are gRPC
// statuses with code Unavailable: the client may retry later.
func (s *service) current() (*x509svid.SVID, *x509bundle.Bundle, error) {
	svid, bundle, err := s.src.X509SVID()
	if err == nil {
		err = checkSVID(svid, bundle)
	}
	if err != nil {
		s.logger.Warn("workload API: no usable X.509-SVID", "error", err)
		return nil, nil, status.Errorf(codes.Unavailable, "X.509-SVID not available: %v", err)
	}
	return svid, bundle, nil
}

func checkSVID(svid *x509svid.SVID, bundle *x509bundle.Bundle) error {
	switch {
	case svid == nil || len(svid.Certificates) == 0:
		return errors.New("source returned no SVID")
	case svid.PrivateKey == nil:
		return fmt.Errorf("SVID %s has no private key", svid.ID)
	case bundle == nil || bundle.Empty():
		return fmt.Errorf("no trust bundle for trust domain %q", svid.ID.TrustDomain())
	case bundle.TrustDomain() != svid.ID.TrustDomain():
		return fmt.Errorf("bundle is for trust domain %q, SVID %s is in %q",
			bundle.TrustDomain(), svid.ID, svid.ID.TrustDomain())
	}
	return nil
}

// concatDER returns the DER encodings of certs, concatenated, as the Workload
// API carries certificate lists.
func concatDER(certs []*x509.Certificate) []byte {
	var n int
	for _, c := range certs {
		n += len(c.Raw)
	}
	out := make([]byte, 0, n)
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

package workloadapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	spiffewl "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger/outrigger/mtls/workloadapi"
)

const (
	appID    = "spiffe://public/ns/default/app1"
	deadline = 20 * time.Second // generous: the race detector and a busy machine are slow
)

var trustDomain = spiffeid.RequireTrustDomainFromString("public")

// testCA is a throwaway ECDSA P-256 root for the trust domain "public".
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64

func nextSerial() *big.Int {
	serial++
	return big.NewInt(serial)
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{Organization: []string{"outrigger test"}, CommonName: "test root"},
		URIs:                  []*url.URL{trustDomain.ID().URL()},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(trustDomain, []*x509.Certificate{ca.cert})
}

// issue returns an X.509-SVID for id signed by ca.
func (ca *testCA) issue(t *testing.T, id string) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		URIs:         []*url.URL{u},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := x509svid.ParseRaw(der, keyDER)
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

// source is a workloadapi.Source whose SVID and bundle can be swapped.
type source struct {
	mu      sync.Mutex
	svid    *x509svid.SVID
	bundle  *x509bundle.Bundle
	err     error
	changed chan struct{}
}

func newSource(svid *x509svid.SVID, bundle *x509bundle.Bundle) *source {
	return &source{svid: svid, bundle: bundle, changed: make(chan struct{})}
}

func (s *source) X509SVID() (*x509svid.SVID, *x509bundle.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid, s.bundle, s.err
}

func (s *source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *source) set(svid *x509svid.SVID, bundle *x509bundle.Bundle, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svid, s.bundle, s.err = svid, bundle, err
	close(s.changed)
	s.changed = make(chan struct{})
}

var _ workloadapi.Source = (*source)(nil)

// socketPath returns a path for a socket in a directory that does not exist
// yet, short enough for the Unix socket path limit.
func socketPath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir) > 60 {
		var err error
		if dir, err = os.MkdirTemp("", "wl"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return filepath.Join(dir, "run", "agent.sock")
}

// server is a running workloadapi.Server.
type server struct {
	path   string
	cancel context.CancelFunc
	done   chan struct{} // closed when Serve has returned
	err    error         // Serve's result, set before done is closed
}

// stop cancels Serve and returns its result.
func (s *server) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
		return s.err
	case <-time.After(deadline):
		t.Fatal("Serve did not return after its context was cancelled")
		return nil
	}
}

// startServer serves src on a fresh socket and waits until it accepts
// connections. The server is stopped at the end of the test.
func startServer(t *testing.T, src workloadapi.Source) *server {
	t.Helper()
	return startServerAt(t, src, socketPath(t))
}

func startServerAt(t *testing.T, src workloadapi.Source, path string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{path: path, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = workloadapi.New(src, nil).Serve(ctx, path)
	}()
	t.Cleanup(func() {
		if err := s.stop(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	end := time.Now().Add(deadline)
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			conn.Close()
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("Serve returned early: %v", s.err)
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("server did not start listening on %s: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func addr(path string) spiffewl.ClientOption {
	return spiffewl.WithAddr("unix://" + path)
}

// rawClient returns a generated Workload API client that sends no security
// header unless the caller adds one.
func rawClient(t *testing.T, path string) workloadpb.SpiffeWorkloadAPIClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return workloadpb.NewSpiffeWorkloadAPIClient(conn)
}

func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

// checkKeyPair signs a digest with the SVID's key and verifies the signature
// with the public key of its leaf certificate.
func checkKeyPair(t *testing.T, svid *x509svid.SVID) {
	t.Helper()
	digest := sha256.Sum256([]byte("outrigger workload API"))
	sig, err := svid.PrivateKey.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("sign with SVID key: %v", err)
	}
	pub, ok := svid.Certificates[0].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("leaf public key is %T, want *ecdsa.PublicKey", svid.Certificates[0].PublicKey)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatal("signature made with the SVID key does not verify with the SVID certificate")
	}
}

func TestFetchX509SVID(t *testing.T) {
	ca := newCA(t)
	want := ca.issue(t, appID)
	srv := startServer(t, newSource(want, ca.bundle()))
	ctx := testContext(t)

	got, err := spiffewl.FetchX509SVID(ctx, addr(srv.path))
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	if got.ID.String() != appID {
		t.Errorf("SVID ID = %s, want %s", got.ID, appID)
	}
	if len(got.Certificates) != 1 || !got.Certificates[0].Equal(want.Certificates[0]) {
		t.Errorf("SVID certificates differ from the issued leaf (got %d certificates)", len(got.Certificates))
	}
	checkKeyPair(t, got)

	// The bundle in the SVID message verifies the SVID.
	x509ctx, err := spiffewl.FetchX509Context(ctx, addr(srv.path))
	if err != nil {
		t.Fatalf("FetchX509Context: %v", err)
	}
	b, err := x509ctx.Bundles.GetX509BundleForTrustDomain(trustDomain)
	if err != nil {
		t.Fatalf("bundle of the SVID message: %v", err)
	}
	if !b.Equal(ca.bundle()) {
		t.Errorf("bundle in the SVID message has %d authorities, want the test root only", len(b.X509Authorities()))
	}
	id, _, err := x509svid.Verify(x509ctx.DefaultSVID().Certificates, x509ctx.Bundles)
	if err != nil {
		t.Fatalf("SVID does not verify against the served bundle: %v", err)
	}
	if id.String() != appID {
		t.Errorf("verified ID = %s, want %s", id, appID)
	}
}

func TestFetchX509Bundles(t *testing.T) {
	ca := newCA(t)
	srv := startServer(t, newSource(ca.issue(t, appID), ca.bundle()))

	set, err := spiffewl.FetchX509Bundles(testContext(t), addr(srv.path))
	if err != nil {
		t.Fatalf("FetchX509Bundles: %v", err)
	}
	if n := set.Len(); n != 1 {
		t.Errorf("bundle set has %d trust domains, want 1", n)
	}
	b, ok := set.Get(trustDomain)
	if !ok {
		t.Fatalf("bundle set has no bundle for %s", trustDomain)
	}
	if auth := b.X509Authorities(); len(auth) != 1 || !auth[0].Equal(ca.cert) {
		t.Errorf("bundle for %s has %d authorities, want the test root only", trustDomain, len(auth))
	}
}

// TestStreamsSendUpdates reads both streams with the generated client: one
// message at once, one more after the source changes.
func TestStreamsSendUpdates(t *testing.T) {
	ca := newCA(t)
	src := newSource(ca.issue(t, appID), ca.bundle())
	srv := startServer(t, src)
	client := rawClient(t, srv.path)
	ctx := withHeader(testContext(t))

	svids, err := client.FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	bundles, err := client.FetchX509Bundles(ctx, &workloadpb.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svids.Recv(); err != nil {
		t.Fatalf("first FetchX509SVID message: %v", err)
	}
	if _, err := bundles.Recv(); err != nil {
		t.Fatalf("first FetchX509Bundles message: %v", err)
	}

	ca2 := newCA(t)
	next := ca2.issue(t, appID)
	src.set(next, ca2.bundle(), nil)

	// A stream may see an extra message with the old state if it read the
	// source just before the swap; read until the new one arrives.
	for {
		resp, err := svids.Recv()
		if err != nil {
			t.Fatalf("FetchX509SVID after update: %v", err)
		}
		if len(resp.Svids) != 1 {
			t.Fatalf("got %d SVIDs, want 1", len(resp.Svids))
		}
		m := resp.Svids[0]
		if m.SpiffeId != appID {
			t.Errorf("spiffe_id = %s, want %s", m.SpiffeId, appID)
		}
		if bytes.Equal(m.X509Svid, next.Certificates[0].Raw) {
			if !bytes.Equal(m.Bundle, ca2.cert.Raw) {
				t.Error("bundle field of the updated SVID is not the new root")
			}
			break
		}
	}
	for {
		resp, err := bundles.Recv()
		if err != nil {
			t.Fatalf("FetchX509Bundles after update: %v", err)
		}
		if bytes.Equal(resp.Bundles["spiffe://public"], ca2.cert.Raw) {
			break
		}
	}
}

func TestX509SourceSeesUpdate(t *testing.T) {
	ca := newCA(t)
	first := ca.issue(t, appID)
	src := newSource(first, ca.bundle())
	srv := startServer(t, src)
	ctx := testContext(t)

	xs, err := spiffewl.NewX509Source(ctx, spiffewl.WithClientOptions(addr(srv.path)))
	if err != nil {
		t.Fatalf("NewX509Source: %v", err)
	}
	defer xs.Close()
	got, err := xs.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Certificates[0].Equal(first.Certificates[0]) {
		t.Fatal("X509Source does not hold the first SVID")
	}

	ca2 := newCA(t)
	second := ca2.issue(t, appID)
	src.set(second, ca2.bundle(), nil)

	for {
		got, err := xs.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if got.Certificates[0].Equal(second.Certificates[0]) {
			checkKeyPair(t, got)
			break
		}
		select {
		case <-xs.Updated():
		case <-time.After(50 * time.Millisecond): // poll, should a signal be coalesced
		case <-ctx.Done():
			t.Fatal("X509Source did not see the new SVID before the deadline")
		}
	}
	b, err := xs.GetX509BundleForTrustDomain(trustDomain)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Equal(ca2.bundle()) {
		t.Error("X509Source bundle is not the new root")
	}
}

func TestSecurityHeaderRequired(t *testing.T) {
	ca := newCA(t)
	srv := startServer(t, newSource(ca.issue(t, appID), ca.bundle()))
	client := rawClient(t, srv.path)
	ctx := testContext(t)

	calls := map[string]func() error{
		"FetchX509SVID": func() error {
			stream, err := client.FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		},
		"FetchX509Bundles": func() error {
			stream, err := client.FetchX509Bundles(ctx, &workloadpb.X509BundlesRequest{})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		},
		"FetchJWTSVID": func() error {
			_, err := client.FetchJWTSVID(ctx, &workloadpb.JWTSVIDRequest{Audience: []string{"x"}})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || st.Message() != "security header missing from request" {
				t.Errorf("got %v, want InvalidArgument \"security header missing from request\"", err)
			}
		})
	}

	// A wrong value is refused too.
	stream, err := client.FetchX509SVID(metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "false"), &workloadpb.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("header value \"false\": got %v, want InvalidArgument", err)
	}
}

func TestJWTUnimplemented(t *testing.T) {
	ca := newCA(t)
	srv := startServer(t, newSource(ca.issue(t, appID), ca.bundle()))
	ctx := testContext(t)
	client, err := spiffewl.New(ctx, addr(srv.path))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	calls := map[string]func() error{
		"FetchJWTSVID": func() error {
			_, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "app2"})
			return err
		},
		"FetchJWTBundles": func() error {
			_, err := client.FetchJWTBundles(ctx)
			return err
		},
		"ValidateJWTSVID": func() error {
			_, err := client.ValidateJWTSVID(ctx, "a.b.c", "app2")
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			st := status.Convert(err)
			if st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "JWT-SVIDs are not supported") {
				t.Errorf("got %v, want Unimplemented saying JWT-SVIDs are not supported", err)
			}
		})
	}
}

func TestSourceErrorIsUnavailable(t *testing.T) {
	src := newSource(nil, nil)
	src.err = errors.New("no certificate yet")
	srv := startServer(t, src)

	_, err := spiffewl.FetchX509SVID(testContext(t), addr(srv.path))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "no certificate yet") {
		t.Errorf("got %v, want Unavailable with the source's error", err)
	}
}

func TestServeRemovesSocket(t *testing.T) {
	ca := newCA(t)
	srv := startServer(t, newSource(ca.issue(t, appID), ca.bundle()))

	fi, err := os.Stat(srv.path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("socket mode = %v, want 0600", got)
	}
	di, err := os.Stat(filepath.Dir(srv.path))
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("created socket directory mode = %v, want 0700", got)
	}

	// An open watch must not keep Serve from returning.
	ctx := testContext(t)
	xs, err := spiffewl.NewX509Source(ctx, spiffewl.WithClientOptions(addr(srv.path)))
	if err != nil {
		t.Fatalf("NewX509Source: %v", err)
	}
	defer xs.Close()

	if err := srv.stop(t); err != nil {
		t.Fatalf("Serve returned %v, want nil", err)
	}
	if _, err := os.Lstat(srv.path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket %s still exists after Serve returned (Lstat: %v)", srv.path, err)
	}
}

func TestServeSocketPath(t *testing.T) {
	ca := newCA(t)
	src := newSource(ca.issue(t, appID), ca.bundle())

	t.Run("too long", func(t *testing.T) {
		path := "/tmp/" + strings.Repeat("x", 200) + "/agent.sock"
		err := workloadapi.New(src, nil).Serve(testContext(t), path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "108") {
			t.Errorf("got %v, want an error naming the path and the 108-byte limit", err)
		}
		if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("directory of the rejected path was created (Stat: %v)", err)
		}
	})

	t.Run("longest accepted", func(t *testing.T) {
		dir := filepath.Dir(socketPath(t))
		name := strings.Repeat("s", workloadapi.MaxSocketPathLen-len(dir)-1)
		path := filepath.Join(dir, name)
		if len(path) != workloadapi.MaxSocketPathLen {
			t.Fatalf("test path is %d bytes, want %d", len(path), workloadapi.MaxSocketPathLen)
		}
		srv := startServerAt(t, src, path)
		if _, err := spiffewl.FetchX509SVID(testContext(t), addr(srv.path)); err != nil {
			t.Errorf("FetchX509SVID on a %d-byte path: %v", len(path), err)
		}
	})

	t.Run("one byte over", func(t *testing.T) {
		path := "/" + strings.Repeat("s", workloadapi.MaxSocketPathLen)
		err := workloadapi.New(src, nil).Serve(testContext(t), path)
		if err == nil || !strings.Contains(err.Error(), strconv.Itoa(workloadapi.MaxSocketPathLen+1)+" bytes") {
			t.Errorf("got %v, want a length error", err)
		}
	})

	t.Run("stale socket replaced", func(t *testing.T) {
		path := socketPath(t)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // leaves a socket file nobody listens on
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("stale socket not left behind: %v", err)
		}
		srv := startServerAt(t, src, path)
		if _, err := spiffewl.FetchX509SVID(testContext(t), addr(srv.path)); err != nil {
			t.Errorf("FetchX509SVID after replacing a stale socket: %v", err)
		}
	})

	t.Run("live socket kept", func(t *testing.T) {
		srv := startServer(t, src)
		err := workloadapi.New(src, nil).Serve(testContext(t), srv.path)
		if err == nil || !strings.Contains(err.Error(), "in use") {
			t.Errorf("got %v, want an in-use error", err)
		}
		if _, err := spiffewl.FetchX509SVID(testContext(t), addr(srv.path)); err != nil {
			t.Errorf("first server no longer serves: %v", err)
		}
	})

	t.Run("regular file kept", func(t *testing.T) {
		path := socketPath(t)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := workloadapi.New(src, nil).Serve(testContext(t), path)
		if err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("got %v, want a not-a-socket error", err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "not a socket" {
			t.Errorf("regular file was changed: %q, %v", b, err)
		}
	})
}

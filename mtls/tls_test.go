package mtls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/ca"
)

// source is a fixed SVID and bundle.
type source struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s source) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
func (s source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle.GetX509BundleForTrustDomain(td)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func issue(t testing.TB, a *ca.Authority, app string) source {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	id, err := mtls.NewIdentity(a.TrustDomain().Name(), "", app)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := a.Sign(csr, id)
	if err != nil {
		t.Fatal(err)
	}
	s := &x509svid.SVID{ID: id.ID(), Certificates: chain, PrivateKey: key}
	return source{svid: s, bundle: a.Bundle()}
}

func authority(t testing.TB, opts ca.Options) *ca.Authority {
	t.Helper()
	opts.DataDir = t.TempDir()
	opts.Logger = quiet
	a, err := ca.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// handshake runs one TLS connection between the two configurations and
// returns each side's error and the client's state.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, cs tls.ConnectionState) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		a, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer a.Close()
		_ = a.SetDeadline(time.Now().Add(30 * time.Second))
		s := tls.Server(a, server)
		err = s.Handshake()
		if err == nil {
			// Let the client read its session ticket, then answer a byte.
			_, err = s.Write([]byte{1})
		}
		done <- err
	}()
	b, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_ = b.SetDeadline(time.Now().Add(30 * time.Second))
	// One cache key for every connection of a test (the default key is the
	// address, and each handshake here listens on a new port).
	client = client.Clone()
	client.ServerName = "mesh.test"
	c := tls.Client(b, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		var one [1]byte
		_, clientErr = io.ReadFull(c, one[:])
		cs = c.ConnectionState()
	}
	_ = b.Close()
	serverErr = <-done
	return serverErr, clientErr, cs
}

func TestMutualTLSVerifiesBothSides(t *testing.T) {
	a := authority(t, ca.Options{})
	server, client := issue(t, a, "callee"), issue(t, a, "caller")
	calleeID, _ := mtls.NewIdentity("", "", "callee")
	sessions := tls.NewLRUClientSessionCache(4)
	srvCfg := mtls.ServerConfig(server, mtls.AuthorizeMemberOf(a.TrustDomain()))
	cliCfg := mtls.ClientConfig(client, mtls.AuthorizeIdentity(calleeID), sessions)

	serr, cerr, cs := handshake(t, srvCfg, cliCfg)
	if serr != nil || cerr != nil {
		t.Fatalf("server %v, client %v", serr, cerr)
	}
	if cs.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", cs.Version)
	}
	if peer, err := mtls.PeerIdentity(&cs); err != nil || peer != calleeID {
		t.Errorf("peer %v %v", peer, err)
	}
	// A second connection resumes the session and is still verified.
	serr, cerr, cs = handshake(t, srvCfg, cliCfg)
	if serr != nil || cerr != nil {
		t.Fatalf("second connection: server %v, client %v", serr, cerr)
	}
	if !cs.DidResume {
		t.Error("the second connection did not resume the TLS session")
	}
}

func TestMutualTLSRefusals(t *testing.T) {
	a := authority(t, ca.Options{})
	server := issue(t, a, "callee")
	srvCfg := mtls.ServerConfig(server, mtls.AuthorizeMemberOf(a.TrustDomain()))

	t.Run("a client with no certificate", func(t *testing.T) {
		cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the client is the attacker here
		if serr, _, _ := handshake(t, srvCfg, cfg); serr == nil {
			t.Error("accepted")
		}
	})
	t.Run("a certificate from another CA", func(t *testing.T) {
		other := issue(t, authority(t, ca.Options{}), "caller")
		cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*mtls.TLSCertificate(other.svid)}} //nolint:gosec
		if serr, _, _ := handshake(t, srvCfg, cfg); serr == nil || !strings.Contains(serr.Error(), "peer certificate") {
			t.Errorf("got %v", serr)
		}
	})
	t.Run("a replayed certificate without its key", func(t *testing.T) {
		stolen := issue(t, a, "caller")
		wrongKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cert := mtls.TLSCertificate(stolen.svid)
		cert.PrivateKey = wrongKey
		cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert}} //nolint:gosec
		if serr, _, _ := handshake(t, srvCfg, cfg); serr == nil {
			t.Error("accepted a certificate whose key the client does not hold")
		}
	})
	t.Run("an expired certificate", func(t *testing.T) {
		past := time.Now().Add(-48 * time.Hour)
		old := authority(t, ca.Options{WorkloadCertTTL: time.Hour, AllowedClockSkew: time.Minute, Now: func() time.Time { return past }})
		expired := issue(t, old, "caller")
		// Trust the old CA, so that only the expiry can be the reason.
		srv := mtls.ServerConfig(source{svid: server.svid, bundle: old.Bundle()}, mtls.AuthorizeMemberOf(a.TrustDomain()))
		srv.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return mtls.TLSCertificate(server.svid), nil }
		cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*mtls.TLSCertificate(expired.svid)}} //nolint:gosec
		if serr, _, _ := handshake(t, srv, cfg); serr == nil || !strings.Contains(serr.Error(), "expired") {
			t.Errorf("got %v", serr)
		}
	})
	t.Run("a server that is not the app asked for", func(t *testing.T) {
		client := issue(t, a, "caller")
		want, _ := mtls.NewIdentity("", "", "payments")
		_, cerr, _ := handshake(t, srvCfg, mtls.ClientConfig(client, mtls.AuthorizeIdentity(want), nil))
		if cerr == nil || !strings.Contains(cerr.Error(), "want spiffe://public/ns/default/payments") {
			t.Errorf("got %v", cerr)
		}
	})
	t.Run("another trust domain", func(t *testing.T) {
		foreign := issue(t, authority(t, ca.Options{TrustDomain: "example.org"}), "caller")
		cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*mtls.TLSCertificate(foreign.svid)}} //nolint:gosec
		if serr, _, _ := handshake(t, srvCfg, cfg); serr == nil {
			t.Error("accepted a certificate of another trust domain")
		}
	})
}

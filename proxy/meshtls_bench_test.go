package proxy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrigger/outrigger/mtls"
	"github.com/outrigger/outrigger/mtls/ca"
)

// fixedMeshTLS is one app's certificate from a real authority, as the
// sidecar's MeshTLS: the configurations the SVID manager would give, over
// an SVID that does not change.
type fixedMeshTLS struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (f *fixedMeshTLS) GetX509SVID() (*x509svid.SVID, error) { return f.svid, nil }
func (f *fixedMeshTLS) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return f.bundle.GetX509BundleForTrustDomain(td)
}

func (f *fixedMeshTLS) ServerConfig() *tls.Config {
	return mtls.ServerConfig(f, mtls.AuthorizeMemberOf(f.svid.ID.TrustDomain()))
}

func (f *fixedMeshTLS) ClientConfig(appID, namespace string, sessions tls.ClientSessionCache) *tls.Config {
	want := mtls.Identity{TrustDomain: f.svid.ID.TrustDomain(), Namespace: namespace, AppID: appID}
	return mtls.ClientConfig(f, mtls.AuthorizeIdentity(want), sessions)
}

// meshTLSFor signs a certificate for appID in the default namespace.
func meshTLSFor(b testing.TB, a *ca.Authority, appID string) *fixedMeshTLS {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		b.Fatal(err)
	}
	id, err := mtls.NewIdentity(a.TrustDomain().Name(), "default", appID)
	if err != nil {
		b.Fatal(err)
	}
	chain, err := a.Sign(csr, id)
	if err != nil {
		b.Fatal(err)
	}
	return &fixedMeshTLS{svid: &x509svid.SVID{ID: id.ID(), Certificates: chain, PrivateKey: key}, bundle: a.Bundle()}
}

// BenchmarkInvokeMesh measures one 1 KiB invocation through two in-process
// sidecars, one call at a time (the latency of a call, not throughput),
// with the mesh over h2c and over mutual TLS; the difference of their ns/op
// is what mTLS adds to a call on a connection already made.
func BenchmarkInvokeMesh(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	app := echoBody
	authority, err := ca.New(ca.Options{DataDir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name           string
		caller, callee MeshTLS
	}{
		{"h2c", nil, nil},
		{"mtls", meshTLSFor(b, authority, "caller"), meshTLSFor(b, authority, "callee")},
	} {
		b.Run(c.name, func(b *testing.B) {
			srv := httptest.NewServer(app)
			b.Cleanup(srv.Close)
			res := &mapResolver{}
			callee := startSidecar(b, Config{AppID: "callee", AppPort: appPort(b, srv), Resolver: res, MeshTLS: c.callee})
			res.set("callee", "default", "127.0.0.1:"+strconv.Itoa(callee.Ports().Internal))
			caller := startSidecar(b, Config{AppID: "caller", Resolver: res, MeshTLS: c.caller})
			waitHealthy(b, callee)
			url := "http://127.0.0.1:" + strconv.Itoa(caller.Ports().HTTP) + "/v1.0/invoke/callee/method/echo"
			client := &http.Client{Transport: &http.Transport{}}
			b.Cleanup(client.CloseIdleConnections)
			post := func() {
				resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || n != int64(len(body)) {
					b.Fatalf("status %d, %d bytes back", resp.StatusCode, n)
				}
			}
			post() // the connections, and for mTLS the handshakes
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for b.Loop() {
				post()
			}
		})
	}
}

package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrigger/outrigger/mtls"
)

// clock is a settable time for rotation tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newCSR(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustIdentity(t testing.TB, td, ns, app string) mtls.Identity {
	t.Helper()
	id, err := mtls.NewIdentity(td, ns, app)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSignIssuesSVIDThatVerifies(t *testing.T) {
	dir := t.TempDir()
	a, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	id := mustIdentity(t, "", "", "orders")
	chain, err := a.Sign(newCSR(t), id)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := x509svid.Verify(chain, a)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if want := "spiffe://public/ns/default/orders"; got.String() != want {
		t.Errorf("id %s, want %s", got, want)
	}
	leaf := chain[0]
	if life := leaf.NotAfter.Sub(time.Now()); life < 23*time.Hour || life > 24*time.Hour+time.Minute {
		t.Errorf("lifetime %s, want about 24h", life)
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("key %T", leaf.PublicKey)
	}
	// Keys are private to the user; the anchors file is for everyone.
	for _, f := range []string{"generations/1/root.key", "generations/1/issuer.key", "token.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	anchors, err := mtls.ReadCertsPEM(filepath.Join(dir, TrustAnchorsFile))
	if err != nil || len(anchors) != 1 {
		t.Fatalf("trust anchors: %v %d", err, len(anchors))
	}

	// A second authority on the same directory reuses the root.
	b, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Bundle().Equal(a.Bundle()) {
		t.Error("a restarted authority made a new root")
	}
}

func TestSignRefusesBadRequests(t *testing.T) {
	a, err := New(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	id := mustIdentity(t, "", "", "orders")
	if _, err := a.Sign([]byte("not a csr"), id); !errors.Is(err, ErrBadCSR) {
		t.Errorf("garbage CSR: %v", err)
	}
	csr := newCSR(t)
	csr[len(csr)-3] ^= 0xff // break the signature
	if _, err := a.Sign(csr, id); !errors.Is(err, ErrBadCSR) {
		t.Errorf("forged CSR: %v", err)
	}
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, weak)
	if _, err := a.Sign(der, id); !errors.Is(err, ErrBadCSR) {
		t.Errorf("weak key: %v", err)
	}
	other := mustIdentity(t, "example.org", "", "orders")
	if _, err := a.Sign(newCSR(t), other); err == nil {
		t.Error("signed an identity of another trust domain")
	}
}

func TestConfiguredLifetime(t *testing.T) {
	a, err := New(Options{DataDir: t.TempDir(), TrustDomain: "example.org", WorkloadCertTTL: time.Hour, AllowedClockSkew: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := a.Sign(newCSR(t), mustIdentity(t, "example.org", "prod", "cart"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != time.Hour+time.Minute {
		t.Errorf("validity %s, want 1h1m (lifetime plus skew)", got)
	}
	if leaf.URIs[0].String() != "spiffe://example.org/ns/prod/cart" {
		t.Errorf("URI %s", leaf.URIs[0])
	}
}

func TestJoinTokens(t *testing.T) {
	clk := &clock{t: time.Now()}
	a, err := New(Options{DataDir: t.TempDir(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.MintToken("orders", "prod", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	app, ns, err := a.VerifyToken(tok)
	if err != nil || app != "orders" || ns != "prod" {
		t.Fatalf("verify: %q %q %v", app, ns, err)
	}
	// Tampering with the payload breaks the MAC.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
	if _, _, err := a.VerifyToken(forged); !errors.Is(err, ErrBadToken) {
		t.Errorf("forged token: %v", err)
	}
	// Another authority's token is refused.
	other, err := New(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.VerifyToken(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("foreign token: %v", err)
	}
	for _, bad := range []string{"", "ort1.", "ort1.x.y", "eyJhbGciOi.x.y", "ort1.!!!.???"} {
		if _, _, err := a.VerifyToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	clk.add(2 * time.Hour)
	if _, _, err := a.VerifyToken(tok); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	if _, err := a.MintToken(mtls.ControlPlaneName, "", time.Hour); err == nil {
		t.Error("minted a token for the control plane's identity")
	}
	if _, err := a.MintToken("a/b", "", time.Hour); err == nil {
		t.Error("minted a token for an app-id that is not a path segment")
	}
}

func TestBroughtIssuerSignsInterchangeably(t *testing.T) {
	// A first authority's generated files, brought to two replicas.
	src := t.TempDir()
	if _, err := New(Options{DataDir: src}); err != nil {
		t.Fatal(err)
	}
	g := filepath.Join(src, "generations", "1")
	opts := func() Options {
		return Options{DataDir: t.TempDir(), IssuerCertFile: filepath.Join(g, "issuer.crt"), IssuerKeyFile: filepath.Join(g, "issuer.key"), TrustAnchorsFile: filepath.Join(g, "root.crt")}
	}
	r1, err := New(opts())
	if err != nil {
		t.Fatal(err)
	}
	r2, err := New(opts())
	if err != nil {
		t.Fatal(err)
	}
	chain, err := r1.Sign(newCSR(t), mustIdentity(t, "", "", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(chain, r2); err != nil {
		t.Errorf("replica 2 does not trust replica 1's certificate: %v", err)
	}
	tok, err := r1.MintToken("orders", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r2.VerifyToken(tok); err != nil {
		t.Errorf("replica 2 refuses replica 1's token: %v", err)
	}
	if err := r1.RotateRoot(); err == nil {
		t.Error("rotated a user-brought issuer")
	}

	// Files that do not belong together are refused at start.
	bad := opts()
	bad.IssuerKeyFile = filepath.Join(g, "root.key")
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: %v", err)
	}
	partial := Options{DataDir: t.TempDir(), IssuerCertFile: filepath.Join(g, "issuer.crt")}
	if _, err := New(partial); err == nil {
		t.Error("accepted an issuer certificate without its key")
	}
}

func TestRootRotationKeepsTrust(t *testing.T) {
	clk := &clock{t: time.Now()}
	ttl, skew := time.Hour, time.Minute
	dir := t.TempDir()
	a, err := New(Options{DataDir: dir, WorkloadCertTTL: ttl, AllowedClockSkew: skew, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	id := mustIdentity(t, "", "", "orders")
	oldRoot := a.Bundle().X509Authorities()[0]
	if err := a.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	// Step 1: both roots are trusted; the old one still signs.
	if n := len(a.Bundle().X509Authorities()); n != 2 {
		t.Fatalf("bundle has %d anchors during the rotation, want 2", n)
	}
	if anchors, _ := mtls.ReadCertsPEM(filepath.Join(dir, TrustAnchorsFile)); len(anchors) != 2 {
		t.Errorf("trust anchors file has %d anchors, want 2", len(anchors))
	}
	during, err := a.Sign(newCSR(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := during[1].CheckSignatureFrom(oldRoot); err != nil {
		t.Error("the new root signed before every workload could trust it")
	}
	// Just before the switch the old root still signs; its certificates
	// live on after the switch.
	clk.add(ttl + skew - time.Minute)
	late, err := a.Sign(newCSR(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := late[1].CheckSignatureFrom(oldRoot); err != nil {
		t.Error("the new root signed before every workload could trust it")
	}
	// Step 2: after a workload lifetime the new root signs, and the old
	// root's certificates still verify.
	clk.add(2 * time.Minute)
	fresh, err := a.Sign(newCSR(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh[1].CheckSignatureFrom(oldRoot); err == nil {
		t.Error("the old root still signs after the switch")
	}
	if _, _, err := x509svid.Verify(late, a, x509svid.WithTime(clk.now())); err != nil {
		t.Errorf("a certificate of the old root no longer verifies during the overlap: %v", err)
	}
	if _, _, err := x509svid.Verify(fresh, a, x509svid.WithTime(clk.now())); err != nil {
		t.Errorf("the new root's certificate: %v", err)
	}
	// Step 3: once every old certificate expired, the old root leaves.
	clk.add(ttl + skew + time.Second)
	if n := len(a.Bundle().X509Authorities()); n != 1 {
		t.Errorf("bundle has %d anchors after the overlap, want 1", n)
	}
	a.maintainOnce()
	if anchors, _ := mtls.ReadCertsPEM(filepath.Join(dir, TrustAnchorsFile)); len(anchors) != 1 {
		t.Errorf("trust anchors file has %d anchors after the overlap, want 1", len(anchors))
	}
	// A restart reads the same state.
	b, err := New(Options{DataDir: dir, WorkloadCertTTL: ttl, AllowedClockSkew: skew, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Bundle().Equal(a.Bundle()) {
		t.Error("a restarted authority sees another bundle")
	}
}

func TestMaintainRotatesAnAgingRoot(t *testing.T) {
	clk := &clock{t: time.Now()}
	a, err := New(Options{DataDir: t.TempDir(), WorkloadCertTTL: time.Hour, AllowedClockSkew: time.Minute, RootTTL: 10 * time.Hour, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	a.maintainOnce()
	if n := len(a.Bundle().X509Authorities()); n != 1 {
		t.Fatalf("rotated a young root: %d anchors", n)
	}
	clk.add(8 * time.Hour)
	a.maintainOnce()
	if n := len(a.Bundle().X509Authorities()); n != 2 {
		t.Errorf("did not rotate a root with 2h left: %d anchors", n)
	}
	a.maintainOnce()
	if n := len(a.Bundle().X509Authorities()); n != 2 {
		t.Errorf("rotated twice: %d anchors", n)
	}
}

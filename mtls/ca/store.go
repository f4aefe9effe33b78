package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/outrigger/outrigger/mtls"
)

// Files of one generation under <data-dir>/generations/<n>/.
const (
	rootCertFile   = "root.crt"
	rootKeyFile    = "root.key"
	issuerCertFile = "issuer.crt"
	issuerKeyFile  = "issuer.key"
	metaFile       = "generation.json"
)

// loadGenerations reads every generation in the data directory.
func (a *Authority) loadGenerations() error {
	dir := filepath.Join(a.opts.DataDir, generationsDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	var gens []*generation
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		g, err := loadGeneration(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("ca: generation %d: %w", n, err)
		}
		g.N = n
		gens = append(gens, g)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i].N < gens[j].N })
	a.mu.Lock()
	a.gens = gens
	a.mu.Unlock()
	return nil
}

func loadGeneration(dir string) (*generation, error) {
	meta, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	g := &generation{generation: true}
	if err := json.Unmarshal(meta, g); err != nil {
		return nil, fmt.Errorf("%s: %w", metaFile, err)
	}
	if g.roots, err = mtls.ReadCertsPEM(filepath.Join(dir, rootCertFile)); err != nil {
		return nil, err
	}
	if g.issuer, err = mtls.ReadCertsPEM(filepath.Join(dir, issuerCertFile)); err != nil {
		return nil, err
	}
	if g.issuerKey, err = readKey(filepath.Join(dir, issuerKeyFile)); err != nil {
		return nil, err
	}
	return g, checkIssuer(g)
}

// newGeneration makes a root and an issuer that sign from signFrom on and
// stores them as the next generation.
func (a *Authority) newGeneration(signFrom time.Time) (*generation, error) {
	now := a.opts.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	issuerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-a.opts.AllowedClockSkew)
	notAfter := signFrom.Add(a.opts.RootTTL)
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Outrigger"}, CommonName: "outrigger root " + a.td.Name() + " " + now.UTC().Format(time.RFC3339)},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(rootDER)
	if serial, err = newSerial(); err != nil {
		return nil, err
	}
	issuerTmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Outrigger"}, CommonName: "outrigger issuer " + a.td.Name()},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{a.td.ID().URL()},
	}
	issuerDER, err := x509.CreateCertificate(rand.Reader, issuerTmpl, root, &issuerKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	issuer, _ := x509.ParseCertificate(issuerDER)

	a.mu.Lock()
	defer a.mu.Unlock()
	n := 1
	if len(a.gens) > 0 {
		n = a.gens[len(a.gens)-1].N + 1
	}
	g := &generation{N: n, SignFrom: signFrom, roots: []*x509.Certificate{root}, issuer: []*x509.Certificate{issuer}, issuerKey: issuerKey, generation: true}
	dir := filepath.Join(a.opts.DataDir, generationsDir, strconv.Itoa(n))
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, err
	}
	// Mkdir is the lock between replicas sharing the data directory.
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: generation %d: %w", n, err)
	}
	if err := writeGeneration(dir, g, rootKey); err != nil {
		return nil, err
	}
	a.gens = append(a.gens, g)
	a.log.Info("certificate authority: new root", "generation", n, "sign_from", signFrom.UTC(), "expires", notAfter.UTC())
	return g, nil
}

func writeGeneration(dir string, g *generation, rootKey crypto.Signer) error {
	rootKeyDER, err := x509.MarshalPKCS8PrivateKey(rootKey)
	if err != nil {
		return err
	}
	issuerKeyDER, err := x509.MarshalPKCS8PrivateKey(g.issuerKey)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{rootCertFile, mtls.CertsPEM(g.roots)},
		{rootKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rootKeyDER})},
		{issuerCertFile, mtls.CertsPEM(g.issuer)},
		{issuerKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: issuerKeyDER})},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	return writeMeta(dir, g)
}

func writeMeta(dir string, g *generation) error {
	meta, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, metaFile), meta, 0o600)
}

// loadBrought reads the user's issuer and trust anchors.
func loadBrought(certFile, keyFile, anchorsFile string) (*generation, error) {
	issuer, err := mtls.ReadCertsPEM(certFile)
	if err != nil {
		return nil, fmt.Errorf("ca: --issuer-cert: %w", err)
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("ca: --issuer-key: %w", err)
	}
	roots, err := mtls.ReadCertsPEM(anchorsFile)
	if err != nil {
		return nil, fmt.Errorf("ca: --trust-anchors: %w", err)
	}
	g := &generation{N: 1, roots: roots, issuer: issuer, issuerKey: key}
	if err := checkIssuer(g); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return g, nil
}

// checkIssuer makes sure the issuer can sign and chains to the roots.
func checkIssuer(g *generation) error {
	iss := g.issuer[0]
	if !iss.IsCA || iss.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("the issuer certificate is not a CA certificate allowed to sign certificates")
	}
	if !publicKeysEqual(iss.PublicKey, g.issuerKey.Public()) {
		return errors.New("the issuer key does not match the issuer certificate")
	}
	roots := x509.NewCertPool()
	for _, r := range g.roots {
		roots.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range g.issuer[1:] {
		inter.AddCert(c)
	}
	if _, err := iss.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: iss.NotBefore.Add(time.Second)}); err != nil {
		return fmt.Errorf("the issuer certificate does not chain to the trust anchors: %w", err)
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// writeTrustAnchors writes the bundle to <data-dir>/trust-anchors.pem.
func (a *Authority) writeTrustAnchors() error {
	data := mtls.CertsPEM(a.Bundle().X509Authorities())
	path := filepath.Join(a.opts.DataDir, TrustAnchorsFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := writeFileAtomic(path, data, 0o644); err != nil {
		return fmt.Errorf("ca: trust anchors: %w", err)
	}
	return nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var key any
	switch b.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T cannot sign", path, key)
	}
	return s, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

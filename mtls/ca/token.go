package ca

import (
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/outrigger/outrigger/mtls"
)

// A join token proves an identity to the authority: it names an app-id and a
// namespace and expires; an HMAC under the authority's token key makes it
// unforgeable. Its form is "ort1.<payload>.<mac>", both parts base64url.

const tokenPrefix = "ort1."

type tokenClaims struct {
	AppID     string `json:"app"`
	Namespace string `json:"ns"`
	Expires   int64  `json:"exp"`
	Nonce     string `json:"jti"`
}

// ErrBadToken marks a join token the authority refuses.
var ErrBadToken = errors.New("invalid join token")

// MintToken makes a join token for appID in namespace, valid for ttl.
func (a *Authority) MintToken(appID, namespace string, ttl time.Duration) (string, error) {
	if _, err := mtls.NewIdentity(a.td.Name(), namespace, appID); err != nil {
		return "", err
	}
	if appID == mtls.ControlPlaneName {
		return "", fmt.Errorf("app-id %q is the control plane's own", appID)
	}
	if ttl <= 0 {
		return "", errors.New("a token's lifetime must be positive")
	}
	if namespace == "" {
		namespace = mtls.DefaultNamespace
	}
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	claims, err := json.Marshal(tokenClaims{AppID: appID, Namespace: namespace, Expires: a.opts.Now().Add(ttl).Unix(), Nonce: base64.RawURLEncoding.EncodeToString(nonce)})
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(claims)
	return tokenPrefix + payload + "." + base64.RawURLEncoding.EncodeToString(a.tokenMAC(payload)), nil
}

// VerifyToken checks token and returns the app-id and namespace it proves.
func (a *Authority) VerifyToken(token string) (appID, namespace string, err error) {
	token = strings.TrimSpace(token)
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: not an Outrigger join token", ErrBadToken)
	}
	payload, macB64, ok := strings.Cut(rest, ".")
	if !ok {
		return "", "", fmt.Errorf("%w: malformed", ErrBadToken)
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(macB64)
	if err != nil || !hmac.Equal(mac, a.tokenMAC(payload)) {
		return "", "", fmt.Errorf("%w: bad signature (minted by another authority?)", ErrBadToken)
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", "", fmt.Errorf("%w: malformed payload", ErrBadToken)
	}
	var c tokenClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", "", fmt.Errorf("%w: malformed payload", ErrBadToken)
	}
	if a.opts.Now().Unix() >= c.Expires {
		return "", "", fmt.Errorf("%w: expired at %s", ErrBadToken, time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	return c.AppID, c.Namespace, nil
}

func (a *Authority) tokenMAC(payload string) []byte {
	m := hmac.New(sha256.New, a.tokenKey)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

func loadOrCreateTokenKey(path string) ([]byte, error) {
	if key, err := os.ReadFile(path); err == nil && len(key) >= 32 {
		return key, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		// A replica made it first.
		return os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: token key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, err
	}
	return key, f.Close()
}

// deriveTokenKey derives the token key from a brought issuer key, so every
// replica given the same issuer files agrees on it.
func deriveTokenKey(issuerKey crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(issuerKey)
	if err != nil {
		return nil, fmt.Errorf("ca: issuer key: %w", err)
	}
	return hkdf.Key(sha256.New, der, nil, "outrigger join token v1", 32)
}

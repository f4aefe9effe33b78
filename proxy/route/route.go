// Package route parses what the Dapr HTTP API routes on: the service
// invocation path /v1.0/invoke/{app-id}/method/{method...}, the dapr-app-id
// header and the basic-auth form of it, and the "name.namespace" app-id.
// It is pure string handling, fuzzed, and allocation-light because every
// invocation passes through it.
package route

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// AppIDHeader names the app to invoke on a plain request to the sidecar.
const AppIDHeader = "dapr-app-id"

const invokePrefix = "/v1.0/invoke/"

// ErrNoAppID is returned when a request names no app to invoke.
var ErrNoAppID = errors.New("failed getting app id either from the URL path or the header dapr-app-id")

// Target is what a request asks to invoke.
type Target struct {
	// AppID as given: "name" or "name.namespace".
	AppID string
	// Method is the callee path, escaped as it arrived, without a leading
	// slash and cleaned of "." and ".." segments.
	Method string
}

// InvokePath parses an escaped request path of the form
// /v1.0/invoke/{app-id}/method/{method...}. ok is false when the path does
// not have that shape.
func InvokePath(escapedPath string) (t Target, ok bool) {
	if !strings.HasPrefix(escapedPath, invokePrefix) {
		return Target{}, false
	}
	rest := escapedPath[len(invokePrefix):]
	i := strings.Index(rest, "/method/")
	if i <= 0 {
		return Target{}, false
	}
	id := rest[:i]
	if strings.Contains(id, "%") {
		u, err := url.PathUnescape(id)
		if err != nil || u == "" {
			return Target{}, false
		}
		id = u
	}
	if strings.Contains(id, "/") {
		return Target{}, false
	}
	return Target{AppID: id, Method: CleanMethod(rest[i+len("/method/"):])}, true
}

// FromHeaders finds the target in the dapr-app-id header or in a basic-auth
// header whose user is dapr-app-id; the whole request path is then the
// method. It deletes the dapr-app-id header, which is for the sidecar only.
func FromHeaders(escapedPath string, h http.Header) (t Target, ok bool) {
	if id := h.Get(AppIDHeader); id != "" {
		h.Del(AppIDHeader)
		return Target{AppID: id, Method: CleanMethod(escapedPath)}, true
	}
	auth := h.Get("Authorization")
	if len(auth) > 6 && strings.EqualFold(auth[:6], "basic ") {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth[6:]))
		if err != nil {
			return Target{}, false
		}
		user, pass, found := strings.Cut(string(raw), ":")
		if found && pass != "" && strings.EqualFold(user, AppIDHeader) {
			return Target{AppID: pass, Method: CleanMethod(escapedPath)}, true
		}
	}
	return Target{}, false
}

// CleanMethod removes the leading slash and resolves "." and ".." segments
// so that no path traversal reaches the callee ("" for the root).
func CleanMethod(m string) string {
	if m == "" || m == "/" {
		return ""
	}
	c := path.Clean("/" + m)
	if c == "/" {
		return ""
	}
	c = c[1:]
	// Keep a trailing slash the caller sent: /items/ and /items differ to many apps.
	if strings.HasSuffix(m, "/") {
		c += "/"
	}
	return c
}

// SplitAppID splits "name.namespace" into its parts; a bare "name" gets
// defaultNamespace. More than one dot, or an empty part, is an error.
func SplitAppID(id, defaultNamespace string) (name, namespace string, err error) {
	name, namespace, found := strings.Cut(id, ".")
	switch {
	case name == "":
		return "", "", fmt.Errorf("invalid app id %q: empty name", id)
	case !found:
		return name, defaultNamespace, nil
	case namespace == "" || strings.Contains(namespace, "."):
		return "", "", fmt.Errorf("invalid app id %q: want name or name.namespace", id)
	}
	return name, namespace, nil
}

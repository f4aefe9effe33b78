package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// PathPrefix is the path under which ServeHTTP answers.
const PathPrefix = "/v1.0/secrets/"

// API serves the Dapr secrets API over the stores Lookup finds. Its zero
// value answers every call with ERR_SECRET_STORES_NOT_CONFIGURED. Fields
// are read on every call and must not change while the API serves; to
// reconfigure, build a new API and swap it in.
type API struct {
	// Lookup finds a secret store by its component name.
	Lookup func(name string) (Store, bool)
	// Configured reports whether any secret store is loaded; when it is
	// false, every call fails with ERR_SECRET_STORES_NOT_CONFIGURED before
	// the store is looked up, as in daprd. Nil means Lookup != nil.
	Configured func() bool
	// Policy is the compiled secrets.scopes of the app's Configuration; nil
	// allows every secret.
	Policy *Policy
	// Fallback answers the requests ServeHTTP does not serve: paths that are
	// not /v1.0/secrets/{store}/{key}, and methods other than GET. daprd
	// sends these to its service-invocation fallback, so the sidecar puts its
	// own here. Nil answers 404, or 405 for a known path with another method.
	Fallback http.Handler
	// Logger receives a debug line for every failed call, as daprd logs them.
	// Nil discards.
	Logger *slog.Logger
}

// GetSecret is dapr.proto.runtime.v1.Dapr/GetSecret: the secret named
// in.Key from the store named in.StoreName. Errors carry daprd's gRPC codes:
// FailedPrecondition when no store is configured, InvalidArgument for an
// unknown store, PermissionDenied when the scopes deny the key, and Internal
// when the store fails (including a key it does not hold).
func (a *API) GetSecret(ctx context.Context, in *runtimev1pb.GetSecretRequest) (*runtimev1pb.GetSecretResponse, error) {
	res, e := a.getSecret(ctx, in)
	if e != nil {
		return nil, e
	}
	return res, nil
}

// GetBulkSecret is dapr.proto.runtime.v1.Dapr/GetBulkSecret: every secret of
// the store named in.StoreName that the scopes allow; denied keys are left
// out silently, as daprd does. Errors are GetSecret's, bar PermissionDenied.
func (a *API) GetBulkSecret(ctx context.Context, in *runtimev1pb.GetBulkSecretRequest) (*runtimev1pb.GetBulkSecretResponse, error) {
	res, e := a.getBulkSecret(ctx, in)
	if e != nil {
		return nil, e
	}
	return res, nil
}

func (a *API) getSecret(ctx context.Context, in *runtimev1pb.GetSecretRequest) (*runtimev1pb.GetSecretResponse, *apiError) {
	storeName, key := in.GetStoreName(), in.GetKey()
	store, e := a.store(storeName)
	if e != nil {
		return nil, e
	}
	if !a.Policy.Allowed(storeName, key) {
		return nil, a.fail(errPermissionDenied(key, storeName))
	}
	data, err := store.GetSecret(ctx, key, in.GetMetadata())
	if err != nil {
		return nil, a.fail(errSecretGet(key, storeName, err))
	}
	return &runtimev1pb.GetSecretResponse{Data: data}, nil
}

func (a *API) getBulkSecret(ctx context.Context, in *runtimev1pb.GetBulkSecretRequest) (*runtimev1pb.GetBulkSecretResponse, *apiError) {
	storeName := in.GetStoreName()
	store, e := a.store(storeName)
	if e != nil {
		return nil, e
	}
	data, err := store.BulkGetSecret(ctx, in.GetMetadata())
	if err != nil {
		return nil, a.fail(errBulkSecretGet(storeName, err))
	}
	out := &runtimev1pb.GetBulkSecretResponse{}
	if data == nil {
		return out, nil
	}
	out.Data = make(map[string]*runtimev1pb.SecretResponse, len(data))
	for k, v := range data {
		if !a.Policy.Allowed(storeName, k) {
			a.logger().Debug("secrets: left out of bulk answer", "error", errPermissionDenied(k, storeName).message)
			continue
		}
		out.Data[k] = &runtimev1pb.SecretResponse{Secrets: v}
	}
	return out, nil
}

// store finds the store named name, or returns daprd's error.
func (a *API) store(name string) (Store, *apiError) {
	configured := a.Lookup != nil
	if a.Configured != nil {
		configured = a.Configured()
	}
	if !configured || a.Lookup == nil {
		return nil, a.fail(errStoresNotConfigured())
	}
	s, ok := a.Lookup(name)
	if !ok || s == nil {
		return nil, a.fail(errStoreNotFound(name))
	}
	return s, nil
}

func (a *API) fail(e *apiError) *apiError {
	a.logger().Debug("secrets: call failed", "code", e.code, "error", e.message)
	return e
}

func (a *API) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// ServeHTTP serves GET /v1.0/secrets/{store}/{key} and
// GET /v1.0/secrets/{store}/bulk as daprd does:
//
//   - the path is cleaned first (duplicate slashes and a trailing slash go);
//     "bulk" is matched before unescaping, so /v1.0/secrets/s/%62ulk reads the
//     key "bulk";
//   - {store} and {key} are then unescaped as query components, so "+" reads
//     as a space (a daprd quirk) and %2F as a slash;
//   - query parameters metadata.<name>=<value> go to the store as metadata
//     (the first value of each);
//   - a request body, which GET rarely has, must be JSON of the gRPC request
//     message or the answer is 400 ERR_MALFORMED_REQUEST; its fields are
//     then ignored. The sidecar's server bounds its size;
//   - a secret answers 200 with its name/value pairs as a JSON object, bulk
//     answers 200 with {key: {name: value}}, and a store answering nothing
//     (a nil map) gives 204;
//   - errors answer {"errorCode","message"} with daprd's status:
//     ERR_SECRET_STORES_NOT_CONFIGURED 500, ERR_SECRET_STORE_NOT_FOUND 401,
//     ERR_PERMISSION_DENIED 403, ERR_SECRET_GET 500.
//
// Other paths and methods go to Fallback.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rawStore, rawKey, ok := matchPath(r.URL.EscapedPath())
	if !ok || r.Method != http.MethodGet {
		a.fallback(w, r, ok)
		return
	}
	bulk := rawKey == "bulk" // before unescaping, as daprd's router matches
	storeName, err := unescapeParam("secretStoreName", rawStore)
	key := rawKey
	if err == nil && !bulk {
		key, err = unescapeParam("key", rawKey)
	}
	if err != nil {
		// daprd answers a parameter it cannot unescape with plain text.
		// EscapedPath never yields a bad escape, so this is only a guard.
		a.logger().Debug("secrets: bad path", "error", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	md := metadataFromQuery(r.URL)

	if bulk {
		in := &runtimev1pb.GetBulkSecretRequest{}
		if e := a.readBody(r, in); e != nil {
			e.write(w)
			return
		}
		in.StoreName, in.Metadata = storeName, md
		res, e := a.getBulkSecret(r.Context(), in)
		if e != nil {
			e.write(w)
			return
		}
		if res.GetData() == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		out := make(map[string]map[string]string, len(res.GetData()))
		for k, v := range res.GetData() {
			out[k] = v.GetSecrets()
		}
		writeJSON(w, out)
		return
	}

	in := &runtimev1pb.GetSecretRequest{}
	if e := a.readBody(r, in); e != nil {
		e.write(w)
		return
	}
	in.StoreName, in.Key, in.Metadata = storeName, key, md
	res, e := a.getSecret(r.Context(), in)
	if e != nil {
		e.write(w)
		return
	}
	if res.GetData() == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, res.GetData())
}

// matchPath cleans p as daprd's router does and splits
// /v1.0/secrets/{store}/{key}, leaving both escaped.
func matchPath(p string) (store, key string, ok bool) {
	rest, ok := strings.CutPrefix(path.Clean(p), PathPrefix)
	if !ok {
		return "", "", false
	}
	store, key, ok = strings.Cut(rest, "/")
	if !ok || store == "" || key == "" || strings.Contains(key, "/") {
		return "", "", false
	}
	return store, key, true
}

// unescapeParam unescapes a path parameter as daprd does, with
// url.QueryUnescape, and words its error as daprd does.
func unescapeParam(name, v string) (string, error) {
	u, err := url.QueryUnescape(v)
	if err != nil {
		return "", fmt.Errorf("failed to unescape request parameter %q. Error: %w", name, err)
	}
	return u, nil
}

// metadataFromQuery collects metadata.<name> query parameters.
func metadataFromQuery(u *url.URL) map[string]string {
	q := u.Query()
	md := make(map[string]string, len(q))
	for k, v := range q {
		if name, ok := strings.CutPrefix(k, "metadata."); ok {
			md[name] = v[0]
		}
	}
	return md
}

// readBody decodes a non-empty request body into in, as daprd's universal
// handler does before the path parameters overwrite the fields.
func (a *API) readBody(r *http.Request, in proto.Message) *apiError {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return a.fail(errBodyRead(err))
	}
	if len(body) == 0 {
		return nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true, AllowPartial: true}).Unmarshal(body, in); err != nil {
		return a.fail(errMalformedRequest(err))
	}
	return nil
}

// writeJSON answers 200 with v as daprd's respondWithJSON does: encoded by
// encoding/json, with a trailing newline.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) fallback(w http.ResponseWriter, r *http.Request, pathMatched bool) {
	switch {
	case a.Fallback != nil:
		a.Fallback.ServeHTTP(w, r)
	case pathMatched:
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
	default:
		http.NotFound(w, r)
	}
}

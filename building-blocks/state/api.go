package state

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/emptypb"
)

// API serves the Dapr state API over the stores Lookup finds: the HTTP
// routes under /v1.0/state/ and /v1.0-alpha1/state/{store}/query, and the
// state methods of dapr.proto.runtime.v1.Dapr, with daprd's answers, error
// codes and statuses. Fields must not change while it serves.
type API struct {
	// Lookup finds a state store component by name.
	Lookup func(name string) (*Component, bool)
	// Configured reports whether any state store is loaded.
	Configured func() bool
	// AppID and Namespace make the keys' prefixes (keyPrefix). Namespace is
	// daprd's NAMESPACE: empty outside Kubernetes unless set.
	AppID     string
	Namespace string
	// MaxBulkParallelism bounds a bulk get's concurrent reads (default 100).
	MaxBulkParallelism int
	// Logger gets a debug line per failed call; nil discards.
	Logger *slog.Logger
}

// Request metadata keys the API reads.
const (
	metaTTL        = "ttlInSeconds"
	metaExpireTime = "ttlExpireTime"
	metadataPrefix = "metadata."
)

func (a *API) log() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

// store finds the named store, or daprd's error.
func (a *API) store(name string) (*Component, error) {
	if a.Configured != nil && !a.Configured() || a.Lookup == nil {
		return nil, errStoreNotConfigured(name, a.AppID)
	}
	c, ok := a.Lookup(name)
	if !ok {
		return nil, errStoreNotFound(name, a.AppID)
	}
	return c, nil
}

func (a *API) key(c *Component, storeName, key string) (string, error) {
	k, err := c.StoreKey(key, storeName, a.AppID, a.Namespace)
	if err != nil {
		return "", errInvalidKey(storeName, key, err.Error())
	}
	return k, nil
}

// ttl reads ttlInSeconds from request metadata: -1 never expires, a
// positive count expires, absent leaves the store's default.
func ttl(meta map[string]string) (time.Duration, error) {
	v, ok := meta[metaTTL]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("metadata %s %q: want a whole number of seconds", metaTTL, v)
	}
	switch {
	case n < 0:
		return -1, nil
	case n == 0:
		return 0, nil
	case n > int64(100*365*24*time.Hour/time.Second):
		return 0, fmt.Errorf("metadata %s %d: too large", metaTTL, n)
	}
	return time.Duration(n) * time.Second, nil
}

// itemMetadata is the metadata daprd reports with an item.
func itemMetadata(it Item) map[string]string {
	if it.Expires.IsZero() {
		return nil
	}
	return map[string]string{metaExpireTime: it.Expires.UTC().Format(time.RFC3339)}
}

func nonEmpty(etag *string) *string {
	if etag == nil || *etag == "" {
		return nil
	}
	return etag
}

// ServeHTTP serves the state API's HTTP routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	var rest string
	var ok bool
	if rest, ok = strings.CutPrefix(p, "/v1.0-alpha1/state/"); ok {
		store, tail, _ := strings.Cut(rest, "/")
		if tail == "query" && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
			a.httpQuery(w, r, unescape(store))
			return
		}
		http.NotFound(w, r)
		return
	}
	rest, ok = strings.CutPrefix(p, "/v1.0/state/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	storeEsc, keyEsc, hasKey := strings.Cut(rest, "/")
	store := unescape(storeEsc)
	write := r.Method == http.MethodPost || r.Method == http.MethodPut
	switch {
	case !hasKey && write:
		a.httpSave(w, r, store)
	case hasKey && keyEsc == "bulk" && write:
		a.httpBulkGet(w, r, store)
	case hasKey && keyEsc == "transaction" && write:
		a.httpTransaction(w, r, store)
	case hasKey && keyEsc != "" && r.Method == http.MethodGet:
		a.httpGet(w, r, store, unescape(keyEsc))
	case hasKey && keyEsc != "" && r.Method == http.MethodDelete:
		a.httpDelete(w, r, store, unescape(keyEsc))
	default:
		w.Header().Set("Allow", "GET, POST, PUT, DELETE")
		writeError(w, &legacyError{http.StatusMethodNotAllowed, codeMalformedRequest,
			fmt.Sprintf("%s %s is not a route of the state API", r.Method, r.URL.Path)})
	}
}

func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if u, err := pathUnescape(s); err == nil {
		return u
	}
	return s
}

// requestMetadata is the metadata.* query parameters of r.
func requestMetadata(r *http.Request) map[string]string {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		if name, ok := strings.CutPrefix(k, metadataPrefix); ok && len(v) > 0 {
			out[name] = v[0]
		}
	}
	return out
}

func mergeMetadata(into, from map[string]string) map[string]string {
	if into == nil {
		into = map[string]string{}
	}
	for k, v := range from {
		into[k] = v
	}
	return into
}

func (a *API) fail(w http.ResponseWriter, err error) {
	a.log().Debug("state API call failed", "err", err)
	writeError(w, err)
}

func (a *API) httpGet(w http.ResponseWriter, r *http.Request, storeName, key string) {
	c, err := a.store(storeName)
	if err != nil {
		a.fail(w, err)
		return
	}
	k, err := a.key(c, storeName, key)
	if err != nil {
		a.fail(w, err)
		return
	}
	it, found, err := c.Store.Get(r.Context(), GetRequest{Key: k, Strong: r.URL.Query().Get("consistency") == "strong", Metadata: requestMetadata(r)})
	if err != nil {
		a.fail(w, &legacyError{http.StatusInternalServerError, codeGet, fmt.Sprintf("fail to get %s from state store %s: %s", key, storeName, err)})
		return
	}
	if !found {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if it.Value, err = c.open(it.Value); err != nil {
		a.fail(w, &legacyError{http.StatusInternalServerError, codeGet, fmt.Sprintf("fail to get %s from state store %s: %s", key, storeName, err)})
		return
	}
	h := w.Header()
	h.Set("ETag", it.ETag)
	for k, v := range itemMetadata(it) {
		h.Set(metadataPrefix+k, v)
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(it.Value)
}

// saveItem is one item of a save request (POST /v1.0/state/{store}).
type saveItem struct {
	Key      string            `json:"key"`
	Value    json.RawMessage   `json:"value"`
	ETag     *string           `json:"etag"`
	Metadata map[string]string `json:"metadata"`
	Options  *struct {
		Concurrency string `json:"concurrency"`
		Consistency string `json:"consistency"`
	} `json:"options"`
}

// setRequest turns a save item into a store request (key not yet
// prefixed).
func (it saveItem) setRequest(meta map[string]string) (SetRequest, error) {
	req := SetRequest{Key: it.Key, ETag: nonEmpty(it.ETag), Metadata: mergeMetadata(it.Metadata, meta)}
	req.Value = compactJSON(it.Value)
	if it.Options != nil {
		req.FirstWrite = it.Options.Concurrency == "first-write"
		req.Strong = it.Options.Consistency == "strong"
	}
	var err error
	req.TTL, err = ttl(req.Metadata)
	return req, err
}

// compactJSON is the value daprd stores for a JSON value: the JSON itself
// (a string keeps its quotes), without insignificant space; an absent
// value is null.
func compactJSON(v json.RawMessage) []byte {
	if len(v) == 0 {
		return []byte("null")
	}
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return append([]byte(nil), v...)
	}
	return b.Bytes()
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON body")
	}
	return nil
}

func malformed(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &legacyError{http.StatusRequestEntityTooLarge, codeMalformedRequest,
			fmt.Sprintf("the request body is larger than the sidecar's --max-body-size (%d bytes)", tooLarge.Limit)}
	}
	return &legacyError{http.StatusBadRequest, codeMalformedRequest, err.Error()}
}

func (a *API) httpSave(w http.ResponseWriter, r *http.Request, storeName string) {
	c, err := a.store(storeName)
	if err != nil {
		a.fail(w, err)
		return
	}
	var items []saveItem
	if err := decodeBody(r, &items); err != nil {
		a.fail(w, malformed(err))
		return
	}
	meta := requestMetadata(r)
	reqs := make([]SetRequest, 0, len(items))
	for _, it := range items {
		if it.Key == "" {
			a.fail(w, malformed(errors.New(`"key" is a required field`)))
			return
		}
		req, err := it.setRequest(meta)
		if err != nil {
			a.fail(w, &legacyError{http.StatusBadRequest, codeSave, fmt.Sprintf("failed saving state in state store %s: %s", storeName, err)})
			return
		}
		if req.Key, err = a.key(c, storeName, it.Key); err != nil {
			a.fail(w, err)
			return
		}
		if req.Value, err = c.seal(req.Value); err != nil {
			a.fail(w, &legacyError{http.StatusInternalServerError, codeSave, fmt.Sprintf("failed saving state in state store %s: %s", storeName, err)})
			return
		}
		reqs = append(reqs, req)
	}
	if err := c.setAll(r.Context(), reqs); err != nil {
		status, _ := etagStatus(err)
		a.fail(w, &legacyError{status, codeSave, fmt.Sprintf("failed saving state in state store %s: %s", storeName, err)})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) httpDelete(w http.ResponseWriter, r *http.Request, storeName, key string) {
	c, err := a.store(storeName)
	if err != nil {
		a.fail(w, err)
		return
	}
	k, err := a.key(c, storeName, key)
	if err != nil {
		a.fail(w, err)
		return
	}
	q := r.URL.Query()
	req := DeleteRequest{Key: k, FirstWrite: q.Get("concurrency") == "first-write", Strong: q.Get("consistency") == "strong", Metadata: requestMetadata(r)}
	if _, ok := r.Header["If-Match"]; ok {
		etag := r.Header.Get("If-Match")
		req.ETag = nonEmpty(&etag)
	}
	if err := c.Store.Delete(r.Context(), req); err != nil {
		status, _ := etagStatus(err)
		a.fail(w, &legacyError{status, codeDelete, fmt.Sprintf("failed deleting state with key %s: %s", key, err)})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// bulkItem is one answer of a bulk get, as daprd's BulkGetResponse.
type bulkItem struct {
	Key      string            `json:"key"`
	Data     json.RawMessage   `json:"data,omitempty"`
	ETag     string            `json:"etag,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Error    string            `json:"error,omitempty"`
}

// jsonData is how a stored value goes into a JSON answer: as itself when
// it is JSON, as a JSON string when it is text, else as base64 in a JSON
// string.
func jsonData(v []byte) json.RawMessage {
	if len(v) == 0 {
		return nil
	}
	if json.Valid(v) {
		return v
	}
	var s string
	if utf8.Valid(v) {
		s = string(v)
	} else {
		s = base64.StdEncoding.EncodeToString(v)
	}
	b, _ := json.Marshal(s)
	return b
}

// bulkGet reads keys (the app's) with at most parallelism reads at once,
// each answer or error in the item of its key; the values are opened
// (decrypted) but otherwise as stored.
func (a *API) bulkGet(ctx context.Context, c *Component, storeName string, keys []string, parallelism int, meta map[string]string) ([]*runtimev1pb.BulkStateItem, error) {
	storeKeys := make([]string, len(keys))
	for i, k := range keys {
		sk, err := a.key(c, storeName, k)
		if err != nil {
			return nil, err
		}
		storeKeys[i] = sk
	}
	limit := a.MaxBulkParallelism
	if limit <= 0 {
		limit = 100
	}
	if parallelism <= 0 || parallelism > limit {
		parallelism = limit
	}
	out := make([]*runtimev1pb.BulkStateItem, len(keys))
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	ctx, end := c.beginBulk(ctx, opBulkGet) // one operation of the store's metrics
	for i := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			item := &runtimev1pb.BulkStateItem{Key: keys[i]}
			out[i] = item
			it, found, err := c.Store.Get(ctx, GetRequest{Key: storeKeys[i], Metadata: meta})
			switch {
			case err != nil:
				item.Error = err.Error()
			case found:
				v, err := c.open(it.Value)
				if err != nil {
					item.Error = err.Error()
					return
				}
				item.Data, item.Etag, item.Metadata = v, it.ETag, itemMetadata(it)
			}
		})
	}
	wg.Wait()
	end(nil)
	return out, nil
}

func (a *API) httpBulkGet(w http.ResponseWriter, r *http.Request, storeName string) {
	c, err := a.store(storeName)
	if err != nil {
		a.fail(w, err)
		return
	}
	var req struct {
		Keys        []string          `json:"keys"`
		Parallelism int               `json:"parallelism"`
		Metadata    map[string]string `json:"metadata"`
	}
	if err := decodeBody(r, &req); err != nil {
		a.fail(w, malformed(fmt.Errorf("failed deserializing HTTP body: %w", err)))
		return
	}
	items, err := a.bulkGet(r.Context(), c, storeName, req.Keys, req.Parallelism, mergeMetadata(req.Metadata, requestMetadata(r)))
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]bulkItem, len(items))
	for i, it := range items {
		out[i] = bulkItem{Key: it.GetKey(), Data: jsonData(it.GetData()), ETag: it.GetEtag(), Metadata: it.GetMetadata(), Error: it.GetError()}
	}
	body, err := json.Marshal(out)
	if err != nil {
		a.fail(w, &legacyError{http.StatusInternalServerError, codeBulkGet, err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, append(body, '\n'))
}

// txOperation is one operation of a transaction's HTTP body.
type txOperation struct {
	Operation string   `json:"operation"`
	Request   saveItem `json:"request"`
}

func (a *API) httpTransaction(w http.ResponseWriter, r *http.Request, storeName string) {
	c, err := a.store(storeName)
	if err != nil {
		a.fail(w, err)
		return
	}
	tx, ok := c.Store.(Transactional)
	if !ok || !c.Store.Features().Transactional {
		a.fail(w, errTransactionsNotSupported(storeName))
		return
	}
	var body struct {
		Operations []txOperation     `json:"operations"`
		Metadata   map[string]string `json:"metadata"`
	}
	if err := decodeBody(r, &body); err != nil {
		a.fail(w, malformed(fmt.Errorf("failed deserializing HTTP body: %w", err)))
		return
	}
	meta := mergeMetadata(body.Metadata, requestMetadata(r))
	ops := make([]Operation, 0, len(body.Operations))
	for _, o := range body.Operations {
		op, err := a.txOp(c, storeName, o.Operation, o.Request, meta)
		if err != nil {
			a.fail(w, err)
			return
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := tx.Multi(r.Context(), ops); err != nil {
		a.fail(w, &legacyError{http.StatusInternalServerError, codeTransaction, "error while executing state transaction: " + err.Error()})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// txOp turns one operation of a transaction into a store operation.
func (a *API) txOp(c *Component, storeName, kind string, it saveItem, meta map[string]string) (Operation, error) {
	if it.Key == "" && (kind == "upsert" || kind == "delete") {
		return Operation{}, malformed(errors.New(`"key" is a required field`))
	}
	switch kind {
	case "upsert":
		req, err := it.setRequest(meta)
		if err != nil {
			return Operation{}, malformed(err)
		}
		if req.Key, err = a.key(c, storeName, it.Key); err != nil {
			return Operation{}, err
		}
		if req.Value, err = c.seal(req.Value); err != nil {
			return Operation{}, &legacyError{http.StatusInternalServerError, codeTransaction, "error while executing state transaction: " + err.Error()}
		}
		return Operation{Set: &req}, nil
	case "delete":
		k, err := a.key(c, storeName, it.Key)
		if err != nil {
			return Operation{}, err
		}
		req := DeleteRequest{Key: k, ETag: nonEmpty(it.ETag), Metadata: mergeMetadata(it.Metadata, meta)}
		if it.Options != nil {
			req.FirstWrite = it.Options.Concurrency == "first-write"
			req.Strong = it.Options.Consistency == "strong"
		}
		return Operation{Delete: &req}, nil
	}
	return Operation{}, &legacyError{http.StatusBadRequest, codeNotSupportedOp, fmt.Sprintf("operation type %s not supported", kind)}
}

// queryItem is one result of the HTTP query API.
type queryItem struct {
	Key   string          `json:"key"`
	Data  json.RawMessage `json:"data"`
	ETag  string          `json:"etag,omitempty"`
	Error string          `json:"error,omitempty"`
}

func (a *API) httpQuery(w http.ResponseWriter, r *http.Request, storeName string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if e := malformed(err); e.(*legacyError).status == http.StatusRequestEntityTooLarge {
			a.fail(w, e)
			return
		}
		a.fail(w, &legacyError{http.StatusBadRequest, "ERR_BODY_READ", "failed to read request body: " + err.Error()})
		return
	}
	res, err := a.query(r.Context(), storeName, body, requestMetadata(r))
	if err != nil {
		a.fail(w, err)
		return
	}
	if len(res.Items) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	out := struct {
		Results []queryItem `json:"results"`
		Token   string      `json:"token,omitempty"`
	}{Token: res.Token}
	for _, it := range res.Items {
		out.Results = append(out.Results, queryItem{Key: AppKey(it.Key), Data: jsonData(it.Value), ETag: it.ETag, Error: it.Error})
	}
	b, err := json.Marshal(out)
	if err != nil {
		a.fail(w, errQueryFailed(storeName, err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (a *API) query(ctx context.Context, storeName string, body []byte, meta map[string]string) (QueryResult, error) {
	c, err := a.store(storeName)
	if err != nil {
		return QueryResult{}, err
	}
	q, ok := c.Store.(Querier)
	if !ok || !c.Store.Features().Query {
		return QueryResult{}, errQueryUnsupported(storeName)
	}
	if c.Encrypted() {
		return QueryResult{}, errQueryFailed(storeName, "cannot query encrypted store")
	}
	parsed, err := ParseQuery(body)
	if err != nil {
		return QueryResult{}, errQueryFailed(storeName, "failed to parse JSON query body: "+err.Error())
	}
	// The app sees only its own keys: those with the prefix it writes
	// (the store applies it, inside its paging).
	parsed.KeyPrefix, _ = c.StoreKey("", storeName, a.AppID, a.Namespace)
	res, err := q.Query(ctx, parsed)
	if err != nil {
		return QueryResult{}, errQueryFailed(storeName, err.Error())
	}
	return res, nil
}

// gRPC: the state methods of dapr.proto.runtime.v1.Dapr.

func consistencyStrong(c commonv1pb.StateOptions_StateConsistency) bool {
	return c == commonv1pb.StateOptions_CONSISTENCY_STRONG
}

func etagOf(e *commonv1pb.Etag) *string {
	if e == nil {
		return nil
	}
	v := e.GetValue()
	return nonEmpty(&v)
}

// GetState is dapr.proto.runtime.v1.Dapr/GetState.
func (a *API) GetState(ctx context.Context, in *runtimev1pb.GetStateRequest) (*runtimev1pb.GetStateResponse, error) {
	c, err := a.store(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	k, err := a.key(c, in.GetStoreName(), in.GetKey())
	if err != nil {
		return nil, err
	}
	it, found, err := c.Store.Get(ctx, GetRequest{Key: k, Strong: consistencyStrong(in.GetConsistency()), Metadata: in.GetMetadata()})
	if err != nil {
		return nil, basic(codes.Internal, http.StatusInternalServerError, codeGet, fmt.Sprintf("fail to get %s from state store %s: %s", in.GetKey(), in.GetStoreName(), err))
	}
	if !found {
		return &runtimev1pb.GetStateResponse{}, nil
	}
	v, err := c.open(it.Value)
	if err != nil {
		return nil, basic(codes.Internal, http.StatusInternalServerError, codeGet, fmt.Sprintf("fail to get %s from state store %s: %s", in.GetKey(), in.GetStoreName(), err))
	}
	return &runtimev1pb.GetStateResponse{Data: v, Etag: it.ETag, Metadata: itemMetadata(it)}, nil
}

// GetBulkState is dapr.proto.runtime.v1.Dapr/GetBulkState.
func (a *API) GetBulkState(ctx context.Context, in *runtimev1pb.GetBulkStateRequest) (*runtimev1pb.GetBulkStateResponse, error) {
	c, err := a.store(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	items, err := a.bulkGet(ctx, c, in.GetStoreName(), in.GetKeys(), int(in.GetParallelism()), in.GetMetadata())
	if err != nil {
		return nil, err
	}
	return &runtimev1pb.GetBulkStateResponse{Items: items}, nil
}

func setFromItem(s *commonv1pb.StateItem) (SetRequest, error) {
	req := SetRequest{Key: s.GetKey(), Value: s.GetValue(), ETag: etagOf(s.GetEtag()), Metadata: s.GetMetadata()}
	if req.Value == nil {
		req.Value = []byte{}
	}
	if o := s.GetOptions(); o != nil {
		req.FirstWrite = o.GetConcurrency() == commonv1pb.StateOptions_CONCURRENCY_FIRST_WRITE
		req.Strong = consistencyStrong(o.GetConsistency())
	}
	var err error
	req.TTL, err = ttl(req.Metadata)
	return req, err
}

func deleteFromItem(s *commonv1pb.StateItem) DeleteRequest {
	req := DeleteRequest{Key: s.GetKey(), ETag: etagOf(s.GetEtag()), Metadata: s.GetMetadata()}
	if o := s.GetOptions(); o != nil {
		req.FirstWrite = o.GetConcurrency() == commonv1pb.StateOptions_CONCURRENCY_FIRST_WRITE
		req.Strong = consistencyStrong(o.GetConsistency())
	}
	return req
}

// SaveState is dapr.proto.runtime.v1.Dapr/SaveState.
func (a *API) SaveState(ctx context.Context, in *runtimev1pb.SaveStateRequest) (*emptypb.Empty, error) {
	c, err := a.store(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	reqs := make([]SetRequest, 0, len(in.GetStates()))
	for _, s := range in.GetStates() {
		if s.GetKey() == "" {
			return nil, basic(codes.InvalidArgument, http.StatusBadRequest, codeSave, "state key cannot be empty")
		}
		req, err := setFromItem(s)
		if err != nil {
			return nil, basic(codes.InvalidArgument, http.StatusBadRequest, codeSave, fmt.Sprintf("failed saving state in state store %s: %s", in.GetStoreName(), err))
		}
		if req.Key, err = a.key(c, in.GetStoreName(), s.GetKey()); err != nil {
			return nil, err
		}
		if req.Value, err = c.seal(req.Value); err != nil {
			return nil, basic(codes.Internal, http.StatusInternalServerError, codeSave, fmt.Sprintf("failed saving state in state store %s: %s", in.GetStoreName(), err))
		}
		reqs = append(reqs, req)
	}
	if err := c.setAll(ctx, reqs); err != nil {
		httpStatus, code := etagStatus(err)
		return nil, basic(code, httpStatus, codeSave, fmt.Sprintf("failed saving state in state store %s: %s", in.GetStoreName(), err))
	}
	return &emptypb.Empty{}, nil
}

// DeleteState is dapr.proto.runtime.v1.Dapr/DeleteState.
func (a *API) DeleteState(ctx context.Context, in *runtimev1pb.DeleteStateRequest) (*emptypb.Empty, error) {
	c, err := a.store(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	k, err := a.key(c, in.GetStoreName(), in.GetKey())
	if err != nil {
		return nil, err
	}
	req := deleteFromItem(&commonv1pb.StateItem{Key: in.GetKey(), Etag: in.GetEtag(), Options: in.GetOptions(), Metadata: in.GetMetadata()})
	req.Key = k
	if err := c.Store.Delete(ctx, req); err != nil {
		httpStatus, code := etagStatus(err)
		return nil, basic(code, httpStatus, codeDelete, fmt.Sprintf("failed deleting state with key %s: %s", in.GetKey(), err))
	}
	return &emptypb.Empty{}, nil
}

// DeleteBulkState is dapr.proto.runtime.v1.Dapr/DeleteBulkState.
func (a *API) DeleteBulkState(ctx context.Context, in *runtimev1pb.DeleteBulkStateRequest) (*emptypb.Empty, error) {
	c, err := a.store(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	reqs := make([]DeleteRequest, 0, len(in.GetStates()))
	for _, s := range in.GetStates() {
		req := deleteFromItem(s)
		if req.Key, err = a.key(c, in.GetStoreName(), s.GetKey()); err != nil {
			return nil, err
		}
		reqs = append(reqs, req)
	}
	if err := c.deleteAll(ctx, reqs); err != nil {
		httpStatus, code := etagStatus(err)
		return nil, basic(code, httpStatus, codeBulkDelete, fmt.Sprintf("failed deleting state in state store %s: %s", in.GetStoreName(), err))
	}
	return &emptypb.Empty{}, nil
}

// ExecuteStateTransaction is dapr.proto.runtime.v1.Dapr/ExecuteStateTransaction.
func (a *API) ExecuteStateTransaction(ctx context.Context, in *runtimev1pb.ExecuteStateTransactionRequest) (*emptypb.Empty, error) {
	c, err := a.store(in.GetStoreName())
	if err != nil {
		return nil, err
	}
	tx, ok := c.Store.(Transactional)
	if !ok || !c.Store.Features().Transactional {
		return nil, errTransactionsNotSupported(in.GetStoreName())
	}
	ops := make([]Operation, 0, len(in.GetOperations()))
	for _, o := range in.GetOperations() {
		s := o.GetRequest()
		k, err := a.key(c, in.GetStoreName(), s.GetKey())
		if err != nil {
			return nil, err
		}
		switch o.GetOperationType() {
		case "upsert":
			req, err := setFromItem(s)
			if err != nil {
				return nil, basic(codes.InvalidArgument, http.StatusBadRequest, codeTransaction, "error while executing state transaction: "+err.Error())
			}
			req.Metadata = mergeMetadata(req.Metadata, in.GetMetadata())
			req.Key = k
			if req.Value, err = c.seal(req.Value); err != nil {
				return nil, basic(codes.Internal, http.StatusInternalServerError, codeTransaction, "error while executing state transaction: "+err.Error())
			}
			ops = append(ops, Operation{Set: &req})
		case "delete":
			req := deleteFromItem(s)
			req.Key = k
			ops = append(ops, Operation{Delete: &req})
		default:
			return nil, basic(codes.Unimplemented, http.StatusInternalServerError, codeNotSupportedOp, fmt.Sprintf("operation type %s not supported", o.GetOperationType()))
		}
	}
	if len(ops) == 0 {
		return &emptypb.Empty{}, nil
	}
	if err := tx.Multi(ctx, ops); err != nil {
		return nil, basic(codes.Internal, http.StatusInternalServerError, codeTransaction, "error while executing state transaction: "+err.Error())
	}
	return &emptypb.Empty{}, nil
}

// QueryStateAlpha1 is dapr.proto.runtime.v1.Dapr/QueryStateAlpha1.
func (a *API) QueryStateAlpha1(ctx context.Context, in *runtimev1pb.QueryStateRequest) (*runtimev1pb.QueryStateResponse, error) {
	res, err := a.query(ctx, in.GetStoreName(), []byte(in.GetQuery()), in.GetMetadata())
	if err != nil {
		return nil, err
	}
	out := &runtimev1pb.QueryStateResponse{Token: res.Token}
	for _, it := range res.Items {
		out.Results = append(out.Results, &runtimev1pb.QueryStateItem{Key: AppKey(it.Key), Data: it.Value, Etag: it.ETag, Error: it.Error})
	}
	return out, nil
}

// pathUnescape is url.PathUnescape, named for its one use.
var pathUnescape = url.PathUnescape

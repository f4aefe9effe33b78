package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Paths served by Handler.
const (
	// PathPrefix is the common prefix of every registry path.
	PathPrefix = "/registry/v1/"
	// PathHealthz answers GET with 200 and HealthStatus while the registry serves.
	PathHealthz = PathPrefix + "healthz"
	// PathInstances answers GET with a Snapshot. Query parameters: appID and
	// namespace filter the instances; epoch and index, when both given, make
	// it a long-poll that answers once the registry moved past them, or after
	// wait (a Go duration, default DefaultWait, at most Options.MaxWait).
	PathInstances = PathPrefix + "instances"
)

// DefaultWait is how long a long-poll that gives no wait parameter blocks.
const DefaultWait = 60 * time.Second

// maxBody bounds a registration's JSON body.
const maxBody = 64 << 10

// Registration is the body of PUT /registry/v1/instances/{id}. An empty Host
// stands for the address the request came from.
type Registration struct {
	AppID     string `json:"appID"`
	Namespace string `json:"namespace,omitempty"`
	Host      string `json:"host,omitempty"`
	Port      int    `json:"port"`
	// TTLSeconds is the lease asked for; 0 takes the registry's default.
	TTLSeconds float64 `json:"ttlSeconds,omitempty"`
}

// Lease is the answer to a registration.
type Lease struct {
	Instance Instance `json:"instance"`
	// TTLSeconds is the lease granted: renew well within it.
	TTLSeconds float64 `json:"ttlSeconds"`
}

// HealthStatus is the answer to GET /registry/v1/healthz.
type HealthStatus struct {
	Status    string `json:"status"`
	Epoch     string `json:"epoch"`
	Instances int    `json:"instances"`
}

// ErrorResponse is the body of every error answer, in Dapr's shape.
type ErrorResponse struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
}

// Error codes of ErrorResponse.
const (
	ErrCodeMalformedRequest = "ERR_MALFORMED_REQUEST"
	ErrCodeInvalidInstance  = "ERR_REGISTRY_INVALID_INSTANCE"
	ErrCodeNotFound         = "ERR_REGISTRY_INSTANCE_NOT_FOUND"
)

// Handler serves the registry under /registry/v1/ (HTTP/1.1 or h2c, JSON).
// Mount it on the control plane's mux at PathPrefix.
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHealthz, r.serveHealthz)
	mux.HandleFunc("GET "+PathInstances, r.serveList)
	mux.HandleFunc("PUT "+PathInstances+"/{id}", r.servePut)
	mux.HandleFunc("DELETE "+PathInstances+"/{id}", r.serveDelete)
	mux.HandleFunc(PathPrefix, func(w http.ResponseWriter, req *http.Request) {
		allow := ""
		switch p := req.URL.Path; {
		case p == PathHealthz || p == PathInstances:
			allow = "GET, HEAD"
		case strings.HasPrefix(p, PathInstances+"/") && !strings.Contains(p[len(PathInstances)+1:], "/"):
			allow = "PUT, DELETE"
		}
		if allow != "" {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, ErrCodeMalformedRequest, fmt.Sprintf("method %s not allowed on %s; allowed: %s", req.Method, req.URL.Path, allow))
			return
		}
		writeError(w, http.StatusNotFound, ErrCodeMalformedRequest, fmt.Sprintf("no registry endpoint %s %s", req.Method, req.URL.Path))
	})
	return mux
}

func (r *Registry) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	n := len(r.entries)
	r.mu.Unlock()
	writeJSON(w, http.StatusOK, HealthStatus{Status: "ok", Epoch: r.epoch, Instances: n})
}

func (r *Registry) serveList(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	var snap Snapshot
	if q.Has("index") || q.Has("epoch") {
		index, err := strconv.ParseUint(q.Get("index"), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, ErrCodeMalformedRequest, fmt.Sprintf("index %q: want a whole number", q.Get("index")))
			return
		}
		wait := DefaultWait
		if s := q.Get("wait"); s != "" {
			wait, err = time.ParseDuration(s)
			if err != nil || wait < 0 {
				writeError(w, http.StatusBadRequest, ErrCodeMalformedRequest, fmt.Sprintf("wait %q: want a duration such as 30s", s))
				return
			}
		}
		wait = min(wait, r.opts.MaxWait)
		ctx, cancel := context.WithTimeout(req.Context(), wait)
		snap = r.Wait(ctx, q.Get("epoch"), index)
		cancel()
	} else {
		snap = r.Snapshot()
	}
	if appID, ns := q.Get("appID"), q.Get("namespace"); appID != "" || ns != "" {
		kept := snap.Instances[:0]
		for _, inst := range snap.Instances {
			if (appID == "" || inst.AppID == appID) && (ns == "" || inst.Namespace == ns) {
				kept = append(kept, inst)
			}
		}
		snap.Instances = kept
	}
	writeJSON(w, http.StatusOK, snap)
}

func (r *Registry) servePut(w http.ResponseWriter, req *http.Request) {
	var reg Registration
	body := http.MaxBytesReader(w, req.Body, maxBody)
	dec := json.NewDecoder(body)
	if err := dec.Decode(&reg); err != nil {
		writeError(w, http.StatusBadRequest, ErrCodeMalformedRequest, "registration body: "+err.Error())
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, ErrCodeMalformedRequest, "registration body: trailing data after the JSON object")
		return
	}
	if math.IsNaN(reg.TTLSeconds) || reg.TTLSeconds < 0 || reg.TTLSeconds > float64(math.MaxInt64/int64(time.Second)) {
		writeError(w, http.StatusBadRequest, ErrCodeMalformedRequest, fmt.Sprintf("ttlSeconds %v: want a positive number of seconds", reg.TTLSeconds))
		return
	}
	host := reg.Host
	if host == "" {
		if h, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
			host = h
		}
	}
	inst := Instance{ID: req.PathValue("id"), AppID: reg.AppID, Namespace: reg.Namespace, Host: host, Port: reg.Port}
	stored, ttl, err := r.Register(inst, time.Duration(reg.TTLSeconds*float64(time.Second)))
	if err != nil {
		writeError(w, http.StatusBadRequest, ErrCodeInvalidInstance, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, Lease{Instance: stored, TTLSeconds: ttl.Seconds()})
}

func (r *Registry) serveDelete(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	if !r.Deregister(id) {
		writeError(w, http.StatusNotFound, ErrCodeNotFound, fmt.Sprintf("no instance registered under id %q", id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorResponse{ErrorCode: code, Message: msg})
}

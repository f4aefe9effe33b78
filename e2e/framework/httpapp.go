package framework

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// HTTPAppOptions configures an HTTPApp.
type HTTPAppOptions struct {
	// H2C serves HTTP/2 with prior knowledge only (what --app-protocol h2c
	// speaks); HTTP/1.1 requests are refused.
	H2C bool
	// Port, when not 0, is the port to listen on (one reserved with
	// FreePort); by default the app takes a fresh one.
	Port int
}

// Echo is what the HTTP app's echo endpoints answer: the request as the app saw it.
type Echo struct {
	Method        string              `json:"method"`
	Path          string              `json:"path"`
	EscapedPath   string              `json:"escapedPath"`
	RawQuery      string              `json:"rawQuery"`
	Proto         string              `json:"proto"`
	Host          string              `json:"host"`
	Header        map[string][]string `json:"header"`
	Trailer       map[string][]string `json:"trailer,omitempty"`
	Body          string              `json:"body"`
	ContentLength int64               `json:"contentLength"`
}

// Count is what /count answers: how many bytes the request body had, and their SHA-256.
type Count struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Interval is when the app served one /slow request.
type Interval struct {
	ID         string
	Start, End time.Time
}

// HTTPApp is an app the sidecars call, served from the test process. Its endpoints:
//
//	/healthz          the status set with SetHealth (200 at first)
//	/fail/{code}      status code with a JSON body and an X-App-Error header
//	/count            reads the body as a stream; answers Count
//	/stream?n=N&seed=S  streams Pattern(S, N) back, without Content-Length
//	/slow?id=X&hold=D holds the request until another /slow request is in
//	                  flight or D (default 2s) has passed; records an Interval
//	/flaky/{key}?fail=N&code=C  answers C (500) to the first N calls of key, then echoes
//	/hop              echoes, and answers with hop-by-hop headers
//	anything else     echoes the request as JSON (Echo); ?status=N sets the
//	                  status; X-Echo-Method and X-App-Name headers are set
type HTTPApp struct {
	Port int

	srv    *http.Server
	health atomic.Int32
	hits   atomic.Int64 // /healthz hits

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced when inFlight changes
	inFlight    int
	maxInFlight int
	intervals   []Interval
	flaky       map[string]int // /flaky/{key}: calls so far
}

// Calls is how many calls /flaky/{key} has had.
func (a *HTTPApp) Calls(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.flaky[key]
}

// StartHTTPApp serves an HTTPApp on a fresh loopback port until the test ends.
func StartHTTPApp(t testing.TB, o HTTPAppOptions) *HTTPApp {
	t.Helper()
	var l net.Listener
	if o.Port != 0 {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(o.Port)); err != nil {
			t.Fatalf("e2e: HTTP app: %v", err)
		}
	} else {
		l = Listen(t)
	}
	a := &HTTPApp{changed: make(chan struct{})}
	a.health.Store(http.StatusOK)
	a.Port = l.Addr().(*net.TCPAddr).Port
	a.srv = &http.Server{Handler: http.HandlerFunc(a.serve), ReadHeaderTimeout: 30 * time.Second}
	if o.H2C {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		a.srv.Protocols = &p
	}
	go func() { _ = a.srv.Serve(l) }()
	t.Cleanup(func() { _ = a.srv.Close() })
	return a
}

// Close stops the app: its port refuses connections from now on.
func (a *HTTPApp) Close() { _ = a.srv.Close() }

// SetHealth sets the status /healthz answers.
func (a *HTTPApp) SetHealth(status int) { a.health.Store(int32(status)) }

// HealthHits is how many times /healthz was asked.
func (a *HTTPApp) HealthHits() int64 { return a.hits.Load() }

// InFlight is how many /slow requests the app is serving now.
func (a *HTTPApp) InFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inFlight
}

// MaxInFlight is the most /slow requests the app served at once.
func (a *HTTPApp) MaxInFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxInFlight
}

// Intervals are the /slow requests served so far, in the order they finished.
func (a *HTTPApp) Intervals() []Interval {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Interval(nil), a.intervals...)
}

func (a *HTTPApp) serve(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/healthz":
		a.hits.Add(1)
		w.WriteHeader(int(a.health.Load()))
	case strings.HasPrefix(p, "/fail/"):
		code, err := strconv.Atoi(strings.TrimPrefix(p, "/fail/"))
		if err != nil || code < 200 || code > 999 {
			http.Error(w, "bad code", http.StatusTeapot)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-App-Error", strconv.Itoa(code))
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":"the app says %d"}`, code)
	case strings.HasPrefix(p, "/flaky/"):
		// /flaky/{key}?fail=N&code=C: the first N calls with that key
		// answer C (default 500), then the request is echoed.
		q := r.URL.Query()
		fail, _ := strconv.Atoi(q.Get("fail"))
		code, err := strconv.Atoi(q.Get("code"))
		if err != nil {
			code = http.StatusInternalServerError
		}
		a.mu.Lock()
		if a.flaky == nil {
			a.flaky = map[string]int{}
		}
		key := strings.TrimPrefix(p, "/flaky/")
		a.flaky[key]++
		n := a.flaky[key]
		a.mu.Unlock()
		if n <= fail {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":"call %d of %s fails"}`, n, key)
			return
		}
		a.echo(w, r)
	case p == "/count":
		c := NewCountingHash()
		if _, err := io.Copy(c, r.Body); err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, Count{Bytes: c.N, SHA256: c.SHA256()})
	case p == "/stream":
		q := r.URL.Query()
		n, err1 := strconv.ParseInt(q.Get("n"), 10, 64)
		seed, err2 := strconv.ParseUint(q.Get("seed"), 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, Pattern(seed, n))
	case p == "/slow":
		a.serveSlow(w, r)
	case p == "/hop":
		h := w.Header()
		h.Set("Connection", "X-Resp-Hop")
		h.Set("X-Resp-Hop", "must not pass")
		h.Set("Keep-Alive", "timeout=9")
		h.Set("Proxy-Authenticate", "Basic realm=x")
		h.Set("Proxy-Connection", "keep-alive")
		h.Set("Upgrade", "bogus/1")
		h.Set("X-Resp-End-To-End", "kept")
		a.echo(w, r)
	default:
		a.echo(w, r)
	}
}

func (a *HTTPApp) echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	e := Echo{
		Method: r.Method, Path: r.URL.Path, EscapedPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
		Proto: r.Proto, Host: r.Host, Header: r.Header, Body: string(body), ContentLength: r.ContentLength,
	}
	if len(r.Trailer) > 0 {
		e.Trailer = r.Trailer
	}
	status := http.StatusOK
	if s := r.URL.Query().Get("status"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			status = n
		}
	}
	w.Header().Set("X-Echo-Method", r.Method)
	w.Header().Set("X-App-Name", "e2e-http-app")
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (a *HTTPApp) serveSlow(w http.ResponseWriter, r *http.Request) {
	hold := 2 * time.Second
	if d, err := time.ParseDuration(r.URL.Query().Get("hold")); err == nil {
		hold = d
	}
	_, _ = io.Copy(io.Discard, r.Body)
	start := time.Now()
	a.mu.Lock()
	a.inFlight++
	a.maxInFlight = max(a.maxInFlight, a.inFlight)
	a.notifyLocked()
	a.mu.Unlock()

	timer := time.NewTimer(hold)
	defer timer.Stop()
	for {
		a.mu.Lock()
		n, ch := a.inFlight, a.changed
		a.mu.Unlock()
		if n >= 2 {
			break
		}
		select {
		case <-ch:
			continue
		case <-timer.C:
		case <-r.Context().Done():
		}
		break
	}

	a.mu.Lock()
	a.inFlight--
	a.intervals = append(a.intervals, Interval{ID: r.URL.Query().Get("id"), Start: start, End: time.Now()})
	a.notifyLocked()
	a.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, r.URL.Query().Get("id"))
}

func (a *HTTPApp) notifyLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

package framework

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Jaeger is a real Jaeger (all-in-one, spans in memory) the test started
// on free loopback ports; the test's cleanup stops it and prints its log if
// the test failed.
type Jaeger struct {
	// OTLPGRPC and OTLPHTTP are where it takes spans (host:port).
	OTLPGRPC string
	OTLPHTTP string
	// Query is its query API and UI (host:port).
	Query  string
	client *http.Client
}

// jaegerConfig is the all-in-one configuration with every listener on a
// port of the test's choosing and no internal telemetry server.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    traces:
      level: none
    logs:
      level: info
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// StartJaeger starts Jaeger, built by scripts/tools.sh jaeger, and waits
// until its query API answers.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin := Tool(t, "jaeger")
	queryHTTP, queryGRPC, otlpGRPC, otlpHTTP := FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, queryHTTP, queryGRPC, otlpGRPC, otlpHTTP), 0o644); err != nil {
		t.Fatal(err)
	}
	j := &Jaeger{
		OTLPGRPC: "127.0.0.1:" + strconv.Itoa(otlpGRPC),
		OTLPHTTP: "127.0.0.1:" + strconv.Itoa(otlpHTTP),
		Query:    "127.0.0.1:" + strconv.Itoa(queryHTTP),
		client:   &http.Client{Timeout: 5 * time.Second},
	}
	proc := startToolProcess(t, "jaeger", exec.Command(bin, "--config", cfg))
	WaitFor(t, "Jaeger's query API", func() error {
		if err := proc.exited(); err != nil {
			return err
		}
		_, err := j.Services()
		return err
	})
	return j
}

// Services lists the services Jaeger has spans of.
func (j *Jaeger) Services() ([]string, error) {
	var out struct {
		Data []string `json:"data"`
	}
	if err := j.get("/api/services", &out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// JaegerSpan is one span as Jaeger's query API gives it.
type JaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	ProcessID string `json:"processID"`
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	// Service is the service of the span's process (filled by Trace).
	Service string `json:"-"`
}

// Parent is the span id of the span's parent ("" for a root).
func (s JaegerSpan) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Tag is the value of the span's tag key, as text ("" when absent).
func (s JaegerSpan) Tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// Trace is every span Jaeger holds of a trace (id in hex).
func (j *Jaeger) Trace(traceID string) ([]JaegerSpan, error) {
	var out struct {
		Data []struct {
			Spans     []JaegerSpan `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := j.get("/api/traces/"+url.PathEscape(traceID), &out); err != nil {
		return nil, err
	}
	var spans []JaegerSpan
	for _, d := range out.Data {
		for _, s := range d.Spans {
			s.Service = d.Processes[s.ProcessID].ServiceName
			spans = append(spans, s)
		}
	}
	return spans, nil
}

func (j *Jaeger) get(path string, v any) error {
	resp, err := j.client.Get("http://" + j.Query + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

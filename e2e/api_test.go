package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/outrigger/outrigger/e2e/framework"
)

// metadataJSON is the part of daprd's GET /v1.0/metadata answer the tests read.
type metadataJSON struct {
	ID                      string            `json:"id"`
	Extended                map[string]string `json:"extended"`
	AppConnectionProperties *struct {
		Port           int    `json:"port"`
		Protocol       string `json:"protocol"`
		ChannelAddress string `json:"channelAddress"`
		MaxConcurrency int    `json:"maxConcurrency"`
		Health         *struct {
			HealthCheckPath     string `json:"healthCheckPath"`
			HealthProbeInterval string `json:"healthProbeInterval"`
			HealthProbeTimeout  string `json:"healthProbeTimeout"`
			HealthThreshold     int    `json:"healthThreshold"`
		} `json:"health"`
	} `json:"appConnectionProperties"`
}

func getMetadata(t *testing.T, s *framework.Sidecar) metadataJSON {
	t.Helper()
	resp, body := call(t, http.MethodGet, s.URL("/v1.0/metadata"), nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1.0/metadata: %d %q, want 200", resp.StatusCode, truncate(body))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET /v1.0/metadata: Content-Type %q, want application/json", ct)
	}
	var m metadataJSON
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("GET /v1.0/metadata: %q: %v", truncate(body), err)
	}
	return m
}

func wantStatus(t *testing.T, s *framework.Sidecar, method, path string, want int) []byte {
	t.Helper()
	resp, body := call(t, method, s.URL(path), nil, nil)
	if resp.StatusCode != want {
		t.Errorf("%s %s: %d %q, want %d", method, path, resp.StatusCode, truncate(body), want)
	}
	return body
}

// TestHealthAndMetadata covers /v1.0/healthz, /v1.0/healthz/outbound and the
// metadata API over HTTP and gRPC.
func TestHealthAndMetadata(t *testing.T) {
	t.Parallel()
	appPort := framework.FreePort(t)
	// The app is not listening yet: the APIs are up, the sidecar is not ready.
	s := framework.StartSidecar(t, framework.SidecarOptions{AppID: "meta", AppPort: appPort, AppMaxConcurrency: 7, Wait: framework.ReadyOutbound})

	t.Run("healthz before the app listens", func(t *testing.T) {
		resp, body := call(t, http.MethodGet, s.URL("/v1.0/healthz"), nil, nil)
		wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_HEALTH_NOT_READY")
		wantStatus(t, s, http.MethodGet, "/v1.0/healthz/outbound", http.StatusNoContent)
	})

	framework.StartHTTPApp(t, framework.HTTPAppOptions{Port: appPort})
	s.WaitReady(t, "/v1.0/healthz")

	t.Run("healthz", func(t *testing.T) {
		wantStatus(t, s, http.MethodGet, "/v1.0/healthz", http.StatusNoContent)
		wantStatus(t, s, http.MethodGet, "/v1.0/healthz/outbound", http.StatusNoContent)
		wantStatus(t, s, http.MethodGet, "/v1.0/healthz?appid=meta", http.StatusNoContent)
		resp, body := call(t, http.MethodGet, s.URL("/v1.0/healthz?appid=other"), nil, nil)
		wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_HEALTH_APPID_NOT_MATCH")
	})

	t.Run("GET metadata", func(t *testing.T) {
		m := getMetadata(t, s)
		if m.ID != "meta" {
			t.Errorf("id %q, want meta", m.ID)
		}
		acp := m.AppConnectionProperties
		if acp == nil {
			t.Fatal("no appConnectionProperties")
		}
		if acp.Port != appPort || acp.Protocol != "http" || acp.ChannelAddress != "127.0.0.1" || acp.MaxConcurrency != 7 {
			t.Errorf("appConnectionProperties %+v, want port %d, protocol http, channelAddress 127.0.0.1, maxConcurrency 7", *acp, appPort)
		}
		if acp.Health != nil {
			t.Errorf("appConnectionProperties.health %+v without app health checks, want none", *acp.Health)
		}
	})

	t.Run("PUT metadata", func(t *testing.T) {
		resp, body := call(t, http.MethodPut, s.URL("/v1.0/metadata/http-key"), strings.NewReader("http value"), nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT /v1.0/metadata/http-key: %d %q, want 204", resp.StatusCode, truncate(body))
		}
		if v := getMetadata(t, s).Extended["http-key"]; v != "http value" {
			t.Errorf("extended[http-key] %q, want %q", v, "http value")
		}
		resp, body = call(t, http.MethodPut, s.URL("/v1.0/metadata/http-key"), strings.NewReader("second"), nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT /v1.0/metadata/http-key again: %d %q, want 204", resp.StatusCode, truncate(body))
		}
		if v := getMetadata(t, s).Extended["http-key"]; v != "second" {
			t.Errorf("extended[http-key] %q after a second PUT, want second", v)
		}
	})

	t.Run("gRPC metadata", func(t *testing.T) {
		client := runtimev1pb.NewDaprClient(s.Dial(t))
		if _, err := client.SetMetadata(callCtx(t), &runtimev1pb.SetMetadataRequest{Key: "grpc-key", Value: "grpc value"}); err != nil {
			t.Fatalf("SetMetadata: %v", err)
		}
		m, err := client.GetMetadata(callCtx(t), &runtimev1pb.GetMetadataRequest{})
		if err != nil {
			t.Fatalf("GetMetadata: %v", err)
		}
		if m.GetId() != "meta" {
			t.Errorf("GetMetadata id %q, want meta", m.GetId())
		}
		if v := m.GetExtendedMetadata()["grpc-key"]; v != "grpc value" {
			t.Errorf("GetMetadata extended[grpc-key] %q, want %q", v, "grpc value")
		}
		if v := m.GetExtendedMetadata()["http-key"]; v != "second" {
			t.Errorf("GetMetadata extended[http-key] %q, want the value PUT over HTTP, second", v)
		}
		acp := m.GetAppConnectionProperties()
		if acp.GetPort() != int32(appPort) || acp.GetProtocol() != "http" {
			t.Errorf("GetMetadata app connection %v, want port %d protocol http", acp, appPort)
		}
		if v := getMetadata(t, s).Extended["grpc-key"]; v != "grpc value" {
			t.Errorf("HTTP metadata extended[grpc-key] %q, want %q", v, "grpc value")
		}
	})
}

// TestShutdown stops sidecars through /v1.0/shutdown and gRPC Shutdown: the
// process exits with status 0.
func TestShutdown(t *testing.T) {
	t.Parallel()
	t.Run("HTTP", func(t *testing.T) {
		s := framework.StartSidecar(t, framework.SidecarOptions{AppID: "shut-http"})
		resp, body := call(t, http.MethodPost, s.URL("/v1.0/shutdown"), nil, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("POST /v1.0/shutdown: %d %q, want 204", resp.StatusCode, truncate(body))
		}
		if code := s.WaitExit(t); code != 0 {
			t.Errorf("exit status %d after /v1.0/shutdown, want 0", code)
		}
	})
	t.Run("gRPC", func(t *testing.T) {
		s := framework.StartSidecar(t, framework.SidecarOptions{AppID: "shut-grpc"})
		if _, err := runtimev1pb.NewDaprClient(s.Dial(t)).Shutdown(callCtx(t), &runtimev1pb.ShutdownRequest{}); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if code := s.WaitExit(t); code != 0 {
			t.Errorf("exit status %d after gRPC Shutdown, want 0", code)
		}
	})
}

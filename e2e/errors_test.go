package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestBadInput sends what a sidecar must refuse: unknown and unreachable
// apps, malformed invocation paths, bodies over --max-body-size, broken
// gRPC frames. Each gets Dapr's error shape (or a gRPC status, or a closed
// connection) and the sidecar goes on serving.
func TestBadInput(t *testing.T) {
	t.Parallel()
	app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	callee := framework.StartSidecar(t, framework.SidecarOptions{AppID: "callee", AppPort: app.Port, MaxBodySize: "1Mi"})
	downApp := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
	calleeDown := framework.StartSidecar(t, framework.SidecarOptions{AppID: "callee-down", AppPort: downApp.Port})
	downApp.Close() // reachable at start-up, gone now
	ghost := framework.Endpoint{AppID: "ghost", Address: "127.0.0.1:" + strconv.Itoa(framework.FreePort(t))}
	caller := framework.StartSidecar(t, framework.SidecarOptions{
		AppID: "caller", MaxBodySize: "1Mi",
		Resolve: []framework.Endpoint{callee.Endpoint(), calleeDown.Endpoint(), ghost},
	})
	bigCaller := framework.StartSidecar(t, framework.SidecarOptions{
		AppID: "big-caller", MaxBodySize: "128Mi", Resolve: []framework.Endpoint{callee.Endpoint()},
	})

	t.Run("unknown app-id", func(t *testing.T) {
		resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/nobody/method/x"), strings.NewReader("x"), nil)
		e := wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_DIRECT_INVOKE")
		if !strings.Contains(e.Message, "nobody") {
			t.Errorf("message %q does not name the app-id nobody", e.Message)
		}
		wantEchoed(t, caller, "callee")
	})

	t.Run("unknown app-id by header", func(t *testing.T) {
		resp, body := call(t, http.MethodGet, caller.URL("/x"), nil, http.Header{"Dapr-App-Id": {"nobody"}})
		wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_DIRECT_INVOKE")
		wantEchoed(t, caller, "callee")
	})

	t.Run("callee sidecar not running", func(t *testing.T) {
		resp, body := call(t, http.MethodGet, caller.URL("/v1.0/invoke/ghost/method/x"), nil, nil)
		wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_DIRECT_INVOKE")
		wantEchoed(t, caller, "callee")
	})

	t.Run("callee app down", func(t *testing.T) {
		resp, body := call(t, http.MethodPost, caller.URL("/v1.0/invoke/callee-down/method/echo"), strings.NewReader("x"), nil)
		wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_DIRECT_INVOKE")
		wantEchoed(t, caller, "callee")
		resp, body = call(t, http.MethodGet, calleeDown.URL("/v1.0/healthz/outbound"), nil, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("callee-down sidecar: /v1.0/healthz/outbound %d %q, want 204", resp.StatusCode, truncate(body))
		}
	})

	t.Run("malformed invoke paths", func(t *testing.T) {
		// As daprd's findTargetIDAndMethod: no app-id in the path and none
		// in the headers is ERR_DIRECT_INVOKE with 404.
		for _, path := range []string{"/v1.0/invoke//method/x", "/v1.0/invoke/x", "/v1.0/invoke/", "/v1.0/invoke/x/methods/y", "/not/an/api/path"} {
			t.Run(path, func(t *testing.T) {
				resp, body := call(t, http.MethodGet, caller.URL(path), nil, nil)
				wantDaprError(t, resp, body, http.StatusNotFound, "ERR_DIRECT_INVOKE")
			})
		}
		// An empty method is the app's root, as in daprd; an unknown app
		// then fails as any unknown app does.
		t.Run("/v1.0/invoke/nobody/method/", func(t *testing.T) {
			resp, body := call(t, http.MethodGet, caller.URL("/v1.0/invoke/nobody/method/"), nil, nil)
			wantDaprError(t, resp, body, http.StatusInternalServerError, "ERR_DIRECT_INVOKE")
		})
		t.Run("/v1.0/invoke/callee/method/", func(t *testing.T) {
			resp, body := call(t, http.MethodGet, caller.URL("/v1.0/invoke/callee/method/"), nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %q, want the app's 200", resp.StatusCode, truncate(body))
			}
			if e := echoOf(t, body); e.Path != "/" {
				t.Errorf("app saw path %q, want /", e.Path)
			}
		})
		wantEchoed(t, caller, "callee")
	})

	t.Run("body over max-body-size", func(t *testing.T) {
		const limit = 1 << 20
		over := int64(limit + 64<<10)
		for _, c := range []struct {
			name   string
			via    *framework.Sidecar
			length bool
		}{
			{"caller limit, with Content-Length", caller, true},
			{"caller limit, chunked", caller, false},
			{"callee limit, with Content-Length", bigCaller, true},
			{"callee limit, chunked", bigCaller, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				var body io.Reader = framework.Pattern(5, over)
				if !c.length {
					body = io.MultiReader(body) // hides the length: sent chunked
				}
				req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, c.via.URL("/v1.0/invoke/callee/method/count"), body)
				if err != nil {
					t.Fatal(err)
				}
				if c.length {
					req.ContentLength = over
				}
				resp, err := httpClient.Do(req)
				if err != nil {
					t.Fatalf("POST %d bytes: %v", over, err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				wantDaprError(t, resp, got, http.StatusRequestEntityTooLarge, "")
				wantEchoed(t, c.via, "callee")
			})
		}
		t.Run("exactly the limit", func(t *testing.T) {
			resp, got := call(t, http.MethodPost, caller.URL("/v1.0/invoke/callee/method/count"), io.MultiReader(framework.Pattern(6, limit)), nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST %d bytes (the limit): %d %q, want 200", limit, resp.StatusCode, truncate(got))
			}
			if !bytes.Contains(got, []byte(`"bytes":`+strconv.Itoa(limit))) {
				t.Errorf("app counted %q, want %d bytes", got, limit)
			}
		})
	})

	t.Run("broken gRPC frames", func(t *testing.T) {
		t.Run("not HTTP/2", func(t *testing.T) {
			wantClosed(t, caller.GRPCAddr(), []byte("GARBAGE / HTTP/9.9\r\n\r\n"+strings.Repeat("\x00\xff", 64)))
			wantGRPCServes(t, caller)
		})
		t.Run("oversized frame", func(t *testing.T) {
			// The preface, an empty SETTINGS frame, then a DATA frame header
			// announcing 16 MiB - 1 bytes: over the default 16 KiB maximum.
			var b bytes.Buffer
			b.WriteString(http2.ClientPreface)
			b.Write([]byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0})
			b.Write([]byte{0xff, 0xff, 0xff, byte(http2.FrameData), 0, 0, 0, 0, 1})
			b.WriteString(strings.Repeat("x", 1024))
			wantClosed(t, caller.GRPCAddr(), b.Bytes())
			wantGRPCServes(t, caller)
		})
		t.Run("truncated gRPC message", func(t *testing.T) {
			code := truncatedMessageStatus(t, caller.GRPCAddr())
			if code == "0" {
				t.Errorf("a truncated message got grpc-status 0, want an error")
			}
			wantGRPCServes(t, caller)
		})
		wantEchoed(t, caller, "callee")
	})
}

// wantClosed writes raw bytes to addr and checks that the server closes the
// connection (after whatever it answers) well within the deadline.
func wantClosed(t *testing.T, addr string, raw []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(framework.WaitTimeout))
	_, _ = conn.Write(raw) // the server may close before reading it all
	n, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v after broken input (read %d bytes)", framework.WaitTimeout, n)
	}
	// io.EOF (nil from io.Copy) or a reset both mean the connection is closed.
}

// wantGRPCServes checks that the sidecar's gRPC API answers a fresh connection.
func wantGRPCServes(t *testing.T, s *framework.Sidecar) {
	t.Helper()
	md, err := runtimev1pb.NewDaprClient(s.Dial(t)).GetMetadata(callCtx(t), &runtimev1pb.GetMetadataRequest{})
	if err != nil {
		t.Fatalf("sidecar %s: GetMetadata after broken input: %v", s.AppID, err)
	}
	if md.GetId() != s.AppID {
		t.Fatalf("sidecar %s: GetMetadata id %q", s.AppID, md.GetId())
	}
}

// truncatedMessageStatus sends a well-formed HTTP/2 gRPC call of
// Dapr/GetMetadata whose one message announces 100 bytes but ends after 3,
// and returns the grpc-status the server answers with.
func truncatedMessageStatus(t *testing.T, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(framework.WaitTimeout))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/dapr.proto.runtime.v1.Dapr/GetMetadata"},
		{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 5, 8)
	binary.BigEndian.PutUint32(msg[1:], 100)
	msg = append(msg, 1, 2, 3)
	if err := fr.WriteData(1, true, msg); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	grpcStatus := ""
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if grpcStatus != "" {
				return grpcStatus
			}
			t.Fatalf("reading the answer to a truncated message: %v (no grpc-status seen)", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = fr.WritePing(true, f.Data)
			}
		case *http2.HeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatalf("decoding headers: %v", err)
			}
			for _, hf := range fields {
				if hf.Name == "grpc-status" {
					grpcStatus = hf.Value
				}
			}
			if f.StreamEnded() {
				if grpcStatus == "" {
					t.Fatal("the call ended without a grpc-status")
				}
				return grpcStatus
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			if grpcStatus != "" {
				return grpcStatus
			}
			t.Fatalf("the server sent GOAWAY (%v) instead of failing the one call", f.ErrCode)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/redis"
	"github.com/outrigger/outrigger/building-blocks/state/sqlite"
)

// The minimal targets measure the floor under any sidecar: this harness's
// own binary, started again as a separate process, opens the same store as
// direct and serves only the two calls the harness makes (a save of one key
// and a get) over net/http and grpc-go, with nothing else on the path: no
// routing table, middleware, metrics, resiliency or component registry.
// minimal minus direct is what crossing into another process through the
// standard Go stacks costs; a sidecar minus minimal is what the sidecar's
// own work adds over that.

// minimalEnv, when set in the environment, makes the binary run as the
// minimal sidecar; its value is the JSON of minimalConfig.
const minimalEnv = "STATEBENCH_MINIMAL_SIDECAR"

// minimalConfig is what the harness passes to a minimal sidecar.
type minimalConfig struct {
	Backend   string            `json:"backend"`
	Meta      map[string]string `json:"meta"`
	KeyPrefix string            `json:"key_prefix"`
	HTTPPort  int               `json:"http_port"`
	GRPCPort  int               `json:"grpc_port"`
}

// runMinimal serves until SIGTERM or SIGINT; it returns the exit status.
func runMinimal(spec string) int {
	var cfg minimalConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "minimal sidecar: %s: %v\n", minimalEnv, err)
		return 2
	}
	// One thread, as an Outrigger sidecar runs by default (--concurrency).
	runtime.GOMAXPROCS(1)
	if err := serveMinimal(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "minimal sidecar: %v\n", err)
		return 1
	}
	return 0
}

func serveMinimal(cfg minimalConfig) error {
	var (
		store state.Store
		err   error
	)
	switch cfg.Backend {
	case backendSQLite:
		store, _, err = sqlite.New(cfg.Meta)
	case backendRedis:
		store, _, err = redis.New(cfg.Meta)
	default:
		err = fmt.Errorf("unknown backend %q", cfg.Backend)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	m := &minimal{store: store, prefix: cfg.KeyPrefix + "||"}

	hl, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(cfg.HTTPPort))
	if err != nil {
		return err
	}
	gl, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(cfg.GRPCPort))
	if err != nil {
		hl.Close()
		return err
	}
	hs := &http.Server{Handler: m}
	gs := grpc.NewServer()
	runtimev1pb.RegisterDaprServer(gs, &minimalGRPC{m: m})
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(hl) }()
	go func() { errc <- gs.Serve(gl) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	gs.Stop()
	_ = hs.Close()
	return err
}

// minimal is the minimal sidecar's HTTP API: POST /v1.0/state/statestore
// with [{"key":..,"value":..}], GET /v1.0/state/statestore/{key}, and the
// readiness probe the harness polls.
type minimal struct {
	store  state.Store
	prefix string // "<key prefix>||"
}

const minimalStatePath = "/v1.0/state/" + storeName

func (m *minimal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1.0/healthz/outbound":
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && r.URL.Path == minimalStatePath:
		var items []struct {
			Key     string          `json:"key"`
			Value   json.RawMessage `json:"value"`
			Options struct {
				Consistency string `json:"consistency"`
			} `json:"options"`
		}
		body, err := io.ReadAll(r.Body)
		if err == nil {
			err = json.Unmarshal(body, &items)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, it := range items {
			req := state.SetRequest{Key: m.prefix + it.Key, Value: it.Value, Strong: it.Options.Consistency == "strong"}
			if err := m.store.Set(r.Context(), req); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, minimalStatePath+"/"):
		key := strings.TrimPrefix(r.URL.Path, minimalStatePath+"/")
		it, found, err := m.store.Get(r.Context(), state.GetRequest{Key: m.prefix + key, Strong: r.URL.Query().Get("consistency") == "strong"})
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		case !found:
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("ETag", it.ETag)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(it.Value)
		}
	default:
		http.NotFound(w, r)
	}
}

// minimalGRPC is the minimal sidecar's gRPC API: SaveState and GetState of
// Dapr's runtime proto, the two calls the SDK client makes; every other
// method answers Unimplemented.
type minimalGRPC struct {
	runtimev1pb.UnimplementedDaprServer
	m *minimal
}

func (g *minimalGRPC) SaveState(ctx context.Context, in *runtimev1pb.SaveStateRequest) (*emptypb.Empty, error) {
	if in.GetStoreName() != storeName {
		return nil, errors.New("unknown store " + in.GetStoreName())
	}
	for _, it := range in.GetStates() {
		req := state.SetRequest{Key: g.m.prefix + it.GetKey(), Value: it.GetValue(),
			Strong: it.GetOptions().GetConsistency() == commonv1pb.StateOptions_CONSISTENCY_STRONG}
		if err := g.m.store.Set(ctx, req); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

func (g *minimalGRPC) GetState(ctx context.Context, in *runtimev1pb.GetStateRequest) (*runtimev1pb.GetStateResponse, error) {
	if in.GetStoreName() != storeName {
		return nil, errors.New("unknown store " + in.GetStoreName())
	}
	it, found, err := g.m.store.Get(ctx, state.GetRequest{Key: g.m.prefix + in.GetKey(),
		Strong: in.GetConsistency() == commonv1pb.StateOptions_CONSISTENCY_STRONG})
	if err != nil || !found {
		return &runtimev1pb.GetStateResponse{}, err
	}
	return &runtimev1pb.GetStateResponse{Data: it.Value, Etag: it.ETag}, nil
}

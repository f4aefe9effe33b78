package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/outrigger/outrigger/mtls"
)

// maxRecvMsgSize lifts gRPC's 4 MiB default so large --components values
// still run; Result.InitialBytes says how big the first response was.
const maxRecvMsgSize = 64 << 20

// runSidecar is one simulated sidecar: its own certificate over mutual TLS,
// one ClientConn, one incremental ADS stream subscribed to every extension
// config ("*"), every response ACKed. Its goroutine (plus gRPC's own for
// the connection) reads until ctx is done; it reads at most
// maxResponses answers. It holds a slot of sem from dialing until its first
// full state arrived.
func (b *bench) runSidecar(ctx context.Context, i int, sc sidecarCert, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	var once sync.Once
	release := func() { once.Do(func() { <-sem }) }
	defer release()

	conn, stream, node, err := b.dial(ctx, sc)
	if err != nil {
		return ended(ctx, err)
	}
	defer conn.Close()

	want := b.cfg.Components
	have := make(map[string]struct{}, want)
	ready := false
	lastRound := 0
	maxResponses := 16 + 4*b.cfg.Rounds
	for range maxResponses {
		resp, err := stream.Recv()
		if err != nil {
			return ended(ctx, err)
		}
		for _, r := range resp.GetResources() {
			if strings.HasPrefix(r.GetName(), "component/") {
				have[r.GetName()] = struct{}{}
			}
		}
		for _, name := range resp.GetRemovedResources() {
			delete(have, name)
		}
		// Is this the change the driver is timing?
		rd := b.current.Load()
		hit := false
		if rd != nil && rd.id != lastRound {
			for _, r := range resp.GetResources() {
				if r.GetName() != rd.name {
					continue
				}
				v, err := prefixOf(r)
				if err != nil {
					return fmt.Errorf("%s: %w", r.GetName(), err)
				}
				hit = v == rd.value
			}
		}
		if err := stream.Send(&discoverygrpc.DeltaDiscoveryRequest{
			Node:          node,
			TypeUrl:       resourcev3.ExtensionConfigType,
			ResponseNonce: resp.GetNonce(),
		}); err != nil {
			return ended(ctx, err)
		}
		if hit {
			for n := int64(len(resp.GetResources())); ; {
				cur := b.changeResources.Load()
				if n <= cur || b.changeResources.CompareAndSwap(cur, n) {
					break
				}
			}
			rd.acked[i] = time.Since(rd.start)
			lastRound = rd.id
			if rd.remaining.Add(-1) == 0 {
				close(rd.done)
			}
		}
		if !ready && len(have) >= want {
			ready = true
			if i == 0 {
				b.initialBytes.Store(int64(proto.Size(resp)))
			}
			release()
			if b.readyN.Add(1) == int64(b.cfg.Clients) {
				close(b.allReady)
			}
		}
	}
	return fmt.Errorf("more than %d responses: the server pushes more than one per change", maxResponses)
}

// dial connects as sc over mutual TLS and opens a delta ADS stream
// subscribed to every extension config. The node goes on every request of
// the stream: the server checks it against the proven identity on each one
// (see README.md).
func (b *bench) dial(ctx context.Context, sc sidecarCert) (*grpc.ClientConn, discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, *corev3.Node, error) {
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{sc.cert},
		// As a sidecar does (mtls/svid): the chain is checked against the
		// trust bundle in VerifyConnection, and the peer must be the
		// control plane's identity.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := mtls.VerifyPeer(cs, b.trust, func(p mtls.Identity) error {
				if p.AppID != mtls.ControlPlaneName {
					return fmt.Errorf("the server presented %s, not the control plane", p)
				}
				return nil
			})
			return err
		},
	}
	conn, err := grpc.NewClient("passthrough:///"+b.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)))
	if err != nil {
		return nil, nil, nil, err
	}
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	node := &corev3.Node{Id: sc.id.String(), UserAgentName: "outrigger-xdsscale"}
	if err := stream.Send(&discoverygrpc.DeltaDiscoveryRequest{
		Node:                   node,
		TypeUrl:                resourcev3.ExtensionConfigType,
		ResourceNamesSubscribe: []string{"*"},
	}); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	return conn, stream, node, nil
}

// awaitServer waits until the server serves every component, probing as
// sc (sidecar 0, so the set of nodes stays the M sidecars). xds/server
// reads its folders in Run while it already answers, so a node that asks
// first can get a snapshot without them; a probe that is short rewrites
// component 0 unchanged, which makes the server reload and push every node
// (README.md, "Start-up"). It returns the probes it took.
func (b *bench) awaitServer(ctx context.Context, sc sidecarCert, resDir string) (int, error) {
	const attempts = 20
	for attempt := 1; attempt <= attempts; attempt++ {
		n, err := b.probe(ctx, sc, 2*time.Second)
		if err != nil {
			return attempt, fmt.Errorf("probe: %w", err)
		}
		if n >= b.cfg.Components {
			return attempt, nil
		}
		if err := writeComponent(resDir, 0, prefixValue(0, 0)); err != nil {
			return attempt, err
		}
	}
	return attempts, fmt.Errorf("the server did not serve all %d components after %d probes", b.cfg.Components, attempts)
}

// probe connects as sc and counts the components it receives within d.
func (b *bench) probe(ctx context.Context, sc sidecarCert, d time.Duration) (int, error) {
	pctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	conn, stream, node, err := b.dial(pctx, sc)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	have := map[string]struct{}{}
	for range 8 {
		resp, err := stream.Recv()
		if err != nil {
			if pctx.Err() != nil && ctx.Err() == nil {
				return len(have), nil // short within d
			}
			return len(have), err
		}
		for _, r := range resp.GetResources() {
			if strings.HasPrefix(r.GetName(), "component/") {
				have[r.GetName()] = struct{}{}
			}
		}
		if len(have) >= b.cfg.Components {
			return len(have), nil
		}
		if err := stream.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ExtensionConfigType, ResponseNonce: resp.GetNonce()}); err != nil {
			return len(have), err
		}
	}
	return len(have), nil
}

// ended is nil when the stream ended because the run is over.
func ended(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// prefixOf reads the prefix metadata of a component resource
// (TypedExtensionConfig -> TypedStruct, as xds/translate builds it).
func prefixOf(r *discoverygrpc.Resource) (string, error) {
	var ec corev3.TypedExtensionConfig
	if err := r.GetResource().UnmarshalTo(&ec); err != nil {
		return "", err
	}
	var ts xdstypev3.TypedStruct
	if err := ec.GetTypedConfig().UnmarshalTo(&ts); err != nil {
		return "", err
	}
	for _, item := range ts.GetValue().GetFields()["metadata"].GetListValue().GetValues() {
		f := item.GetStructValue().GetFields()
		if f["name"].GetStringValue() == "prefix" {
			return f["value"].GetStringValue(), nil
		}
	}
	return "", errors.New("no prefix metadata")
}

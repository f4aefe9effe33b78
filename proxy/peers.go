package proxy

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/outrigger/outrigger/proxy/rawio"
)

// peers holds the connections to other sidecars' mesh listeners, made by
// the lean HTTP/2 client (h2Client). In plain mode (no MeshTLS) one h2c
// client serves every peer, keyed by address. With mutual TLS there is one
// client per peer identity, whose TLS configuration accepts only that
// identity, so a connection can never be reused for another app; each
// keeps one multiplexed HTTP/2 connection per address, and TLS sessions
// resume from a cache shared by all of them.
// gRPC proxying has one client connection per peer address and identity.
type peers struct {
	meshTLS  MeshTLS // nil: h2c
	sessions tls.ClientSessionCache
	maxMsg   int

	plain *h2Client // h2c
	byApp sync.Map  // peerKey -> *h2Client
	mu    sync.Mutex
	conns map[grpcPeer]*grpc.ClientConn
}

type peerKey struct{ appID, namespace string }

type grpcPeer struct {
	addr string
	peer peerKey
}

func newPeers(maxBody int64, meshTLS MeshTLS) *peers {
	p := &peers{
		meshTLS: meshTLS,
		maxMsg:  int(maxBody),
		conns:   map[grpcPeer]*grpc.ClientConn{},
	}
	if meshTLS == nil {
		p.plain = newH2Client(nil, meshDialer.DialContext)
	} else {
		p.sessions = tls.NewLRUClientSessionCache(256)
	}
	return p
}

// meshDialer dials other sidecars' mesh listeners, with raw reads and
// writes (rawio).
var meshDialer = &rawio.Dialer{Dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}

// scheme is the URL scheme of requests to peers.
func (p *peers) scheme() string {
	if p.meshTLS == nil {
		return "http"
	}
	return "https"
}

// transport is the client towards the sidecar of appID in namespace.
func (p *peers) transport(appID, namespace string) *h2Client {
	if p.meshTLS == nil {
		return p.plain
	}
	key := peerKey{appID, namespace}
	if t, ok := p.byApp.Load(key); ok {
		return t.(*h2Client)
	}
	t := newH2Client(p.meshTLS.ClientConfig(appID, namespace, p.sessions), meshDialer.DialContext)
	actual, _ := p.byApp.LoadOrStore(key, t)
	return actual.(*h2Client)
}

// RoundTrip sends an invocation (carried in the request's context) to its peer.
func (p *peers) RoundTrip(r *http.Request) (*http.Response, error) {
	inv, _ := r.Context().Value(invocationKey{}).(*invocation)
	if inv == nil {
		return p.transport("", "").RoundTrip(r)
	}
	return p.transport(inv.appID, inv.namespace).RoundTrip(r)
}

// grpcConn returns the gRPC connection to the sidecar of appID at addr,
// creating it on first use.
func (p *peers) grpcConn(addr, appID, namespace string) (*grpc.ClientConn, error) {
	key := grpcPeer{addr, peerKey{appID, namespace}}
	if p.meshTLS == nil {
		key.peer = peerKey{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[key]; ok {
		return c, nil
	}
	creds := insecure.NewCredentials()
	if p.meshTLS != nil {
		creds = credentials.NewTLS(p.meshTLS.ClientConfig(appID, namespace, p.sessions))
	}
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.maxMsg), grpc.MaxCallSendMsgSize(p.maxMsg)),
	)
	if err != nil {
		return nil, err
	}
	p.conns[key] = c
	return c, nil
}

func (p *peers) close() {
	if p.plain != nil {
		p.plain.CloseIdleConnections()
	}
	p.byApp.Range(func(_, t any) bool {
		t.(*h2Client).CloseIdleConnections()
		return true
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.conns {
		_ = c.Close()
		delete(p.conns, k)
	}
}

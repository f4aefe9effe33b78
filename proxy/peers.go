package proxy

import (
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// peers holds the connections to other sidecars' mesh listeners: one
// multiplexed HTTP/2 connection pool per peer address (the transport keys
// its pool by address), and one gRPC client connection per peer for gRPC
// proxying.
type peers struct {
	transport *http.Transport
	maxMsg    int

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeers(maxBody int64) *peers {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &peers{
		transport: &http.Transport{
			Protocols:          &p,
			DialContext:        (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			DisableCompression: true,
			IdleConnTimeout:    10 * time.Minute,
			HTTP2: &http.HTTP2Config{
				MaxConcurrentStreams:          1000,
				MaxReceiveBufferPerConnection: 8 << 20,
				MaxReceiveBufferPerStream:     1 << 20,
				PingTimeout:                   15 * time.Second,
				SendPingTimeout:               30 * time.Second,
			},
		},
		maxMsg: int(maxBody),
		conns:  map[string]*grpc.ClientConn{},
	}
}

// grpcConn returns the gRPC connection to the peer at addr, creating it on first use.
func (p *peers) grpcConn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.maxMsg), grpc.MaxCallSendMsgSize(p.maxMsg)),
	)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peers) close() {
	p.transport.CloseIdleConnections()
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		_ = c.Close()
		delete(p.conns, addr)
	}
}

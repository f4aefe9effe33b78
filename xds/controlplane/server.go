// Package controlplane serves everything `outrigger control-plane` offers
// on its one address: gRPC services (the certificate authority's Dapr
// Sentry API today, ADS next) and the HTTP registry of sidecars, over TLS
// with the control plane's own certificate; and, for sidecars that run
// without mutual TLS, the registry alone over plain HTTP. The first byte of
// a connection tells the two apart.
package controlplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// Options say what to serve.
type Options struct {
	// TLSConfig is the control plane's TLS (its certificate, the client
	// certificate policy). Required.
	TLSConfig *tls.Config
	// GRPC serves gRPC calls that arrive over TLS.
	GRPC *grpc.Server
	// HTTP serves other requests, over TLS and, when PlainHTTP is true,
	// over plain HTTP/1.1 and h2c as well.
	HTTP      http.Handler
	PlainHTTP bool
	Logger    *slog.Logger
}

// Serve accepts connections on l until ctx is done, then shuts down
// (bounded) and returns nil; an error means l failed.
func Serve(ctx context.Context, l net.Listener, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HTTP == nil {
		o.HTTP = http.NotFoundHandler()
	}
	tlsL := newChanListener(l.Addr())
	plainL := newChanListener(l.Addr())

	var tlsProtos http.Protocols
	tlsProtos.SetHTTP1(true)
	tlsProtos.SetHTTP2(true)
	tlsCfg := o.TLSConfig.Clone()
	tlsSrv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if o.GRPC != nil && r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				o.GRPC.ServeHTTP(w, r)
				return
			}
			o.HTTP.ServeHTTP(w, r)
		}),
		Protocols:         &tlsProtos,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	var plainProtos http.Protocols
	plainProtos.SetHTTP1(true)
	plainProtos.SetUnencryptedHTTP2(true)
	plainSrv := &http.Server{
		Handler:           o.HTTP,
		Protocols:         &plainProtos,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}

	var wg sync.WaitGroup
	wg.Go(func() { _ = tlsSrv.Serve(tls.NewListener(tlsL, tlsCfg)) })
	wg.Go(func() { _ = plainSrv.Serve(plainL) })

	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			go dispatch(c, tlsL, plainL, o)
		}
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-acceptErr:
	}
	_ = l.Close()
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tlsSrv.Shutdown(shCtx)
	_ = plainSrv.Shutdown(shCtx)
	tlsL.Close()
	plainL.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// dispatch reads a connection's first byte and hands it to the TLS or the
// plain server.
func dispatch(c net.Conn, tlsL, plainL *chanListener, o Options) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 1)
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		_ = c.Close()
		return
	}
	pc := &peekedConn{Conn: c, r: br}
	if first[0] == 0x16 { // a TLS handshake record
		tlsL.deliver(pc)
		return
	}
	if !o.PlainHTTP {
		o.Logger.Warn("plain-text connection refused: this control plane accepts only TLS", "from", c.RemoteAddr().String())
		_ = c.Close()
		return
	}
	plainL.deliver(pc)
}

// peekedConn replays the peeked byte.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a net.Listener fed by dispatch.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

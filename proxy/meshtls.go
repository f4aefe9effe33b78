package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
)

// tlsRecordHandshake is the first byte of every TLS connection.
const tlsRecordHandshake = 0x16

// meshListener puts mutual TLS under the mesh port. A connection that does
// not open with a TLS handshake (plain text, h2c) is refused with a log line
// and a metric; one whose certificate does not verify fails in
// VerifyConnection, counted the same way.
type meshListener struct {
	net.Listener
	s   *Sidecar
	cfg *tls.Config
}

func (s *Sidecar) newMeshListener(l net.Listener) net.Listener {
	cfg := s.cfg.MeshTLS.ServerConfig().Clone()
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verify(cs); err != nil {
			s.stats.meshRefused.WithLabelValues("certificate").Inc()
			s.log.Warn("mesh connection refused: the peer's certificate", "err", err)
			return err
		}
		return nil
	}
	return &meshListener{Listener: l, s: s, cfg: cfg}
}

func (l *meshListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(&firstByteConn{Conn: c, s: l.s}, l.cfg), nil
}

// firstByteConn checks that a connection starts as TLS before crypto/tls
// reads it, so plain text gets its own clear refusal.
type firstByteConn struct {
	net.Conn
	s    *Sidecar
	once sync.Once
	err  error
}

var errPlainText = errors.New("plain-text connection to the mesh port: only mutual TLS is accepted")

func (c *firstByteConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.once.Do(func() {
		if n > 0 && p[0] != tlsRecordHandshake {
			c.s.stats.meshRefused.WithLabelValues("plain_text").Inc()
			c.s.log.Warn("mesh connection refused: plain text", "from", c.RemoteAddr().String())
			c.err = errPlainText
		}
	})
	if c.err != nil {
		_ = c.Conn.Close()
		return 0, c.err
	}
	return n, err
}

package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"

	"github.com/outrigger/outrigger/proxy/route"
)

// TCP over the mesh: an intercepted connection to an app at one of the
// ports Config.InterceptTCPPorts names is not HTTP (a database protocol,
// say); it is carried as bytes, both ways, in one HTTP/2 stream to the
// callee's sidecar, which joins it to a connection to its app's port. The
// stream is a POST marked with hdrTCPTunnel, over the mesh's mutual TLS.

// hdrTCPTunnel marks a mesh request that carries a TCP connection.
const hdrTCPTunnel = "Outrigger-Tcp-Tunnel"

// tcpPort reports whether intercepted connections to an app at port go as
// TCP rather than HTTP.
func (s *Sidecar) tcpPort(port int) bool {
	return slices.Contains(s.cfg.InterceptTCPPorts, port)
}

// tunnelToApp carries the app's connection c (read through in) to appID's
// app over the mesh, until either end closes.
func (s *Sidecar) tunnelToApp(c net.Conn, in io.Reader, appID string) {
	defer c.Close()
	name, ns, err := route.SplitAppID(appID, s.cfg.Namespace)
	if err != nil {
		s.log.Warn("TCP tunnel: not an app-id", "app", appID, "err", err)
		return
	}
	ep, err := s.lb.Pick(s.life, name, ns, "")
	if err != nil {
		s.stats.outbound.WithLabelValues(name, "resolve_error").Inc()
		s.log.Warn("TCP tunnel: the app cannot be found", "app", appID, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(s.life)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.peers.scheme()+"://"+ep.Address()+"/", io.NopCloser(in))
	if err != nil {
		ep.Done(nil)
		return
	}
	req.ContentLength = -1 // streamed for as long as the connection lasts
	h := req.Header
	h[hdrTCPTunnel] = []string{"1"}
	h[hdrCalleeAppID] = []string{name}
	h[hdrCalleeNamespace] = []string{ns}
	h[hdrCallerAppID] = []string{s.cfg.AppID}
	h[hdrCallerNamespace] = []string{s.cfg.Namespace}
	resp, err := s.peers.transport(name, ns).RoundTrip(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	ep.Done(callOutcome(ctx, status, err))
	if err != nil {
		s.stats.outbound.WithLabelValues(name, "error").Inc()
		s.log.Warn("TCP tunnel: the app's sidecar did not answer", "app", appID, "err", err)
		return
	}
	defer resp.Body.Close()
	s.stats.outbound.WithLabelValues(name, statusLabel(status)).Inc()
	if status != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		s.log.Warn("TCP tunnel refused", "app", appID, "status", status, "answer", string(b))
		return
	}
	_, _ = io.Copy(c, resp.Body)
}

// serveTunnel joins a tunnel from another sidecar to a new connection to
// the app's port.
func (s *Sidecar) serveTunnel(w http.ResponseWriter, r *http.Request, caller string) {
	ac, err := s.app.dial(r.Context(), "tcp", s.app.addr)
	if err != nil {
		s.stats.inbound.WithLabelValues(caller, "error").Inc()
		writeError(w, apiError{http.StatusBadGateway, errCodeDirectInvoke, "the app's port did not answer: " + err.Error()})
		return
	}
	defer ac.Close()
	s.stats.inbound.WithLabelValues(caller, "tcp").Inc()
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	go func() {
		_, _ = io.Copy(ac, r.Body)
		closeWrite(ac)
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := ac.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

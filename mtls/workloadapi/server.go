// Package workloadapi serves the X.509 part of the SPIFFE Workload API on a
// Unix domain socket, so that an application next to the sidecar can fetch its
// X.509-SVID and trust bundle with any SPIFFE Workload API client (for example
// go-spiffe's workloadapi package, with the address "unix://<path>").
//
// FetchX509SVID and FetchX509Bundles stream the current SVID or bundle at once
// and again after every change reported by the Source, until the client goes
// away. The JWT-SVID and WIT-SVID methods answer codes.Unimplemented.
//
// As in SPIRE, every call must carry the metadata header
// "workload.spiffe.io: true"; calls without it are refused with
// codes.InvalidArgument. The server does no workload attestation: whoever can
// open the socket receives the SVID, so access is limited by file permissions
// (socket mode 0600, parent directories created with mode 0700).
package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
)

// MaxSocketPathLen is the longest socket path Serve accepts, in bytes. The
// kernel keeps a Unix socket path in a 108-byte field (sun_path on Linux) that
// also holds the terminating NUL, which leaves 107 bytes for the path itself.
const MaxSocketPathLen = 107

const (
	socketMode = 0o600 // only the sidecar's user may connect
	dirMode    = 0o700 // mode of parent directories Serve creates
	// staleDialTimeout bounds the probe that tells a live socket from a stale one.
	staleDialTimeout = time.Second
)

// Source is what the server needs: the current X.509-SVID and its trust
// bundle, and a way to learn that they changed. The sidecar's certificate
// manager implements it. Its methods are called concurrently, once per open
// stream.
type Source interface {
	// X509SVID returns the current SVID and the bundle of its trust domain.
	// The SVID must hold its private key, and the bundle must belong to the
	// SVID's trust domain and hold at least one authority.
	X509SVID() (*x509svid.SVID, *x509bundle.Bundle, error)
	// Changed returns a channel closed at the next change of the SVID or
	// bundle (a new channel each change). A nil channel means "never".
	Changed() <-chan struct{}
}

// Server serves the SPIFFE Workload API (X.509 part) from a Source.
// Create it with New.
type Server struct {
	src    Source
	logger *slog.Logger
}

// New returns a Server that hands out the SVID and bundle of src. A nil logger
// discards logs. New panics if src is nil.
func New(src Source, logger *slog.Logger) *Server {
	if src == nil {
		panic("workloadapi: New called with a nil Source")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{src: src, logger: logger}
}

// Serve listens on the Unix socket at path and serves the Workload API until
// ctx is done, then closes all streams, waits for their handlers to return,
// removes the socket and returns nil. It returns an error if the socket cannot
// be set up or serving fails.
//
// Before listening, Serve creates missing parent directories with mode 0700
// (existing directories are left as they are) and removes a stale socket file
// left by a previous process. It refuses to replace a socket another process
// still accepts connections on, or a file that is not a socket. The socket is
// created with mode 0600. path may be at most MaxSocketPathLen bytes long.
//
// Serve may be called more than once, with different paths, on one Server.
func (s *Server) Serve(ctx context.Context, path string) error {
	if err := prepareSocketPath(path); err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("workloadapi: listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true) // Close removes the socket file.
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return fmt.Errorf("workloadapi: set mode of socket %s: %w", path, err)
	}

	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(requireSecurityHeaderUnary),
		grpc.ChainStreamInterceptor(requireSecurityHeaderStream),
		// Stop then returns only after every handler has returned, so no
		// goroutine of this server outlives Serve.
		grpc.WaitForHandlers(true),
	)
	workloadpb.RegisterSpiffeWorkloadAPIServer(gs, &service{src: s.src, logger: s.logger})

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	s.logger.Info("workload API listening", "socket", path)

	var serveErr error
	select {
	case <-ctx.Done():
		gs.Stop()
		<-errc // nil, or grpc.ErrServerStopped if Stop won the race
	case serveErr = <-errc:
		gs.Stop()
	}
	// gRPC has closed ln, which removed the socket file (SetUnlinkOnClose);
	// closing again is harmless and keeps that true on every path.
	ln.Close()
	s.logger.Info("workload API stopped", "socket", path)
	if serveErr != nil {
		return fmt.Errorf("workloadapi: serve on %s: %w", path, serveErr)
	}
	return nil
}

// prepareSocketPath checks the length of path, creates its parent directories
// and removes a stale socket file at path.
func prepareSocketPath(path string) error {
	if path == "" {
		return errors.New("workloadapi: empty socket path")
	}
	if len(path) > MaxSocketPathLen {
		return fmt.Errorf("workloadapi: socket path %q is %d bytes long; Unix socket paths are limited to 108 bytes including the terminating NUL, so at most %d bytes",
			path, len(path), MaxSocketPathLen)
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return fmt.Errorf("workloadapi: create directory for socket %s: %w", path, err)
	}

	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("workloadapi: check socket path %s: %w", path, err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("workloadapi: %s exists and is not a socket; refusing to replace it", path)
	}
	// A socket file exists. If something still accepts connections on it,
	// it belongs to a running process; otherwise it is stale.
	if conn, err := net.DialTimeout("unix", path, staleDialTimeout); err == nil {
		conn.Close()
		return fmt.Errorf("workloadapi: socket %s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("workloadapi: remove stale socket %s: %w", path, err)
	}
	return nil
}

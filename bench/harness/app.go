package harness

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// EchoPath is the echo app's route; sidecars invoke it as method "echo".
const EchoPath = "/echo"

// ServeEchoApp is the app the invocation harnesses measure, run as a child
// process of the harness (its own Go runtime, like a real app): EchoPath
// answers 200 with the request's body and Content-Type; every other path,
// such as a sidecar's GET /dapr/config, is 404. It serves on addr until
// SIGTERM or an interrupt.
func ServeEchoApp(addr string) error {
	if addr == "" {
		return errors.New("the echo app needs a listen address")
	}
	mux := http.NewServeMux()
	mux.HandleFunc(EchoPath, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		_, _ = w.Write(body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

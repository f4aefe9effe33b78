package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// The harness starts its own binary again as the echo app, in a child
// process with its own Go runtime (like a real app), chosen by these
// environment variables.
const (
	roleEnv    = "LBBENCH_ROLE" // roleApp: serve the echo app
	roleApp    = "app"
	appAddrEnv = "LBBENCH_APP_ADDR" // the app's listen address
)

// appPath is the app's echo route; callers invoke it as method "echo".
const appPath = "/echo"

// appMain is main in the echo app's process.
func appMain() int {
	if err := serveApp(os.Getenv(appAddrEnv)); err != nil {
		fmt.Fprintf(os.Stderr, "lbbench app: %v\n", err)
		return 1
	}
	return 0
}

// serveApp serves the echo app on addr until SIGTERM: /echo answers 200
// with the request's body (and its Content-Type); every other path, such as
// a sidecar's GET /dapr/config, is 404.
func serveApp(addr string) error {
	if addr == "" {
		return errors.New(appAddrEnv + " is not set")
	}
	mux := http.NewServeMux()
	mux.HandleFunc(appPath, func(w http.ResponseWriter, r *http.Request) {
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

// Command callee is the answering half of the hello example: an ordinary
// HTTP server that knows nothing of Outrigger. It listens on APP_PORT (set
// by `outrigger run` from the run file's appPort) and answers GET /hello;
// its sidecar delivers the calls other apps make to it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	port := flag.String("port", envOr("APP_PORT", "6011"), "port to listen on (default: $APP_PORT)")
	flag.Parse()
	log.SetFlags(0)

	var calls atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		// The sidecar adds who called: Dapr's dapr-caller-app-id header.
		from := r.Header.Get("dapr-caller-app-id")
		if from == "" {
			from = "someone"
		}
		log.Printf("call %d from %s", n, from)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello, %s! (call %d, answered by %s)", from, n, envOr("APP_ID", "callee"))
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", *port))
	if err != nil {
		log.Fatalf("callee: %v", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shCtx)
	}()
	log.Printf("callee listening on %s", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("callee: %v", err)
	}
	log.Printf("callee stopped after %d calls", calls.Load())
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

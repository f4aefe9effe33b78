// Command caller is the calling half of the hello example. It calls the
// callee app through its own sidecar, by Dapr's service-invocation API:
//
//	GET http://127.0.0.1:$DAPR_HTTP_PORT/v1.0/invoke/callee/method/hello
//
// It knows the callee only by its app id; the sidecars find each other and
// carry the call. It makes -count calls (0: until stopped), -interval apart,
// prints each answer, and exits 0 when every call was answered.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	count := flag.Int("count", 5, "calls to make; 0 calls until stopped")
	interval := flag.Duration("interval", time.Second, "pause between calls")
	target := flag.String("app", "callee", "app id to call")
	method := flag.String("method", "hello", "method to call")
	wait := flag.Duration("wait", 2*time.Minute, "how long to wait for the callee to come up before the first answer")
	flag.Parse()
	log.SetFlags(0)

	port := os.Getenv("DAPR_HTTP_PORT")
	if port == "" {
		log.Fatal("caller: DAPR_HTTP_PORT is not set; start me with `outrigger run`")
	}
	url := fmt.Sprintf("http://127.0.0.1:%s/v1.0/invoke/%s/method/%s", port, *target, *method)
	client := &http.Client{Timeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The callee may still be starting (`go run` compiles it first): until
	// its first answer, failures only mean "not yet".
	deadline := time.Now().Add(*wait)
	answered, failed := 0, 0
	lastNote := time.Time{}
	for call := 1; *count == 0 || call <= *count; {
		answer, err := invoke(ctx, client, url)
		if ctx.Err() != nil {
			break
		}
		if err != nil && answered == 0 && time.Now().Before(deadline) {
			if time.Since(lastNote) > 5*time.Second {
				log.Printf("waiting for %s: %v", *target, err)
				lastNote = time.Now()
			}
			sleep(ctx, 250*time.Millisecond)
			continue
		}
		if err != nil {
			log.Printf("call %d failed: %v", call, err)
			failed++
		} else {
			log.Printf("call %d: %s answered %q", call, *target, answer)
			answered++
		}
		call++
		if *count == 0 || call <= *count {
			sleep(ctx, *interval)
		}
	}
	log.Printf("done: %d answered, %d failed", answered, failed)
	if failed > 0 || answered == 0 {
		os.Exit(1)
	}
}

func invoke(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, body)
	}
	return string(body), nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

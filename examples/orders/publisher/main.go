// Command publisher is the publishing half of the orders example: it
// publishes -count orders (0: until stopped) to the topic "orders" of the
// default pub/sub through its sidecar, with the official Dapr Go SDK, one
// every -interval, then waits to be stopped. A subscription gets the
// messages published after it is made, so orders published before the
// subscriber's sidecar subscribed reach nobody; publishing until stopped
// makes the example independent of who starts first.
//
//	go run ./cmd/outrigger run -f examples/orders/run.yaml
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	dapr "github.com/dapr/go-sdk/client"
)

func main() {
	count := flag.Int("count", 0, "orders to publish; 0 publishes until stopped")
	interval := flag.Duration("interval", 200*time.Millisecond, "pause between orders")
	pubsub := flag.String("pubsub", "pubsub", "pub/sub component")
	flag.Parse()
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := dapr.NewClient()
	if err != nil {
		log.Fatalf("publisher: %v", err)
	}
	defer client.Close()
	for i := 1; *count == 0 || i <= *count; i++ {
		order := map[string]any{"id": i, "item": "widget", "qty": i}
		if err := client.PublishEvent(ctx, *pubsub, "orders", order); err != nil {
			log.Fatalf("publisher: order %d: %v", i, err)
		}
		log.Printf("published order %d", i)
		select {
		case <-time.After(*interval):
		case <-ctx.Done():
			return
		}
	}
	<-ctx.Done()
}

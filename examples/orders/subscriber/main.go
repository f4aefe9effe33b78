// Command subscriber is the subscribing half of the orders example: an app
// built on the Dapr Go SDK's HTTP service that subscribes to "orders" and
// exits 0 once it has received -expect distinct orders.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"

	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"
)

func main() {
	port := flag.Int("port", 6012, "port the app listens on (the sidecar's --app-port)")
	expect := flag.Int("expect", 5, "distinct orders to receive before exiting")
	pubsub := flag.String("pubsub", "pubsub", "pub/sub component")
	flag.Parse()
	log.SetFlags(0)

	svc := daprhttp.NewService(fmt.Sprintf(":%d", *port))
	var mu sync.Mutex
	seen := map[float64]bool{}
	done := make(chan struct{})
	err := svc.AddTopicEventHandler(&common.Subscription{PubsubName: *pubsub, Topic: "orders", Route: "/orders"},
		func(ctx context.Context, e *common.TopicEvent) (bool, error) {
			var order struct {
				ID float64 `json:"id"`
			}
			if err := json.Unmarshal(e.RawData, &order); err != nil {
				return false, err // DROP: not an order
			}
			mu.Lock()
			defer mu.Unlock()
			if !seen[order.ID] {
				seen[order.ID] = true
				log.Printf("received order %v (%d of %d)", order.ID, len(seen), *expect)
				if len(seen) == *expect {
					close(done)
				}
			}
			return false, nil
		})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := svc.Start(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("subscriber: %v", err)
		}
	}()
	<-done
	_ = svc.GracefulStop()
	os.Exit(0)
}

// Command counter is the state example: a visit counter kept in the
// sidecar's default state store, through the official Dapr Go SDK. Each run
// reads the count with its ETag, adds one with an ETag-checked write (so two
// counters running at once never lose an increment: the loser reads again
// and retries), records the visit in a transaction with a log entry,
// deletes the previous entry, reads both back in bulk, and prints the count.
//
//	go run ./cmd/outrigger run --app-id counter -- go run ./examples/counter
//
// Run it twice: the count survives, in $OUTRIGGER_HOME/state.db.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"strconv"
	"time"

	dapr "github.com/dapr/go-sdk/client"
)

func main() {
	store := flag.String("store", "statestore", "state store component")
	key := flag.String("key", "visits", "key of the counter")
	adds := flag.Int("n", 1, "increments to make")
	flag.Parse()
	log.SetFlags(0)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := dapr.NewClient() // DAPR_GRPC_PORT, set by outrigger run
	if err != nil {
		log.Fatalf("counter: %v", err)
	}
	defer client.Close()

	var count int
	for range *adds {
		if count, err = increment(ctx, client, *store, *key); err != nil {
			log.Fatalf("counter: %v", err)
		}
	}
	logKey := *key + "-log-" + strconv.Itoa(count)
	ops := []*dapr.StateOperation{
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: logKey, Value: []byte(time.Now().UTC().Format(time.RFC3339))}},
	}
	if err := client.ExecuteStateTransaction(ctx, *store, nil, ops); err != nil {
		log.Fatalf("counter: transaction: %v", err)
	}
	// Keep only the newest log entry.
	if err := client.DeleteState(ctx, *store, *key+"-log-"+strconv.Itoa(count-1), nil); err != nil {
		log.Fatalf("counter: deleting the previous log entry: %v", err)
	}
	items, err := client.GetBulkState(ctx, *store, []string{*key, logKey}, nil, 2)
	if err != nil {
		log.Fatalf("counter: bulk read: %v", err)
	}
	for _, it := range items {
		if len(it.Value) == 0 {
			log.Fatalf("counter: %s is missing from the bulk read", it.Key)
		}
	}
	fmt.Printf("count %d\n", count)
}

// increment adds one to the counter at key with an ETag-checked write,
// reading again when another writer got there first.
func increment(ctx context.Context, client dapr.Client, store, key string) (int, error) {
	for attempt := 0; attempt < 100; attempt++ {
		item, err := client.GetState(ctx, store, key, nil)
		if err != nil {
			return 0, fmt.Errorf("read: %w", err)
		}
		n := 0
		if len(item.Value) > 0 {
			if n, err = strconv.Atoi(string(item.Value)); err != nil {
				return 0, fmt.Errorf("the counter holds %q: %w", item.Value, err)
			}
		}
		next := []byte(strconv.Itoa(n + 1))
		if item.Etag == "" {
			// First visit: create only, so two first visitors cannot both win.
			err = client.SaveBulkState(ctx, store, &dapr.SetStateItem{Key: key, Value: next,
				Options: &dapr.StateOptions{Concurrency: dapr.StateConcurrencyFirstWrite}})
		} else {
			err = client.SaveStateWithETag(ctx, store, key, next, item.Etag, nil)
		}
		if err == nil {
			return n + 1, nil
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, err
		}
		// Lost a race: read again.
	}
	return 0, errors.New("gave up after 100 conflicting writes")
}

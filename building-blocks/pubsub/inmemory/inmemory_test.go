package inmemory

import (
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/building-blocks/pubsub"
	"github.com/outrigger/outrigger/building-blocks/pubsub/pubsubtest"
)

func TestConformance(t *testing.T) {
	var mu sync.Mutex
	buses := map[*testing.T]*Bus{}
	pubsubtest.Run(t, func(t *testing.T) pubsub.Broker {
		mu.Lock()
		defer mu.Unlock()
		if buses[t] == nil {
			buses[t] = NewBus(50 * time.Millisecond)
		}
		return buses[t].Broker()
	}, pubsubtest.Options{RedeliveryWithin: time.Second})
}

func TestNew(t *testing.T) {
	if _, _, err := New(map[string]string{"redeliveryDelay": "-1s"}); err == nil {
		t.Error("a negative delay was accepted")
	}
	b, unknown, err := New(map[string]string{"other": "x"})
	if err != nil || len(unknown) != 1 {
		t.Fatal(err, unknown)
	}
	_ = b.Close()
}

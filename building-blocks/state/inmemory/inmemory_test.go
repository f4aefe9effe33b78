package inmemory

import (
	"testing"

	"github.com/outrigger/outrigger/building-blocks/state"
	"github.com/outrigger/outrigger/building-blocks/state/statetest"
)

func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		s, unknown, err := New(map[string]string{})
		if err != nil || len(unknown) != 0 {
			t.Fatal(err, unknown)
		}
		return s
	})
}

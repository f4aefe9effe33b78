package daprmetrics

import (
	"strconv"
	"sync"
	"testing"
)

func TestBoundedKeepsTheFirstMaxValues(t *testing.T) {
	b := &Bounded{Max: 10}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				b.Label(strconv.Itoa(g*1000 + i))
			}
		})
	}
	wg.Wait()
	own := 0
	for g := range 4 {
		for i := range 100 {
			if b.Label(strconv.Itoa(g*1000+i)) != OtherLabel {
				own++
			}
		}
	}
	if own != 10 {
		t.Fatalf("%d values kept a label of their own, want 10", own)
	}
	if (&Bounded{}).Label("x") != OtherLabel {
		t.Fatal("the zero value passed a value")
	}
}

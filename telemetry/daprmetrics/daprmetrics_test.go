package daprmetrics_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/outrigger/outrigger/telemetry/daprmetrics"
)

func TestLatencyBucketsAreDaprdsDefault(t *testing.T) {
	b := daprmetrics.LatencyBuckets()
	if len(b) != 34 || b[0] != 1 || b[16] != 80 || b[33] != 100_000 {
		t.Fatalf("buckets %v, want daprd's default 34 from 1 to 100000 ms", b)
	}
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] {
			t.Fatalf("bucket %d (%v) not above the one before (%v)", i, b[i], b[i-1])
		}
	}
	b[0] = 42
	if daprmetrics.LatencyBuckets()[0] != 1 {
		t.Error("a caller's change to the buckets reached the next caller")
	}
}

func ExampleMilliseconds() {
	fmt.Println(daprmetrics.Milliseconds(1500 * time.Microsecond))
	// Output: 1.5
}

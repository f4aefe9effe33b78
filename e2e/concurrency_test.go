package e2e

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/outrigger/outrigger/e2e/framework"
)

// TestAppMaxConcurrency sends two calls to the app's /slow endpoint, the
// second once the first is inside the app. The endpoint holds a call until a
// second one is in the app too (or 1 s passes), and the app records when it
// served each: with --app-max-concurrency 1 they never overlap; without a
// limit they do (which shows the test can tell the two apart).
func TestAppMaxConcurrency(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		limit   int
		wantMax int
	}{
		{"limit 1", 1, 1},
		{"unlimited", 0, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			app := framework.StartHTTPApp(t, framework.HTTPAppOptions{})
			_, caller := pair(t, framework.SidecarOptions{AppPort: app.Port, AppMaxConcurrency: c.limit}, framework.SidecarOptions{})

			ctx := callCtx(t)
			results := make(chan error, 2)
			send := func(id string) {
				_, body, err := tryCall(ctx, http.MethodPost, caller.URL("/v1.0/invoke/callee/method/slow?hold=1s&id="+id), nil, nil)
				if err == nil && string(body) != id {
					err = fmt.Errorf("call %s answered %q", id, body)
				}
				results <- err
			}
			go send("first")
			framework.WaitFor(t, "the first call to be in the app", func() error {
				if n := app.InFlight(); n != 1 {
					return fmt.Errorf("%d calls in the app", n)
				}
				return nil
			})
			go send("second")
			for range 2 {
				if err := <-results; err != nil {
					t.Fatal(err)
				}
			}

			if got := app.MaxInFlight(); got != c.wantMax {
				t.Errorf("the app served %d calls at once, want %d", got, c.wantMax)
			}
			iv := app.Intervals()
			if len(iv) != 2 {
				t.Fatalf("app recorded %d calls, want 2", len(iv))
			}
			byID := map[string]framework.Interval{iv[0].ID: iv[0], iv[1].ID: iv[1]}
			first, second := byID["first"], byID["second"]
			overlap := second.Start.Before(first.End)
			if c.limit == 1 && overlap {
				t.Errorf("with --app-max-concurrency 1 the second call entered the app at %v, before the first left at %v",
					second.Start.Format("15:04:05.000"), first.End.Format("15:04:05.000"))
			}
			if c.limit == 0 && !overlap {
				t.Errorf("without a limit the second call entered the app only after the first left")
			}
		})
	}
}

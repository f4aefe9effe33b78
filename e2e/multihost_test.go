package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger/outrigger/e2e/framework"
)

// mhCall is one call of the multi-host load.
type mhCall struct {
	start, end time.Time
	host       string // the host whose app answered; "" when the call failed
	err        string
}

// mhLoad calls an app through a sidecar from inside its namespace with a
// few workers until stopped, recording every call. It is bounded in time
// and in count.
type mhLoad struct {
	mu       sync.Mutex
	calls    []mhCall
	stop     chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup
}

const (
	mhWorkers  = 4
	mhMaxCalls = 20000
	mhMaxTime  = 3 * time.Minute
	mhPause    = 10 * time.Millisecond
)

func startLoad(ns, url string) *mhLoad {
	l := &mhLoad{stop: make(chan struct{})}
	client := framework.HTTPClient(ns, 4*time.Second)
	deadline := time.Now().Add(mhMaxTime)
	for range mhWorkers {
		l.done.Go(func() {
			for time.Now().Before(deadline) {
				select {
				case <-l.stop:
					return
				default:
				}
				c := mhCall{start: time.Now()}
				resp, err := client.Get(url)
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						c.host = string(body)
					} else {
						c.err = fmt.Sprintf("%d %s", resp.StatusCode, body)
					}
				} else {
					c.err = err.Error()
				}
				c.end = time.Now()
				l.mu.Lock()
				full := len(l.calls) >= mhMaxCalls
				if !full {
					l.calls = append(l.calls, c)
				}
				l.mu.Unlock()
				if full {
					return
				}
				time.Sleep(mhPause)
			}
		})
	}
	return l
}

func (l *mhLoad) end() []mhCall {
	l.stopOnce.Do(func() { close(l.stop) })
	l.done.Wait()
	return l.snapshot()
}

func (l *mhLoad) snapshot() []mhCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]mhCall(nil), l.calls...)
}

// answered counts the calls each host answered since t.
func answered(calls []mhCall, since time.Time) map[string]int {
	got := map[string]int{}
	for _, c := range calls {
		if c.start.After(since) && c.host != "" {
			got[c.host]++
		}
	}
	return got
}

// consulPassing lists the hosts of the passing instances of app.
func consulPassing(agent *framework.Consul, app string) ([]string, error) {
	b, err := agent.Get("/v1/health/service/" + app + "?passing=true")
	if err != nil {
		return nil, err
	}
	var entries []struct {
		Service struct{ Address string }
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Service.Address)
	}
	sort.Strings(out)
	return out, nil
}

// TestMultiHostConsul: three hosts (network namespaces joined by a bridge),
// each with an app and its sidecar registered in a Consul agent every host
// reaches. Calls from one host spread over all three; one host's link is cut
// in the middle of the load, and once it is out (ejected by the caller, or
// dropped by Consul when its heartbeat stops) no further call fails; the link
// comes back and the host takes traffic again.
func TestMultiHostConsul(t *testing.T) {
	nw := framework.NewNet(t, 3)

	// The Consul agent, in the switch namespace: every host reaches it.
	agent := framework.StartConsul(t, framework.ConsulOptions{Netns: nw.Switch, Bind: framework.SwitchIP})

	// The sidecars' Configuration and Resiliency: Consul name resolution
	// with outlier detection, and a 1 s timeout on calls to the app, so a
	// call into the cut link fails in a second instead of hanging.
	res := framework.ShortTempDir(t)
	writeFile(t, filepath.Join(res, "resiliency.yaml"), `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: multihost
spec:
  policies:
    timeouts:
      fast: 1s
  targets:
    apps:
      mh-target:
        timeout: fast
`)
	cfg := filepath.Join(framework.ShortTempDir(t), "config.yaml")
	writeFile(t, cfg, `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: multihost
spec:
  nameResolution:
    component: consul
    configuration:
      client:
        address: `+agent.Addr+`
      selfRegister: true
      outlierDetection:
        consecutiveFailures: 3
        baseEjectionTime: 5s
        maxEjectionPercent: 34
`)
	var sidecars []*framework.Sidecar
	for _, h := range nw.Hosts {
		l := framework.ListenIn(t, h.Name, "127.0.0.1:0")
		name := h.Name[strings.LastIndex(h.Name, "-")+1:]
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, name)
		})}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		port, _ := strconv.Atoi(l.Addr().String()[strings.LastIndex(l.Addr().String(), ":")+1:])
		sc := framework.StartSidecar(t, framework.SidecarOptions{
			AppID: "mh-target", AppPort: port, Netns: h.Name,
			Args: []string{"--name-resolution", "consul", "--config", cfg, "--resources-path", res, "--log-level", "info"},
		})
		sidecars = append(sidecars, sc)
	}
	framework.WaitFor(t, "the three sidecars to pass Consul's checks", func() error {
		got, err := consulPassing(agent, "mh-target")
		if err != nil {
			return err
		}
		if len(got) != 3 {
			return fmt.Errorf("passing: %v", got)
		}
		return nil
	})
	want := []string{"h1", "h2", "h3"}

	caller := sidecars[0]
	load := startLoad(caller.Netns, caller.URL("/v1.0/invoke/mh-target/method/who"))
	defer load.end()
	began := time.Now()
	framework.WaitFor(t, "calls from h1 to reach every host", func() error {
		got := answered(load.snapshot(), began)
		for _, h := range want {
			if got[h] == 0 {
				return fmt.Errorf("answered so far: %v", got)
			}
		}
		return nil
	})

	// Cut h3's link in the middle of the load.
	cut := nw.Hosts[2]
	cutAt := time.Now()
	cut.Cut(t)
	var outAt time.Time
	framework.WaitFor(t, "h3 to be out (ejected by the caller, or dropped by Consul)", func() error {
		ejected := strings.Contains(caller.Logs(), "instance ejected after consecutive failures")
		passing, err := consulPassing(agent, "mh-target")
		dropped := err == nil && len(passing) == 2
		if !ejected && !dropped {
			return fmt.Errorf("ejected %v, passing in Consul %v (%v)", ejected, passing, err)
		}
		outAt = time.Now()
		t.Logf("h3 out %v after the cut (ejected by the caller: %v, dropped by Consul: %v)", outAt.Sub(cutAt).Round(time.Millisecond), ejected, dropped)
		return nil
	})
	time.Sleep(5 * time.Second) // the load goes on with h3 out
	after := load.snapshot()
	var failedBefore, failedAfter, okAfter int
	for _, c := range after {
		switch {
		case c.start.Before(cutAt):
		case c.start.Before(outAt):
			if c.err != "" {
				failedBefore++
			}
		case c.err != "":
			failedAfter++
			if failedAfter <= 3 {
				t.Errorf("a call started %v after h3 was out failed: %s", c.start.Sub(outAt).Round(time.Millisecond), c.err)
			}
		default:
			okAfter++
			if c.host == "h3" {
				t.Errorf("a call started after h3 was out reached h3")
			}
		}
	}
	t.Logf("between the cut and h3 out: %d calls failed; after: %d succeeded, %d failed", failedBefore, okAfter, failedAfter)
	if okAfter == 0 {
		t.Error("no call succeeded after h3 was out")
	}

	// The link comes back: h3 takes traffic again.
	cut.Restore(t)
	backAt := time.Now()
	framework.WaitFor(t, "h3 to take traffic again", func() error {
		if got := answered(load.snapshot(), backAt); got["h3"] == 0 {
			return fmt.Errorf("answered since the link came back: %v", got)
		}
		return nil
	})
	calls := load.end()
	t.Logf("%d calls in all; answered since the link came back: %v", len(calls), answered(calls, backAt))
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/outrigger/outrigger/nameresolution"
	"github.com/outrigger/outrigger/xds/registry"
)

// LocalHost is the host announced for an instance whose Host is empty: in
// development mode every sidecar runs on this machine.
const LocalHost = "127.0.0.1"

// deregisterTimeout bounds the deletion of a registration when Announce stops.
const deregisterTimeout = 2 * time.Second

// Announcer is a nameresolution.Announcer over the control plane's registry.
// Create it with NewAnnouncer; one Announcer may announce several instances
// at once.
type Announcer struct {
	addr string
	base string
	o    options
	log  *slog.Logger
}

var _ nameresolution.Announcer = (*Announcer)(nil)

// NewAnnouncer returns an announcer that registers with the control plane at
// addr ("host:port").
func NewAnnouncer(addr string, opts ...Option) *Announcer {
	o := newOptions(opts)
	return &Announcer{addr: addr, base: baseURL(addr), o: o, log: o.logger}
}

// Announce registers inst (Host empty: LocalHost; Namespace empty: the
// default namespace) and renews the lease every third of its time-to-live
// until ctx is done; it then deregisters the instance and returns nil. While
// the control plane cannot be reached it keeps trying, so a sidecar started
// before its control plane, or outliving a restart of it, becomes findable
// once the control plane answers. It returns an error only for an instance
// the registry refuses.
func (a *Announcer) Announce(ctx context.Context, inst nameresolution.Instance) error {
	if inst.AppID == "" {
		return errors.New("nameresolution/registry: announce: an app-id is required")
	}
	if inst.Port < 1 || inst.Port > 65535 {
		return fmt.Errorf("nameresolution/registry: announce %s: port %d: want 1 to 65535", inst.AppID, inst.Port)
	}
	if inst.Host == "" {
		inst.Host = LocalHost
	}
	inst.Namespace = nameresolution.NamespaceOrDefault(inst.Namespace)
	id := newID()
	u := instancesURL(a.base, nil) + "/" + url.PathEscape(id)
	reg := registry.Registration{
		AppID: inst.AppID, Namespace: inst.Namespace, Host: inst.Host, Port: inst.Port,
		TTLSeconds: a.o.ttl.Seconds(),
	}
	log := a.log.With("app_id", inst.AppID, "namespace", inst.Namespace, "address", inst.Address(), "control_plane", a.addr)

	registered, failing := false, false
	var backoff time.Duration
	for {
		ttl := a.o.ttl
		reqCtx, cancel := context.WithTimeout(ctx, max(ttl/3, time.Second))
		var lease registry.Lease
		err := do(reqCtx, a.o.client, "PUT", u, reg, &lease)
		cancel()
		if ctx.Err() != nil {
			break
		}
		wait := ttl / 3
		switch {
		case err == nil:
			if lease.TTLSeconds > 0 {
				wait = time.Duration(lease.TTLSeconds * float64(time.Second) / 3)
			}
			if !registered {
				log.Info("registered with the control plane", "id", id)
				registered = true
			} else if failing {
				log.Info("control plane reachable again; registration renewed", "id", id)
			}
			failing, backoff = false, 0
		case permanent(err):
			if registered {
				a.deregister(ctx, u)
			}
			return fmt.Errorf("nameresolution/registry: announce %s at %s: %w", inst.AppID, inst.Address(), err)
		default:
			if !failing {
				log.Warn("cannot reach the control plane; retrying", "err", err)
				failing = true
			}
			backoff = nextBackoff(backoff)
			wait = min(wait, backoff)
		}
		if !sleep(ctx, wait) {
			break
		}
	}
	a.deregister(ctx, u)
	a.o.client.CloseIdleConnections()
	log.Debug("deregistered from the control plane", "id", id)
	return nil
}

// deregister deletes the registration at u, bounded by deregisterTimeout
// even though ctx is done; a failure is harmless as the lease expires.
func (a *Announcer) deregister(ctx context.Context, u string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deregisterTimeout)
	defer cancel()
	if err := do(dctx, a.o.client, "DELETE", u, nil, nil); err != nil {
		var se *statusError
		if !errors.As(err, &se) || se.status != 404 {
			a.log.Debug("nameresolution/registry: deregistering failed; the lease will expire", "err", err)
		}
	}
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

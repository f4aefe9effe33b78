package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/nameresolution"
)

// deregisterTimeout bounds the deregistration when an announcement ends.
const deregisterTimeout = 2 * time.Second

// requestTimeout bounds one registration, lookup or TTL update.
const requestTimeout = 5 * time.Second

// Announcer registers sidecars with a Consul agent. It is a
// nameresolution.Announcer; one Announcer may announce several instances
// at once.
type Announcer struct {
	client *api.Client
	md     Metadata
	o      options
	log    *slog.Logger

	registrations atomic.Int64
	failures      atomic.Int64
}

var _ nameresolution.Announcer = (*Announcer)(nil)

// NewAnnouncer returns an announcer that registers with the agent md.Client
// describes, as md says (SelfRegister, AdvancedRegistration, Checks, Tags,
// Meta). The error is md's validation error or the consul client's.
func NewAnnouncer(md Metadata, opts ...Option) (*Announcer, error) {
	md = md.withDefaults()
	c, err := newClient(md)
	if err != nil {
		return nil, err
	}
	o := newOptions(opts)
	return &Announcer{client: c, md: md, o: o, log: o.logger.With("announcer", "consul")}, nil
}

// AnnouncerStats are an announcer's counters since it was made.
type AnnouncerStats struct {
	// Registrations counts successful registrations, the ones made again
	// after the agent forgot an instance included.
	Registrations int64
	// Failures counts requests to the agent that failed.
	Failures int64
}

// Stats returns the counters.
func (a *Announcer) Stats() AnnouncerStats {
	return AnnouncerStats{Registrations: a.registrations.Load(), Failures: a.failures.Load()}
}

// ServiceID is the Consul service ID an announcer gives inst when the
// configuration does not set one: <app-id>-<host>-<port>, the host being
// this machine's name when inst has none.
func ServiceID(inst nameresolution.Instance) string {
	host := inst.Host
	if host == "" {
		host, _ = os.Hostname()
		if host == "" {
			host = "localhost"
		}
	}
	return inst.AppID + "-" + host + "-" + strconv.Itoa(inst.Port)
}

// Announce registers inst with the agent and keeps it registered until ctx
// is done: every resync interval it checks that the agent still has the
// registration and registers it again if not (an agent restarted without
// its state), and while the agent cannot be reached it retries with a
// capped backoff. When ctx is done it deregisters the instance and returns
// nil.
//
// The registration is the service app-id, ID ServiceID(inst), address
// inst.Host (empty: the agent's node address), port inst.Port, meta
// daprPortMetaKey = inst.Port and OUTRIGGER_NAMESPACE = the namespace plus
// the configured meta, the configured tags, and checks: an HTTP GET of the
// health URL (or, without one, a TTL check the announcer keeps passing)
// that lets the agent drop the registration after it stays critical, plus
// the configured checks. An advancedRegistration is used instead, as given,
// with the two meta keys added and ID, name, address and port defaulted as
// above.
//
// Without selfRegister or advancedRegistration, or for a pure client
// (inst.Port == 0), nothing is registered and Announce just waits for ctx.
// It returns an error only when it cannot announce: a bad instance, or a
// registration the agent refuses.
func (a *Announcer) Announce(ctx context.Context, inst nameresolution.Instance) error {
	if !a.md.SelfRegister && a.md.AdvancedRegistration == nil || inst.Port == 0 {
		<-ctx.Done()
		return nil
	}
	if inst.AppID == "" {
		return errors.New("nameresolution/consul: announce: an app-id is required")
	}
	if inst.Port < 0 || inst.Port > 65535 {
		return fmt.Errorf("nameresolution/consul: announce %s: port %d: want 1 to 65535", inst.AppID, inst.Port)
	}
	inst.Namespace = nameresolution.NamespaceOrDefault(inst.Namespace)
	reg, ttlCheck, err := a.registration(inst)
	if err != nil {
		return err
	}
	log := a.log.With("app_id", inst.AppID, "namespace", inst.Namespace, "service_id", reg.ID)
	agent := a.client.Agent()

	var (
		registered, ever bool
		failing          int
		backoff          time.Duration
	)
	for ctx.Err() == nil {
		refused := false
		err := func() error {
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			defer cancel()
			if registered {
				_, _, err := agent.Service(reg.ID, (&api.QueryOptions{}).WithContext(rctx))
				if statusCode(err) == http.StatusNotFound {
					log.Warn("the consul agent no longer has the registration; registering again")
					registered = false
				} else if err != nil {
					return err
				}
			}
			if !registered {
				if err := agent.ServiceRegisterOpts(reg, api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(rctx)); err != nil {
					refused = statusCode(err) == http.StatusBadRequest
					return err
				}
				a.registrations.Add(1)
				if ever {
					log.Info("registered with the consul agent again")
				} else {
					log.Info("registered with the consul agent")
				}
				registered, ever = true, true
			}
			if ttlCheck != "" {
				if err := agent.UpdateTTLOpts(ttlCheck, "", api.HealthPassing, (&api.QueryOptions{}).WithContext(rctx)); err != nil {
					registered = false // register again, check included, next time
					return err
				}
			}
			return nil
		}()
		if ctx.Err() != nil {
			break
		}
		wait := a.o.resync
		if err != nil {
			a.failures.Add(1)
			if refused {
				if ever {
					a.deregister(ctx, reg.ID, log)
				}
				return fmt.Errorf("nameresolution/consul: announce %s at %s: the agent refuses the registration: %v", inst.AppID, inst.Address(), err)
			}
			failing++
			backoff = nextBackoff(backoff, a.o.maxBackoff)
			wait = min(wait, backoff)
			if failing == 1 {
				log.Warn("consul agent request failed; retrying", "err", err, "retry_in", backoff)
			} else {
				log.Debug("consul agent request still failing", "err", err, "failures", failing, "retry_in", backoff)
			}
		} else {
			if failing > 0 {
				log.Info("consul agent answers again", "failures", failing)
			}
			failing, backoff = 0, 0
		}
		if !sleep(ctx, wait) {
			break
		}
	}
	if ever {
		a.deregister(ctx, reg.ID, log)
	}
	return nil
}

// deregister removes the registration, bounded by deregisterTimeout even
// though ctx is done. A failure is logged: the agent drops the instance
// itself once its check has been critical long enough.
func (a *Announcer) deregister(ctx context.Context, id string, log *slog.Logger) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deregisterTimeout)
	defer cancel()
	err := a.client.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(dctx))
	switch {
	case err == nil:
		log.Info("deregistered from the consul agent")
	case statusCode(err) == http.StatusNotFound:
	default:
		a.failures.Add(1)
		log.Warn("cannot deregister from the consul agent; its check will expire it", "err", err)
	}
}

// registration builds what Announce registers for inst, and the ID of the
// TTL check the announcer must keep passing ("" for none).
func (a *Announcer) registration(inst nameresolution.Instance) (*api.AgentServiceRegistration, string, error) {
	id := ServiceID(inst)
	port := strconv.Itoa(inst.Port)
	own := func(meta map[string]string) map[string]string {
		m := maps.Clone(meta)
		if m == nil {
			m = map[string]string{}
		}
		m[a.md.DaprPortMetaKey] = port
		m[MetaNamespace] = inst.Namespace
		return m
	}
	if adv := a.md.AdvancedRegistration; adv != nil {
		reg := &api.AgentServiceRegistration{
			ID:                cmp.Or(adv.ID, id),
			Name:              cmp.Or(adv.Name, inst.AppID),
			Tags:              slices.Clone(adv.Tags),
			Port:              inst.Port,
			Address:           cmp.Or(adv.Address, inst.Host),
			EnableTagOverride: adv.EnableTagOverride,
			Meta:              own(adv.Meta),
		}
		if reg.Name != inst.AppID {
			return nil, "", fmt.Errorf("nameresolution/consul: advancedRegistration.name %q: want the app-id %q, the name resolvers look up", adv.Name, inst.AppID)
		}
		if adv.Port != 0 {
			reg.Port = adv.Port
		}
		if len(adv.TaggedAddresses) > 0 {
			reg.TaggedAddresses = map[string]api.ServiceAddress{}
			for k, v := range adv.TaggedAddresses {
				reg.TaggedAddresses[k] = api.ServiceAddress{Address: v.Address, Port: v.Port}
			}
		}
		if adv.Weights != nil {
			reg.Weights = &api.AgentWeights{Passing: adv.Weights.Passing, Warning: adv.Weights.Warning}
		}
		if adv.Check != nil {
			reg.Check = adv.Check.api()
		}
		for _, c := range adv.Checks {
			reg.Checks = append(reg.Checks, c.api())
		}
		return reg, "", nil
	}

	reg := &api.AgentServiceRegistration{
		ID:      id,
		Name:    inst.AppID,
		Tags:    slices.Clone(a.md.Tags),
		Port:    inst.Port,
		Address: inst.Host,
		Meta:    own(a.md.Meta),
	}
	check := &api.AgentServiceCheck{
		CheckID:                        "outrigger:" + id,
		DeregisterCriticalServiceAfter: a.o.deregisterAfter.String(),
	}
	ttlCheck := ""
	if a.o.healthURL != "" {
		check.Name = "Outrigger sidecar health"
		check.HTTP = a.o.healthURL
		check.Method = http.MethodGet
		check.Interval = a.o.checkInterval.String()
		check.Timeout = max(a.o.checkInterval, time.Second).String()
	} else {
		check.Name = "Outrigger sidecar heartbeat"
		check.TTL = (3 * a.o.resync).String()
		check.Status = api.HealthPassing
		ttlCheck = check.CheckID
	}
	reg.Checks = append(reg.Checks, check)
	for _, c := range a.md.Checks {
		reg.Checks = append(reg.Checks, c.api())
	}
	return reg, ttlCheck, nil
}

// statusCode is the HTTP status of a consul api error, 0 for another error.
func statusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// Package nameresolution is the contract between a sidecar and the systems
// that tell it where other apps run: a Resolver turns an app-id into the mesh
// address of one of its instances, and an Announcer makes this sidecar's own
// instance findable. Backends live in subpackages (static, mdns, registry,
// consul, kubernetes) and are picked in cmd/; every backend passes
// nameresolutiontest. A backend that knows every instance of an app is a
// Watcher, and package balance spreads calls over what it reports.
package nameresolution

import (
	"context"
	"errors"
	"net"
	"strconv"
)

// DefaultNamespace is the namespace of an app whose namespace is not given.
const DefaultNamespace = "default"

// ErrNotFound is returned (wrapped) by Resolve when no instance of the app is known.
var ErrNotFound = errors.New("nameresolution: app not found")

// Instance is one running sidecar as other sidecars see it.
type Instance struct {
	// AppID is the app's id (daprd's --app-id).
	AppID string
	// Namespace is the app's namespace; empty means DefaultNamespace.
	Namespace string
	// Host is the address other sidecars dial. Empty means "this host": an
	// announcer fills in the addresses it is able to advertise.
	Host string
	// Port is the sidecar's mesh port (daprd's --dapr-internal-grpc-port).
	Port int
}

// Address is the instance's host:port.
func (i Instance) Address() string {
	return net.JoinHostPort(i.Host, strconv.Itoa(i.Port))
}

// Resolver finds the mesh address ("host:port") of one instance of an app.
// When an app has several instances, successive calls balance across them.
// Resolve must not wait on the network for an app it has resolved before:
// implementations cache answers and refresh them in the background.
type Resolver interface {
	Resolve(ctx context.Context, appID, namespace string) (string, error)
	Close() error
}

// Watcher follows every instance of an app, for a balancer that spreads
// calls over them (package balance turns a Watcher into a Resolver).
type Watcher interface {
	// Watch calls update with the whole set of the app's live instances as
	// soon as it is known (empty when the app has none) and again after
	// every change, until ctx is done; it then returns nil. Calls to update
	// are never concurrent. An instance passed to update has the AppID and
	// the Namespace that were asked for: an answer about another app is
	// dropped, never passed on. A transient failure (the source unreachable,
	// a bad answer) is logged and retried inside Watch, the last set kept;
	// Watch returns an error only when the app cannot be watched at all.
	Watch(ctx context.Context, appID, namespace string, update func([]Instance)) error
}

// Endpoint is one instance picked for one call; Done reports how the call
// went (nil: it reached the instance), once, so a balancer can count calls in
// flight and leave out an instance that keeps failing.
type Endpoint interface {
	Address() string
	Done(err error)
}

// Announcer makes an instance findable by the resolvers of its kind. Announce
// blocks, keeping the announcement alive, until ctx is done; it then withdraws
// the instance and returns nil. It returns an error only when it cannot announce.
type Announcer interface {
	Announce(ctx context.Context, inst Instance) error
}

// NamespaceOrDefault returns ns, or DefaultNamespace when ns is empty.
func NamespaceOrDefault(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

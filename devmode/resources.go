package devmode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// ResourcesDir is the folder of default resources under OUTRIGGER_HOME:
// what `outrigger run` gives an app that names no resources path, as
// `dapr run` takes ~/.dapr/components.
const ResourcesDir = "resources"

// StateFile is the SQLite database of the default state store, under
// OUTRIGGER_HOME.
const StateFile = "state.db"

// DefaultStoreName and DefaultPubSubName are the names of the default
// state store and pub/sub, as `dapr init` names its own.
const (
	DefaultStoreName  = "statestore"
	DefaultPubSubName = "pubsub"
)

// DefaultResources returns $home/resources, creating it with the default
// components the first time: a state store (state.sqlite, one file under
// the home, the actors' store too) and a pub/sub (pubsub.jetstream on the
// development control process's embedded NATS). A folder that exists is the user's and
// is left as it is. created says whether this call made it.
func DefaultResources(home string) (dir string, created bool, err error) {
	dir = filepath.Join(home, ResourcesDir)
	if _, err := os.Stat(dir); err == nil {
		return dir, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return "", false, err
	}
	// Built beside the final folder and renamed into place, so a
	// concurrent first run sees either nothing or the whole folder.
	tmp, err := os.MkdirTemp(home, ".resources-*")
	if err != nil {
		return "", false, err
	}
	defer os.RemoveAll(tmp)
	doc := fmt.Sprintf(`# The default state store of outrigger run: SQLite, one file under
# OUTRIGGER_HOME. Edit or replace it; outrigger leaves this folder alone once
# it exists.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %s
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: %s
  - name: actorStateStore
    value: "true"
`, DefaultStoreName, strconv.Quote(StatePath(home)))
	if err := os.WriteFile(filepath.Join(tmp, DefaultStoreName+".yaml"), []byte(doc), 0o644); err != nil {
		return "", false, err
	}
	pubsubDoc := fmt.Sprintf(`# The default pub/sub of outrigger run: the NATS server with JetStream that
# the development control process embeds (its store under OUTRIGGER_HOME),
# shared by every app on the machine. outrigger run sets %[1]s.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: %[2]s
spec:
  type: pubsub.jetstream
  version: v1
  # Apps still start when the broker is not there.
  ignoreErrors: true
  metadata:
  - name: natsURL
    envRef: %[1]s
`, NATSURLEnv, DefaultPubSubName)
	if err := os.WriteFile(filepath.Join(tmp, DefaultPubSubName+".yaml"), []byte(pubsubDoc), 0o644); err != nil {
		return "", false, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return dir, false, nil // another run made it first
		}
		return "", false, err
	}
	return dir, true, nil
}

// StatePath is the default state store's database under home.
func StatePath(home string) string { return filepath.Join(home, StateFile) }

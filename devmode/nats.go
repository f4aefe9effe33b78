package devmode

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// The embedded broker of the development control process: a NATS server
// with JetStream, persisted under OUTRIGGER_HOME, that every app of
// `outrigger run` on the machine shares through the default pub/sub
// component.
const (
	// NATSDir holds the broker's JetStream store.
	NATSDir = "nats"
	// NATSFile records the broker's port, picked free the first time and
	// kept, so the default component's address stays valid.
	NATSFile = "nats.json"
	// NATSURLEnv is the variable through which the default pub/sub
	// component (envRef) learns the broker's address under outrigger run.
	NATSURLEnv = "OUTRIGGER_NATS_URL"
)

type natsRecord struct {
	Port int `json:"port"`
}

// natsPort is the recorded port, or a free one (recorded now).
func natsPort(home string) (int, error) {
	path := filepath.Join(home, NATSFile)
	if b, err := os.ReadFile(path); err == nil {
		var r natsRecord
		if json.Unmarshal(b, &r) == nil && r.Port > 0 {
			return r.Port, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	b, _ := json.Marshal(natsRecord{Port: port})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return 0, err
	}
	return port, nil
}

// StartNATS runs the embedded NATS server with JetStream on loopback, its
// store under home. It returns the broker's URL and a stop function.
func StartNATS(home string) (url string, stop func(), err error) {
	if err := os.MkdirAll(home, 0o755); err != nil {
		return "", nil, err
	}
	port, err := natsPort(home)
	if err != nil {
		return "", nil, fmt.Errorf("devmode: the embedded broker's port: %w", err)
	}
	s, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "outrigger-dev",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(home, NATSDir),
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return "", nil, fmt.Errorf("devmode: the embedded broker: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return "", nil, fmt.Errorf("devmode: the embedded broker did not start on 127.0.0.1:%d (is the port taken? remove %s to pick another)", port, filepath.Join(home, NATSFile))
	}
	return "nats://127.0.0.1:" + strconv.Itoa(port), func() { s.Shutdown(); s.WaitForShutdown() }, nil
}

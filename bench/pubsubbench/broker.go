package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/outrigger/outrigger/bench/harness"
)

// broker is the NATS server with JetStream that every target publishes to,
// embedded in the harness process as the development control process
// embeds it (devmode/nats.go), with an admin connection the harness uses
// to make and remove streams and to watch consumers.
type broker struct {
	srv *natsserver.Server
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

// startBroker runs the server on a random loopback port, its JetStream
// store in storeDir.
func startBroker(storeDir string) (*broker, error) {
	s, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "pubsubbench",
		Host:       "127.0.0.1",
		Port:       natsserver.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("the embedded NATS server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, errors.New("the embedded NATS server did not become ready within 15s")
	}
	b := &broker{srv: s, url: s.ClientURL()}
	if b.nc, err = nats.Connect(b.url, nats.Name("pubsubbench admin")); err != nil {
		b.close()
		return nil, fmt.Errorf("connecting to the embedded NATS server: %w", err)
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *broker) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

// createStream makes the stream of topic: named as the topic (the harness's
// topics are valid stream names), taking only the topic's subject, with
// file storage and limits retention without limits, as `nats stream add`
// makes by default. Every target publishes to a stream made this way.
func (b *broker) createStream(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := b.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        topic,
		Subjects:    []string{topic},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Description: "pubsubbench",
	})
	if err != nil {
		return fmt.Errorf("creating stream %s: %w", topic, err)
	}
	return nil
}

// deleteStream removes topic's stream and its messages; it has its own
// time bound, so it also runs after the run's context has ended.
func (b *broker) deleteStream(topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.js.DeleteStream(ctx, topic)
}

// streamState is the number of messages and consumers in topic's stream.
func (b *broker) streamState(ctx context.Context, topic string) (msgs uint64, consumers int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := b.js.Stream(ctx, topic)
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.State.Msgs, info.State.Consumers, nil
}

// waitConsumers waits until every topic's stream has a consumer: the
// subscriber sidecar has subscribed. It fails, with the sidecar's log, when
// the sidecar exits or timeout passes.
func (b *broker) waitConsumers(ctx context.Context, p *harness.Process, timeout time.Duration, topics ...string) error {
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, t := range topics {
			_, n, err := b.streamState(ctx, t)
			if err != nil {
				return fmt.Errorf("stream %s: %w", t, err)
			}
			if n == 0 {
				missing = append(missing, t)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if p.Exited() {
			return p.Failure(errors.New("exited before it subscribed"))
		}
		if time.Now().After(deadline) {
			return p.Failure(fmt.Errorf("no consumer on stream(s) %v within %v of its readiness: the sidecar did not subscribe", missing, timeout))
		}
		select {
		case <-ctx.Done():
			return p.Failure(fmt.Errorf("waiting for its subscriptions: %w", context.Cause(ctx)))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// directClient publishes with nats.go's JetStream client on a connection
// of its own, waiting for each publish's ack, with a message ID per
// publish as both sidecars' components set one (Nats-Msg-Id).
type directClient struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func newDirectClient(url string) (*directClient, error) {
	nc, err := nats.Connect(url, nats.Name("pubsubbench direct"))
	if err != nil {
		return nil, fmt.Errorf("connecting to the embedded NATS server: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &directClient{nc: nc, js: js}, nil
}

func (d *directClient) publish(ctx context.Context, topic, id string, payload []byte) error {
	_, err := d.js.Publish(ctx, topic, payload, jetstream.WithMsgID(topic+"/"+id))
	return err
}

func (d *directClient) close() { d.nc.Close() }

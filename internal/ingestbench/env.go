package ingestbench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// Subject is where the generated stream is published; LiveSubject is the
// live producer's (the freshness and during-ingest runs).
const (
	Subject     = api.EventsSubjectPrefix + "bench"
	LiveSubject = api.EventsSubjectPrefix + "live"
)

// maxPending bounds the batches published and not yet acknowledged; a
// publish waits up to stallWait for room (a loaded machine's server can be
// slow to ack, which is no reason to fail the measurement).
const maxPending = 256

var stallWait = jetstream.WithStallWait(time.Minute)

// Env is the NATS server the measurements share: an embedded one in this
// process (on a free loopback port, its store in a directory of its own),
// or an external one the caller owns.
type Env struct {
	URL      string
	embedded *bus.Embedded
	nc       *nats.Conn
	js       jetstream.JetStream

	// Published describes the pre-published stream (Publish).
	Published Published
}

// Published is what Publish stored.
type Published struct {
	Messages int           `json:"messages"`
	Events   int           `json:"events"`
	Bytes    int64         `json:"bytes"`
	FirstSeq uint64        `json:"first_seq"`
	LastSeq  uint64        `json:"last_seq"`
	Took     time.Duration `json:"took_ns"`
}

// NewEnv starts an embedded NATS server with JetStream storing under dir,
// or, with url set, connects to that server. An external server must not
// hold events already: the measurements delete and recreate segd's
// streams on it.
func NewEnv(ctx context.Context, url, dir string) (*Env, error) {
	e := &Env{URL: url}
	var err error
	if url == "" {
		e.embedded, err = bus.StartEmbedded(bus.EmbeddedOptions{DataDir: dir, Port: -1, ServerName: "segd-bench"})
		if err != nil {
			return nil, err
		}
		e.URL = e.embedded.ClientURL()
	}
	if e.nc, err = nats.Connect(e.URL, nats.Name("segd-bench")); err != nil {
		e.Close()
		return nil, fmt.Errorf("connect to %s: %w", e.URL, err)
	}
	if e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(maxPending)); err != nil {
		e.Close()
		return nil, err
	}
	if url != "" {
		if s, err := e.js.Stream(ctx, bus.EventsStream); err == nil {
			info, err := s.Info(ctx)
			if err != nil {
				e.Close()
				return nil, err
			}
			if info.State.Msgs > 0 {
				e.Close()
				return nil, fmt.Errorf("%s already holds %d messages on %s: the benchmark deletes and recreates segd's streams, so run it on a scratch server", bus.EventsStream, info.State.Msgs, url)
			}
		}
	}
	return e, nil
}

// Conn is the environment's own connection.
func (e *Env) Conn() *nats.Conn { return e.nc }

// JetStream is the environment's JetStream context.
func (e *Env) JetStream() jetstream.JetStream { return e.js }

// Close disconnects and stops the embedded server.
func (e *Env) Close() {
	if e.nc != nil {
		e.nc.Close()
	}
	if e.embedded != nil {
		e.embedded.Shutdown()
	}
}

// Connect opens another connection to the server.
func (e *Env) Connect(name string) (*nats.Conn, error) {
	return nats.Connect(e.URL, nats.Name(name))
}

// Publish creates SEGD_EVENTS as segd would (90 days of retention) and
// publishes the generator's stream to Subject, waiting for every ack.
func (e *Env) Publish(ctx context.Context, g *Generator) (Published, error) {
	if _, err := bus.EnsureEventsStream(ctx, e.js, bus.StreamConfig{MaxAge: 90 * 24 * time.Hour}); err != nil {
		return Published{}, err
	}
	p := Published{}
	t0 := time.Now()
	var acks []jetstream.PubAckFuture
	var buf []byte
	for {
		batch, n, ok := g.Next(buf[:0])
		if !ok {
			break
		}
		buf = batch
		f, err := e.js.PublishAsync(Subject, batch, stallWait)
		if err != nil {
			return p, fmt.Errorf("publish batch %d: %w", p.Messages+1, err)
		}
		acks = append(acks, f)
		p.Messages++
		p.Events += n
		p.Bytes += int64(len(batch))
		if len(acks) >= maxPending/2 {
			if err := collect(ctx, acks, &p); err != nil {
				return p, err
			}
			acks = acks[:0]
		}
	}
	if err := collect(ctx, acks, &p); err != nil {
		return p, err
	}
	p.Took = time.Since(t0)
	e.Published = p
	return p, nil
}

func collect(ctx context.Context, acks []jetstream.PubAckFuture, p *Published) error {
	for _, f := range acks {
		select {
		case ack := <-f.Ok():
			if p.FirstSeq == 0 || ack.Sequence < p.FirstSeq {
				p.FirstSeq = ack.Sequence
			}
			p.LastSeq = max(p.LastSeq, ack.Sequence)
		case err := <-f.Err():
			return fmt.Errorf("publish: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Reset removes what a segd run left on the server besides the events
// stream: its durable consumer, the change feed and the dead letters, so
// that every run starts as the first did (a change feed that already
// holds changes would make the next run skip publishing them).
func (e *Env) Reset(ctx context.Context) error {
	for _, name := range []string{api.ChangesStream, bus.DeadLetterStream} {
		if err := e.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", name, err)
		}
	}
	s, err := e.js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return err
	}
	names := s.ConsumerNames(ctx)
	var consumers []string
	for n := range names.Name() {
		consumers = append(consumers, n)
	}
	if err := names.Err(); err != nil {
		return err
	}
	for _, n := range consumers {
		if err := s.DeleteConsumer(ctx, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete consumer %s: %w", n, err)
		}
	}
	return nil
}

// Status asks segd for its status on nc.
func Status(ctx context.Context, nc *nats.Conn, timeout time.Duration) (*api.StatusReply, error) {
	return client.New(nc, client.WithTimeout(timeout)).Status(ctx)
}

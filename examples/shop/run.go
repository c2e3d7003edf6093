package shop

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// RunOptions configures Run. Zero fields take the defaults given.
type RunOptions struct {
	// Subject to publish on (default "segd.events.demo").
	Subject string
	// Users (default 3000), Days of history ending now (default 28), Seed.
	Users int
	Days  int
	Seed  int64
	// Batch is the number of items per message (default 500).
	Batch int
	// Live keeps publishing events for "now" after the backfill, once a
	// second, until ctx ends; Activity multiplies the users' session rate
	// in that phase (default 20: a few events per second with 3000 users).
	Live     bool
	Activity float64
	// NoBackfill skips the history and goes straight to live events: a
	// restarted demo whose history is already in the stream.
	NoBackfill bool
	// Location is the users' time zone, for their daily rhythm (default UTC).
	Location *time.Location
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Progress, if set, is told after the backfill and then every 10 seconds.
	Progress func(Progress)
	// Partitions, above 1, publishes partition-aware for a segd of that
	// many partitions (PublishPartitioned): partition n's items on
	// PartitionSubject(n) (default api.PartitionSubject), instead of mixed
	// batches on Subject.
	Partitions       int
	PartitionSubject func(n int) string
}

// Progress reports what Run has published so far.
type Progress struct {
	// Live is false for the backfill report.
	Live bool
	// Generated counts items made, Stored those the stream stored as new.
	Generated, Stored int
	// Elapsed is the time since Run began.
	Elapsed time.Duration
	// EventTime is the newest event time generated.
	EventTime time.Time
}

// Run publishes a demo shop: Days of history ending now, then, with Live,
// live events until ctx ends. Message ids make a rerun in the same minute a
// no-op. It returns how many items the stream stored.
func Run(ctx context.Context, js jetstream.JetStream, o RunOptions) (int, error) {
	if o.Subject == "" {
		o.Subject = "segd.events.demo"
	}
	if o.Users == 0 {
		o.Users = 3000
	}
	if o.Days == 0 {
		o.Days = 28
	}
	if o.Batch == 0 {
		o.Batch = 500
	}
	if o.Activity == 0 {
		o.Activity = 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Progress == nil {
		o.Progress = func(Progress) {}
	}
	if o.PartitionSubject == nil {
		o.PartitionSubject = api.PartitionSubject
	}
	pub := func(items iter.Seq[api.Item], prefix string) (int, error) {
		if o.Partitions > 1 {
			return PublishPartitioned(ctx, js, o.PartitionSubject, o.Partitions, items, o.Batch, prefix)
		}
		return Publish(ctx, js, o.Subject, items, o.Batch, prefix)
	}
	began := o.Now()
	end := began.Truncate(time.Minute)
	g := New(Config{Seed: o.Seed, Users: o.Users, Start: end.AddDate(0, 0, -o.Days), End: end, Location: o.Location})
	var stored int
	var err error
	if o.NoBackfill {
		for range g.All() { // the same users, their history unpublished
		}
	} else {
		stored, err = pub(g.All(), fmt.Sprintf("demo-%d", o.Seed))
	}
	generated := g.Count()
	o.Progress(Progress{Generated: generated, Stored: stored, Elapsed: o.Now().Sub(began), EventTime: end})
	if err != nil || !o.Live {
		return stored, err
	}

	g.SetActivity(o.Activity)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	reported := o.Now()
	for {
		select {
		case <-ctx.Done():
			return stored, ctx.Err()
		case <-tick.C:
		}
		now := o.Now()
		before := g.Count()
		n, err := pub(g.Until(now), fmt.Sprintf("demo-%d-live-%d", o.Seed, now.UnixMilli()))
		stored += n
		generated += g.Count() - before
		if err != nil {
			return stored, err
		}
		if now.Sub(reported) >= 10*time.Second {
			o.Progress(Progress{Live: true, Generated: generated, Stored: stored, Elapsed: now.Sub(began), EventTime: now})
			reported = now
		}
	}
}

package shop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/segd/segd/bus/api"
)

// MaxInFlight is how many batches Publish leaves unacknowledged at most.
const MaxInFlight = 64

// Publish sends items as ingest batches: JSON arrays of up to batchSize items
// (0 means 500), published asynchronously on subject with at most
// MaxInFlight batches awaiting their acknowledgement. Batch n (from 1) has
// the Nats-Msg-Id msgIDPrefix-n, so publishing the same items with the same
// prefix again is deduplicated by the stream (within its duplicate window).
//
// It returns the number of items in batches the stream stored as new, which
// excludes batches it acknowledged as duplicates, and stops at the first
// error or when ctx ends; batches already sent may still be stored then.
func Publish(ctx context.Context, js jetstream.JetStream, subject string, items iter.Seq[api.Item], batchSize int, msgIDPrefix string) (published int, err error) {
	return publish(ctx, js, func(int) string { return subject }, 1, items, batchSize, msgIDPrefix)
}

// PublishPartitioned is Publish for a segd of partitions partitions
// (segd serve --partitions): each batch is split by the partition of its
// items' users (api.Partition), and partition n's items are published on
// subjectOf(n), a subject under segd.part.<n>. (api.PartitionSubject(n)
// for instance), so that each partition of segd decodes its own users
// only. Batch n's share of partition p has the Nats-Msg-Id
// msgIDPrefix-n:p<p>.
func PublishPartitioned(ctx context.Context, js jetstream.JetStream, subjectOf func(int) string, partitions int, items iter.Seq[api.Item], batchSize int, msgIDPrefix string) (published int, err error) {
	return publish(ctx, js, subjectOf, partitions, items, batchSize, msgIDPrefix)
}

func publish(ctx context.Context, js jetstream.JetStream, subjectOf func(int) string, partitions int, items iter.Seq[api.Item], batchSize int, msgIDPrefix string) (published int, err error) {
	if batchSize <= 0 {
		batchSize = 500
	}
	type inflight struct {
		f jetstream.PubAckFuture
		n int
	}
	var queue []inflight
	wait := func(x inflight) error {
		select {
		case ack := <-x.f.Ok():
			if !ack.Duplicate {
				published += x.n
			}
			return nil
		case err := <-x.f.Err():
			return fmt.Errorf("shop: publish %s: %w", x.f.Msg().Header.Get(jetstream.MsgIDHeader), err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	drain := func() error {
		var errs []error
		for _, x := range queue {
			if err := wait(x); err != nil {
				errs = append(errs, err)
				if ctx.Err() != nil {
					break
				}
			}
		}
		queue = nil
		return errors.Join(errs...)
	}
	seq := 0
	batch := make([]api.Item, 0, batchSize)
	groups := make([][]api.Item, max(partitions, 1))
	sendOne := func(subject, id string, items []api.Item) error {
		data, err := json.Marshal(items)
		if err != nil {
			return fmt.Errorf("shop: encode batch: %w", err)
		}
		if len(queue) >= MaxInFlight {
			if err := wait(queue[0]); err != nil {
				return err
			}
			queue = queue[1:]
		}
		f, err := js.PublishAsync(subject, data, jetstream.WithMsgID(id))
		if err != nil {
			return fmt.Errorf("shop: publish %s: %w", id, err)
		}
		queue = append(queue, inflight{f, len(items)})
		return nil
	}
	send := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		seq++
		id := fmt.Sprintf("%s-%d", msgIDPrefix, seq)
		if len(groups) == 1 {
			err := sendOne(subjectOf(0), id, batch)
			batch = batch[:0]
			return err
		}
		for _, it := range batch {
			p := api.Partition(it.User, len(groups))
			groups[p] = append(groups[p], it)
		}
		batch = batch[:0]
		for p, g := range groups {
			if len(g) == 0 {
				continue
			}
			if err := sendOne(subjectOf(p), fmt.Sprintf("%s:p%d", id, p), g); err != nil {
				return err
			}
			groups[p] = nil // its array is the message's until acked
		}
		return nil
	}
	fail := func(err error) (int, error) {
		if ctx.Err() != nil {
			return published, err
		}
		return published, errors.Join(err, drain())
	}
	for it := range items {
		batch = append(batch, it)
		if len(batch) == batchSize {
			if err := send(); err != nil {
				return fail(err)
			}
		}
	}
	if len(batch) > 0 {
		if err := send(); err != nil {
			return fail(err)
		}
	}
	return published, drain()
}

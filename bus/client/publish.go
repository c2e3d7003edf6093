package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// MaxBatchBytes is the largest batch PublishBatch sends in one message:
// JetStream's default max payload. A smaller server limit wins.
const MaxBatchBytes = 1 << 20

// headerRoom is kept free in every message for the Nats-Msg-Id header,
// which counts against the server's max payload.
const headerRoom = 256

// PublishBatch publishes items as a JSON-array batch on subject (e.g.
// "segd.events.3") and waits for JetStream to store it.
//
// msgID, when not empty, is sent as Nats-Msg-Id, so a retry within the
// stream's duplicate window is stored once. A batch whose encoding exceeds
// the size cap (1 MiB, or the server's smaller max payload) is split into
// several messages in item order; part i gets the id msgID+":"+i. The same
// items always split the same way, so retries stay deduplicated.
//
// It returns the ack of the last message. If a part fails, the error names
// it; the parts before it are stored, and retrying the whole call with the
// same msgID stores only the rest.
func PublishBatch(ctx context.Context, js jetstream.JetStream, subject string, items []api.Item, msgID string) (*jetstream.PubAck, error) {
	limit := MaxBatchBytes
	if mp := js.Conn().MaxPayload(); mp > 0 && mp < int64(limit) {
		limit = int(mp)
	}
	limit -= headerRoom + len(msgID)
	parts, err := SplitBatch(items, limit)
	if err != nil {
		return nil, err
	}
	var ack *jetstream.PubAck
	for i, p := range parts {
		var opts []jetstream.PublishOpt
		if msgID != "" {
			id := msgID
			if len(parts) > 1 {
				id = msgID + ":" + strconv.Itoa(i)
			}
			opts = append(opts, jetstream.WithMsgID(id))
		}
		if ack, err = js.Publish(ctx, subject, p, opts...); err != nil {
			if len(parts) > 1 {
				return nil, fmt.Errorf("publish batch part %d of %d on %s: %w", i, len(parts), subject, err)
			}
			return nil, fmt.Errorf("publish batch on %s: %w", subject, err)
		}
	}
	return ack, nil
}

// SplitBatch encodes items as JSON arrays of at most maxBytes each, keeping
// item order; usually there is one. It fails if there are no items or one
// item alone exceeds maxBytes.
func SplitBatch(items []api.Item, maxBytes int) ([][]byte, error) {
	if len(items) == 0 {
		return nil, errors.New("empty batch: nothing to publish")
	}
	var parts [][]byte
	cur := []byte{'['}
	for i := range items {
		enc, err := json.Marshal(&items[i])
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		if len(enc)+2 > maxBytes {
			return nil, fmt.Errorf("item %d: %d bytes encoded, more than the %d a message can carry", i, len(enc), maxBytes)
		}
		// +1 for the separator or the closing bracket.
		if len(cur) > 1 && len(cur)+1+len(enc)+1 > maxBytes {
			parts = append(parts, append(cur, ']'))
			cur = []byte{'['}
		}
		if len(cur) > 1 {
			cur = append(cur, ',')
		}
		cur = append(cur, enc...)
	}
	return append(parts, append(cur, ']')), nil
}

// StreamPartitions reads the number of partitions recorded in the events
// stream SEGD_EVENTS (api.StreamPartitionsKey): what PublishPartitioned
// splits by. A stream without a record has one.
func StreamPartitions(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, "SEGD_EVENTS") // bus.EventsStream
	if err != nil {
		return 0, fmt.Errorf("events stream: %w", err)
	}
	v, ok := s.CachedInfo().Config.Metadata[api.StreamPartitionsKey]
	if !ok {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > api.MaxPartitions {
		return 0, fmt.Errorf("events stream: metadata %s=%q is not a number of partitions", api.StreamPartitionsKey, v)
	}
	return n, nil
}

// PublishPartitioned publishes items partition-aware: split by the
// partition of their user among partitions (api.Partition), each
// partition's items go as one batch (PublishBatch) on
// api.PartitionSubject(n), in item order within a partition, so that each
// partition of segd decodes only its own users. msgID, when not empty,
// becomes msgID+":p"+n for partition n's batch. With partitions < 2 it is
// PublishBatch on subject. Read partitions once with StreamPartitions.
//
// It returns the ack of the last batch stored. If one fails, the error
// names its partition; retrying the whole call with the same msgID stores
// only what is missing.
func PublishPartitioned(ctx context.Context, js jetstream.JetStream, subject string, items []api.Item, msgID string, partitions int) (*jetstream.PubAck, error) {
	if partitions < 2 {
		return PublishBatch(ctx, js, subject, items, msgID)
	}
	if len(items) == 0 {
		return nil, errors.New("empty batch: nothing to publish")
	}
	groups := make([][]api.Item, partitions)
	for i := range items {
		p := api.Partition(items[i].User, partitions)
		groups[p] = append(groups[p], items[i])
	}
	var last *jetstream.PubAck
	for p, g := range groups {
		if len(g) == 0 {
			continue
		}
		id := msgID
		if id != "" {
			id += ":p" + strconv.Itoa(p)
		}
		ack, err := PublishBatch(ctx, js, api.PartitionSubject(p), g, id)
		if err != nil {
			return nil, fmt.Errorf("partition %d of %d: %w", p, partitions, err)
		}
		if last == nil || ack.Sequence > last.Sequence {
			last = ack
		}
	}
	return last, nil
}

package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// This file is what the bus knows of partitions (docs/operations.md,
// "Partitions"): the subjects each partition reads, the number of
// partitions recorded in the events stream, and the filter that keeps a
// partition's own items of the messages it reads.

// ErrPartitionsMismatch is returned by EnsureEventsStream when the stream
// was set up for another number of partitions.
var ErrPartitionsMismatch = errors.New("partitions mismatch")

// PartitionName names partition n of of: "p<n>of<of>", the name of its
// durable consumer ("segd-" + it), of its data directory and of its
// change feed messages.
func PartitionName(n, of int) string { return fmt.Sprintf("p%dof%d", n, of) }

// PartitionDurable is the durable consumer of partition n of of. A single
// partition keeps DefaultDurable, so that an existing install upgrades in
// place.
func PartitionDurable(n, of int) string {
	if of < 2 {
		return DefaultDurable
	}
	return "segd-" + PartitionName(n, of)
}

// PartitionFilterSubjects are the subjects partition n reads: the mixed
// batches on segd.events.>, the control messages (uploads) and its own
// segd.part.<n>.>. Nil for a single partition, which reads the whole
// stream.
func PartitionFilterSubjects(n, of int) []string {
	if of < 2 {
		return nil
	}
	return []string{api.EventsSubjectPrefix + ">", ControlSubjects, fmt.Sprintf("%s%d.>", api.PartitionSubjectPrefix, n)}
}

// CheckPartitions checks a number of partitions against the documented
// limit, 1..api.MaxPartitions.
func CheckPartitions(p int) error {
	if p < 1 || p > api.MaxPartitions {
		return fmt.Errorf("partitions: %d is out of range: from 1 to %d", p, api.MaxPartitions)
	}
	return nil
}

// streamPartitions reads the number of partitions recorded in a stream's
// metadata; ok is false when none is recorded (a stream made before
// partitions, or by a bare EnsureEventsStream).
func streamPartitions(cfg jetstream.StreamConfig) (n int, ok bool, err error) {
	v, ok := cfg.Metadata[api.StreamPartitionsKey]
	if !ok {
		return 0, false, nil
	}
	n, err = strconv.Atoi(v)
	if err != nil || CheckPartitions(n) != nil {
		return 0, true, fmt.Errorf("stream %s: metadata %s=%q is not a number of partitions (1 to %d)", cfg.Name, api.StreamPartitionsKey, v, api.MaxPartitions)
	}
	return n, true, nil
}

// LastPartitionSeq is the sequence of the last message partition n of of
// reads in stream (0 when it reads none): what it has to apply before its
// answers reflect the stream as it is now.
func LastPartitionSeq(ctx context.Context, stream jetstream.Stream, n, of int) (uint64, error) {
	subjects := PartitionFilterSubjects(n, of)
	if subjects == nil {
		info, err := stream.Info(ctx)
		if err != nil {
			return 0, err
		}
		return info.State.LastSeq, nil
	}
	var last uint64
	for _, subj := range subjects {
		m, err := stream.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("last message on %s: %w", subj, err)
		}
		last = max(last, m.Sequence)
	}
	return last, nil
}

// KeepPartition reduces a decoded message to the items of partition n of
// of (a no-op for of < 2), so that each partition applies its own users
// only:
//   - a batch keeps the events and profile updates of its users; an
//     upload the ids of its users;
//   - a mixed message (not on a segd.part.<N>. subject), which every
//     partition reads, has its invalid items and its not-a-batch error
//     counted by partition 0 alone; the others see an empty batch at its
//     sequence;
//   - an item on partition n's own subject whose user belongs to another
//     partition was published there by mistake and no partition applies
//     it: it is counted as invalid, naming where it belongs.
func KeepPartition(im *IngestMessage, n, of int) {
	if of < 2 {
		return
	}
	mixed := !strings.HasPrefix(im.Subject, api.PartitionSubjectPrefix)
	if im.Err != nil {
		if mixed && n != 0 {
			im.Err, im.Batch, im.Upload = nil, rules.Batch{}, nil
		}
		return
	}
	if u := im.Upload; u != nil {
		kept := u.Users[:0:0]
		for _, user := range u.Users {
			if ingest.Partition(user, of) == n {
				kept = append(kept, user)
			}
		}
		c := *u
		c.Users = kept
		if n != 0 {
			c.Invalid, c.FirstInvalid = 0, ""
		}
		im.Upload = &c
		return
	}
	b := &im.Batch
	if mixed && n != 0 {
		b.Invalid, b.FirstInvalid = 0, ""
	}
	misrouted := func(user string) {
		if mixed {
			return
		}
		if b.Invalid == 0 {
			b.FirstInvalid = fmt.Sprintf("user %q belongs to partition %d of %d but was published on %s: not applied (publish it on %s, or on %s>)",
				user, ingest.Partition(user, of), of, im.Subject, api.PartitionSubject(ingest.Partition(user, of)), api.EventsSubjectPrefix)
		}
		b.Invalid++
	}
	events := b.Events[:0]
	for _, e := range b.Events {
		if ingest.Partition(e.User, of) == n {
			events = append(events, e)
		} else {
			misrouted(e.User)
		}
	}
	clear(b.Events[len(events):])
	b.Events = events
	profiles := b.Profiles[:0]
	for _, p := range b.Profiles {
		if ingest.Partition(p.User, of) == n {
			profiles = append(profiles, p)
		} else {
			misrouted(p.User)
		}
	}
	clear(b.Profiles[len(profiles):])
	b.Profiles = profiles
}

// DecodePartitionMessage is DecodeMessage reduced to partition n of of, as
// KeepPartition reduces it, but cheaper for a mixed batch: that is decoded
// with a DecodeOptions.Keep that skips the other partitions' items without
// building them, so that P partitions reading one mixed message cost
// about one full decode, not P. An invalid item is counted by the
// partition of the id its "user" holds, or by partition 0 when it has
// none, so that across partitions each is counted once.
func DecodePartitionMessage(seq uint64, subject string, data []byte, t int64, n, of int) *IngestMessage {
	if of < 2 || subject == ControlUploadSubject || strings.HasPrefix(subject, api.PartitionSubjectPrefix) {
		im := DecodeMessage(seq, subject, data, t)
		KeepPartition(im, n, of)
		return im
	}
	keep := func(user string) bool {
		if user == "" {
			return n == 0
		}
		return ingest.Partition(user, of) == n
	}
	im := &IngestMessage{Seq: seq, Subject: subject, Time: t}
	im.Batch, im.Err = safeDecodeWith(data, DecodeOptions{DefaultTime: t, Keep: keep})
	if im.Err != nil && n != 0 {
		im.Err, im.Batch = nil, rules.Batch{} // not a batch: partition 0's alone
	}
	return im
}

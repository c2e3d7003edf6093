package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// RulesBucket is the JetStream KV bucket of segment definitions set through
// the rules admin API: one key per segment id.
const RulesBucket = "SEGD_RULES"

// RuleStorePermissions are the subjects segd's own identity publishes to
// in order to keep RulesBucket: create and inspect its stream, write and
// read keys, and list keys and history through ordered consumers (whose
// deliveries come to its inbox). Under authentication they belong to the
// service role's JetStream permissions.
var RuleStorePermissions = []string{
	"$JS.API.INFO", // the client reads the account's JetStream limits before creating a bucket
	"$JS.API.STREAM.CREATE.KV_" + RulesBucket, "$JS.API.STREAM.UPDATE.KV_" + RulesBucket, "$JS.API.STREAM.INFO.KV_" + RulesBucket,
	"$JS.API.STREAM.MSG.GET.KV_" + RulesBucket, "$JS.API.DIRECT.GET.KV_" + RulesBucket + ".>",
	"$KV." + RulesBucket + ".>",
	"$JS.API.CONSUMER.CREATE.KV_" + RulesBucket + ".>", "$JS.API.CONSUMER.DELETE.KV_" + RulesBucket + ".*",
	"$JS.API.CONSUMER.INFO.KV_" + RulesBucket + ".*", "$JS.FC.KV_" + RulesBucket + ".>",
}

// RuleStore keeps segment definitions in RulesBucket, so that they survive
// restarts and every segd sharing the NATS server sees the same ones. A
// definition's revision is its KV revision; the bucket keeps the last
// api.RuleHistoryDepth revisions of each key (a delete is one).
type RuleStore struct {
	kv jetstream.KeyValue
}

// RuleEntry is one revision of a segment's definition.
type RuleEntry struct {
	Segment    string
	Revision   uint64
	Definition string
	Author     string
	Time       time.Time
	Deleted    bool
}

// ruleValue is a KV value: the definition and who wrote it when.
type ruleValue struct {
	Definition string    `json:"definition"`
	Author     string    `json:"author,omitempty"`
	Time       time.Time `json:"time"`
}

// OpenRuleStore creates RulesBucket if needed (one replica).
func OpenRuleStore(ctx context.Context, js jetstream.JetStream) (*RuleStore, error) {
	return OpenRuleStoreReplicas(ctx, js, 1)
}

// OpenRuleStoreReplicas creates RulesBucket if needed, or updates it, with
// this many copies in a cluster (0 means 1).
func OpenRuleStoreReplicas(ctx context.Context, js jetstream.JetStream, replicas int) (*RuleStore, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Replicas:    max(replicas, 1),
		Bucket:      RulesBucket,
		Description: "segd: segment definitions of the rules admin API (one key per segment id)",
		History:     api.RuleHistoryDepth,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("rules bucket %s: %w", RulesBucket, err)
	}
	return &RuleStore{kv: kv}, nil
}

func entryOf(e jetstream.KeyValueEntry) RuleEntry {
	out := RuleEntry{Segment: e.Key(), Revision: e.Revision(), Time: e.Created()}
	if e.Operation() != jetstream.KeyValuePut {
		out.Deleted = true
		return out
	}
	var v ruleValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		// Written by hand (nats kv put): the value is the definition.
		out.Definition = string(e.Value())
		return out
	}
	out.Definition, out.Author = v.Definition, v.Author
	if !v.Time.IsZero() {
		out.Time = v.Time
	}
	return out
}

// Get returns a segment's current definition; ErrNotFound when it has
// none (or it was deleted).
func (s *RuleStore) Get(ctx context.Context, segment string) (RuleEntry, error) {
	e, err := s.kv.Get(ctx, segment)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return RuleEntry{}, fmt.Errorf("segment %q has no definition in %s: %w", segment, RulesBucket, ErrNotFound)
	}
	if err != nil {
		return RuleEntry{}, err
	}
	return entryOf(e), nil
}

// All returns every current definition, by key.
func (s *RuleStore) All(ctx context.Context) ([]RuleEntry, error) {
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer keys.Stop() //nolint:errcheck
	var out []RuleEntry
	for k := range keys.Keys() {
		e, err := s.Get(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// conflict is the 409 of an expected revision another writer moved on from.
func conflict(segment string, expected uint64, cur RuleEntry, curErr error) error {
	now := "it is not defined"
	if curErr == nil {
		now = fmt.Sprintf("it is at revision %d (by %q at %s)", cur.Revision, cur.Author, cur.Time.UTC().Format(time.RFC3339))
	}
	return &Error{Code: api.CodeConflict, Field: "expected_revision",
		Err: fmt.Errorf("segment %q: expected revision %d, but %s: another editor wrote first; get it again and retry", segment, expected, now)}
}

// Put stores a definition of segment and returns its revision. With
// expected set, the segment's current revision must be *expected (0: not
// defined), or the put is refused with a 409 *Error.
func (s *RuleStore) Put(ctx context.Context, segment, definition, author string, at time.Time, expected *uint64) (uint64, error) {
	data, err := json.Marshal(ruleValue{Definition: definition, Author: author, Time: at.UTC()})
	if err != nil {
		return 0, err
	}
	var rev uint64
	switch {
	case expected == nil:
		rev, err = s.kv.Put(ctx, segment, data)
	case *expected == 0:
		rev, err = s.kv.Create(ctx, segment, data)
	default:
		rev, err = s.kv.Update(ctx, segment, data, *expected)
	}
	if expected != nil && errors.Is(err, jetstream.ErrKeyExists) {
		cur, curErr := s.Get(ctx, segment)
		return 0, conflict(segment, *expected, cur, curErr)
	}
	return rev, err
}

// Delete removes a segment's definition (its history stays), guarded by
// expected as Put is, and returns the delete's revision.
func (s *RuleStore) Delete(ctx context.Context, segment string, expected *uint64) (uint64, error) {
	cur, err := s.Get(ctx, segment)
	if err != nil {
		return 0, err
	}
	var opts []jetstream.KVDeleteOpt
	if expected != nil {
		if *expected != cur.Revision {
			return 0, conflict(segment, *expected, cur, nil)
		}
		opts = append(opts, jetstream.LastRevision(*expected))
	}
	if err := s.kv.Delete(ctx, segment, opts...); err != nil {
		if expected != nil && errors.Is(err, jetstream.ErrKeyExists) {
			cur, curErr := s.Get(ctx, segment)
			return 0, conflict(segment, *expected, cur, curErr)
		}
		return 0, err
	}
	// History finds the delete marker's revision, even if another write
	// followed it.
	hist, err := s.History(ctx, segment)
	if err != nil {
		return 0, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Deleted {
			return hist[i].Revision, nil
		}
	}
	return 0, fmt.Errorf("segment %q: the delete is not in its history", segment)
}

// History returns a segment's kept revisions, oldest first; ErrNotFound
// when it never had one.
func (s *RuleStore) History(ctx context.Context, segment string) ([]RuleEntry, error) {
	es, err := s.kv.History(ctx, segment)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, fmt.Errorf("segment %q has no revision in %s: %w", segment, RulesBucket, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	out := make([]RuleEntry, len(es))
	for i, e := range es {
		out[i] = entryOf(e)
	}
	return out, nil
}

// Watch calls fn, in order, for every revision of the bucket from now on
// and for the current value of each key first (so that nothing written
// between a read and the watch is missed), until ctx ends. fn sees puts
// and deletes written by anyone: another segd, or `nats kv put`.
func (s *RuleStore) Watch(ctx context.Context, fn func(RuleEntry)) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching %s: %w", RulesBucket, err)
	}
	forwardUpdates(ctx, w.Updates(), w.Stop, func(e jetstream.KeyValueEntry) {
		if e != nil { // nil marks the end of the current values
			fn(entryOf(e))
		}
	})
	return nil
}

// forwardUpdates hands a JetStream watcher's updates to fn, in order, on a
// goroutine of its own, until ctx ends or the watcher closes, then stops
// the watcher. Both buckets segd follows (rules in KV, plugins in Object
// Store) are watched this way.
func forwardUpdates[T any](ctx context.Context, updates <-chan T, stop func() error, fn func(T)) {
	go func() {
		defer stop() //nolint:errcheck
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				fn(u)
			}
		}
	}()
}

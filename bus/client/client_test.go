package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// fakeMembership knows one segment, "vip", holding user "u1".
type fakeMembership struct{}

func (fakeMembership) IsMember(user, segment string) (bool, error) {
	if segment != "vip" {
		return false, fmt.Errorf("segment %q is not defined: %w", segment, bus.ErrNotFound)
	}
	return user == "u1", nil
}

func (f fakeMembership) MemberSince(user, segment string) (bool, time.Time, error) {
	ok, err := f.IsMember(user, segment)
	if !ok {
		return false, time.Time{}, err
	}
	return true, time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC), nil
}

func (f fakeMembership) UserMemberships(user string) []api.Membership {
	var out []api.Membership
	for _, s := range f.UserSegments(user) {
		out = append(out, api.Membership{Segment: s, Since: "2026-11-27T09:00:00Z"})
	}
	return out
}

func (fakeMembership) UserSegments(user string) []string {
	if user == "u1" {
		return []string{"vip"}
	}
	return nil
}

func (fakeMembership) Segments() []api.SegmentInfo {
	return []api.SegmentInfo{{ID: "vip", Kind: "rule", Size: 1, Status: "active"}}
}

func (fakeMembership) SegmentCount(segment string) (uint64, error) {
	if segment != "vip" {
		return 0, fmt.Errorf("segment %q is not defined: %w", segment, bus.ErrNotFound)
	}
	return 1, nil
}

func (fakeMembership) Status() api.StatusReply { return api.StatusReply{Ready: true, LastSeq: 3} }

func (f fakeMembership) MemberView(user string, segments []string) bus.MemberView {
	v := bus.MemberView{AsOf: api.AsOf{Seq: 3, Time: "2026-11-28T10:15:00Z"}}
	if segments == nil {
		segments = []string{"vip"}
	}
	for _, s := range segments {
		if s != "vip" {
			v.Unknown = append(v.Unknown, s)
			continue
		}
		ok, since, _ := f.MemberSince(user, s)
		v.Segments = append(v.Segments, bus.SegmentView{Segment: s, State: api.StateExact, Served: true, Member: ok, Since: since})
	}
	return v
}

func startServer(t *testing.T, opts bus.EmbeddedOptions) (*bus.Embedded, *nats.Conn) {
	t.Helper()
	opts.DataDir, opts.Port = t.TempDir(), -1
	e, err := bus.StartEmbedded(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return e, nc
}

func startService(t *testing.T) *client.Client {
	t.Helper()
	_, nc := startServer(t, bus.EmbeddedOptions{})
	svc, err := bus.StartService(nc, fakeMembership{}, bus.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return client.New(nc, client.WithTimeout(5*time.Second))
}

func TestClientQueries(t *testing.T) {
	t.Parallel()
	c := startService(t)
	ctx := context.Background()
	if ok, err := c.IsMember(ctx, "u1", "vip"); err != nil || !ok {
		t.Errorf("IsMember(u1, vip) = %v, %v", ok, err)
	}
	if ok, err := c.IsMember(ctx, "u2", "vip"); err != nil || ok {
		t.Errorf("IsMember(u2, vip) = %v, %v", ok, err)
	}
	if segs, err := c.UserSegments(ctx, "u1"); err != nil || len(segs) != 1 || segs[0] != "vip" {
		t.Errorf("UserSegments(u1) = %v, %v", segs, err)
	}
	if segs, err := c.UserSegments(ctx, "u2"); err != nil || segs == nil || len(segs) != 0 {
		t.Errorf("UserSegments(u2) = %#v, %v; want an empty, non-nil slice", segs, err)
	}
	if list, err := c.Segments(ctx); err != nil || len(list) != 1 || list[0].ID != "vip" {
		t.Errorf("Segments = %+v, %v", list, err)
	}
	if n, err := c.SegmentCount(ctx, "vip"); err != nil || n != 1 {
		t.Errorf("SegmentCount(vip) = %d, %v", n, err)
	}
	if st, err := c.Status(ctx); err != nil || !st.Ready || st.LastSeq != 3 {
		t.Errorf("Status = %+v, %v", st, err)
	}
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	c := startService(t)
	ctx := context.Background()

	_, err := c.IsMember(ctx, "u1", "nope")
	var e *client.Error
	if !errors.As(err, &e) || !client.IsNotFound(err) || client.IsBadRequest(err) {
		t.Fatalf("unknown segment: %v (%T), want a 404 *client.Error", err, err)
	}
	if e.Code != api.CodeNotFound || e.Subject != api.SubjectMemberCheck || !strings.Contains(e.Description, `segment "nope" is not defined`) {
		t.Errorf("404 error: %+v", e)
	}
	if _, err := c.SegmentCount(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("SegmentCount(nope): %v", err)
	}

	_, err = c.IsMember(ctx, "u1", "")
	if !client.IsBadRequest(err) || !errors.As(err, &e) || e.Field != "segment" {
		t.Errorf("empty segment: %v, want 400 with field segment", err)
	}
	_, err = c.UserSegments(ctx, "")
	if !client.IsBadRequest(err) || !errors.As(err, &e) || e.Field != "user" {
		t.Errorf("empty user: %v, want 400 with field user", err)
	}
	if want := `segd.v1.member.segments: 400 "user" is empty`; !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), `(field "user")`) {
		t.Errorf("message %q", err)
	}
}

func TestClientNoService(t *testing.T) {
	t.Parallel()
	_, nc := startServer(t, bus.EmbeddedOptions{NoListen: true})
	c := client.New(nc)
	_, err := c.Status(context.Background())
	if !client.IsUnavailable(err) || !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("no service: %v, want 503 wrapping ErrNoResponders", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Status(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestSplitBatch(t *testing.T) {
	t.Parallel()
	if _, err := client.SplitBatch(nil, 1000); err == nil {
		t.Error("empty batch accepted")
	}
	big := api.Item{User: "u", Event: "e", Props: map[string]any{"blob": strings.Repeat("x", 500)}}
	if _, err := client.SplitBatch([]api.Item{big}, 300); err == nil || !strings.Contains(err.Error(), "item 0") {
		t.Errorf("oversize item: %v", err)
	}
	var items []api.Item
	for i := range 100 {
		items = append(items, api.Item{User: fmt.Sprint("u", i), Event: "view", Time: int64(i)})
	}
	for _, max := range []int{60, 61, 100, 333, 1000, 1 << 20} {
		parts, err := client.SplitBatch(items, max)
		if err != nil {
			t.Fatalf("max %d: %v", max, err)
		}
		var all []api.Item
		for i, p := range parts {
			if len(p) > max {
				t.Errorf("max %d: part %d has %d bytes", max, i, len(p))
			}
			var got []api.Item
			if err := json.Unmarshal(p, &got); err != nil || len(got) == 0 {
				t.Fatalf("max %d: part %d %q: %v", max, i, p, err)
			}
			all = append(all, got...)
		}
		if len(all) != len(items) || all[0].User != "u0" || all[99].User != "u99" {
			t.Errorf("max %d: %d items back", max, len(all))
		}
	}
}

func TestPublishBatchSplitsAndDeduplicates(t *testing.T) {
	t.Parallel()
	// A small max payload forces the split that 1 MiB batches would need.
	_, nc := startServer(t, bus.EmbeddedOptions{MaxPayload: 4096})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream, err := bus.EnsureEventsStream(ctx, js, bus.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var items []api.Item
	for i := range 300 {
		items = append(items, api.Item{User: fmt.Sprint("user-", i), Event: "view", Time: "2026-11-28T10:15:00+08:00", Props: map[string]any{"i": i}})
	}
	ack, err := client.PublishBatch(ctx, js, "segd.events.0", items, "producer-1:7")
	if err != nil {
		t.Fatal(err)
	}
	parts := int(ack.Sequence)
	if parts < 3 {
		t.Fatalf("%d parts; want the batch split", parts)
	}
	var decoded []string
	for seq := uint64(1); seq <= uint64(parts); seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if id, want := m.Header.Get(jetstream.MsgIDHeader), fmt.Sprintf("producer-1:7:%d", seq-1); id != want {
			t.Errorf("part %d: Nats-Msg-Id %q, want %q", seq-1, id, want)
		}
		b, err := bus.DecodeBatch(m.Data, 0)
		if err != nil || b.Invalid != 0 {
			t.Fatalf("part %d: %v %s", seq-1, err, b.FirstInvalid)
		}
		for _, ev := range b.Events {
			decoded = append(decoded, ev.User)
		}
	}
	if len(decoded) != len(items) || decoded[0] != "user-0" || decoded[299] != "user-299" {
		t.Errorf("decoded %d users (%v...)", len(decoded), decoded[:min(3, len(decoded))])
	}

	// A retry stores nothing new.
	ack, err = client.PublishBatch(ctx, js, "segd.events.0", items, "producer-1:7")
	if err != nil || !ack.Duplicate {
		t.Fatalf("retry: %+v, %v; want a duplicate", ack, err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != uint64(parts) {
		t.Errorf("stream holds %d messages after the retry, want %d (%v)", info.State.Msgs, parts, err)
	}

	// A small batch goes as one message with the id unchanged.
	ack, err = client.PublishBatch(ctx, js, "segd.events.1", items[:2], "producer-1:8")
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetMsg(ctx, ack.Sequence)
	if err != nil || m.Header.Get(jetstream.MsgIDHeader) != "producer-1:8" {
		t.Errorf("single message id %q (%v)", m.Header.Get(jetstream.MsgIDHeader), err)
	}
}

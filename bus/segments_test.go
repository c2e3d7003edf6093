package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
)

// memStore is a SegmentStore over in-memory bitmaps; uploads are applied by
// a goroutine consuming the real events stream, as the host does.
type memStore struct {
	mu     sync.RWMutex
	names  []string
	segs   map[string]*roaring.Bitmap
	static map[string]bool
	ids    map[string]uint32
	loc    *time.Location
}

func newMemStore(users int, segs map[string]float64, rng *rand.Rand) *memStore {
	m := &memStore{segs: map[string]*roaring.Bitmap{}, static: map[string]bool{}, ids: map[string]uint32{}, loc: time.UTC}
	for i := range users {
		m.intern(fmt.Sprintf("u%05d", i))
	}
	for name, density := range segs {
		bm := roaring.New()
		for u := range uint32(users) {
			if rng.Float64() < density {
				bm.Add(u)
			}
		}
		m.segs[name] = bm
	}
	return m
}

func (m *memStore) intern(u string) uint32 {
	id, ok := m.ids[u]
	if !ok {
		id = uint32(len(m.names))
		m.ids[u] = id
		m.names = append(m.names, u)
	}
	return id
}

func (m *memStore) get(seg string) (*roaring.Bitmap, error) {
	bm, ok := m.segs[seg]
	if !ok {
		return nil, fmt.Errorf("segment %q is not defined: %w", seg, ErrNotFound)
	}
	return bm, nil
}

func (m *memStore) SegmentDetail(seg string) (api.SegmentGetReply, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	bm, err := m.get(seg)
	if err != nil {
		return api.SegmentGetReply{}, err
	}
	return api.SegmentGetReply{SegmentInfo: api.SegmentInfo{ID: seg, Kind: "static", Size: bm.GetCardinality(), Status: "active"}, Definition: "id: " + seg + "\nstatic: true\n"}, nil
}

func (m *memStore) SegmentStatic(seg string) (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if _, err := m.get(seg); err != nil {
		return false, err
	}
	return m.static[seg], nil
}

func (m *memStore) SegmentPage(seg string, from uint32, limit int) ([]uint32, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	bm, err := m.get(seg)
	if err != nil {
		return nil, false, err
	}
	var ids []uint32
	it := bm.Iterator()
	it.AdvanceIfNeeded(from)
	for it.HasNext() {
		if len(ids) == limit {
			return ids, true, nil
		}
		ids = append(ids, it.Next())
	}
	return ids, false, nil
}

func (m *memStore) SegmentBitmaps(segs []string) ([]*roaring.Bitmap, uint32, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*roaring.Bitmap
	for _, s := range segs {
		bm, err := m.get(s)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, bm.Clone())
	}
	return out, uint32(len(m.names)), nil
}

func (m *memStore) UserNames(ids []uint32) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = m.names[id]
	}
	return out, nil
}

// must returns names, failing on an error no memStore gives.
func must(names []string, err error) []string {
	if err != nil {
		panic(err)
	}
	return names
}

func (m *memStore) History(seg string, from, to time.Time) ([]api.HistoryDay, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	bm, err := m.get(seg)
	if err != nil {
		return nil, err
	}
	var out []api.HistoryDay
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		out = append(out, api.HistoryDay{Day: d.Format(time.DateOnly), Size: bm.GetCardinality()})
	}
	return out, nil
}

func (m *memStore) SegmentCount(seg string) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	bm, err := m.get(seg)
	if err != nil {
		return 0, err
	}
	return bm.GetCardinality(), nil
}

func (m *memStore) Location() *time.Location { return m.loc }
func (m *memStore) Now() time.Time           { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) }

// Apply implements Ingester for uploads.
func (m *memStore) Apply(_ context.Context, msg *IngestMessage) error {
	if msg.Upload == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	bm := m.segs[msg.Upload.Segment]
	if msg.Upload.Replace {
		bm.Clear()
	}
	for _, u := range msg.Upload.Users {
		bm.Add(m.intern(u))
	}
	return nil
}

// segEnv runs the service with the segment endpoints on a server whose max
// payload is maxPayload, the events stream and a consumer feeding st.
func segEnv(t *testing.T, st *memStore, maxPayload int32) *client.Client {
	t.Helper()
	return segEnvWith(t, st, segEnvOptions{maxPayload: maxPayload})
}

// segEnvOptions tune segEnvWith.
type segEnvOptions struct {
	maxPayload int32
	// hold, if set, holds every apply until it is closed.
	hold chan struct{}
	// uploadWait bounds an upload's wait to be applied (0: the default).
	uploadWait time.Duration
}

// segEnvWith is segEnv with its options.
func segEnvWith(t *testing.T, st *memStore, o segEnvOptions) *client.Client {
	t.Helper()
	e, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), Port: -1, NoListen: true, MaxPayload: o.maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := EnsureEventsStream(ctx, js, StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	w := &SeqWaiter{}
	cons, err := Consume(ctx, js, ingestFunc(func(ctx context.Context, msg *IngestMessage) error {
		if o.hold != nil {
			select {
			case <-o.hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := st.Apply(ctx, msg); err != nil {
			return err
		}
		w.Applied(msg.Seq)
		return nil
	}), ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cons.Stop)
	t.Cleanup(cancel) // before cons.Stop: a held apply returns
	svc, err := StartService(nc, newMapMembership(), ServiceOptions{Endpoints: SegmentEndpoints(st,
		SegmentOptions{JetStream: js, WaitApplied: w.Wait, UploadTimeout: o.uploadWait})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	cnc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cnc.Close)
	return client.New(cnc, client.WithTimeout(20*time.Second))
}

type ingestFunc func(context.Context, *IngestMessage) error

func (f ingestFunc) Apply(ctx context.Context, m *IngestMessage) error { return f(ctx, m) }

func names(st *memStore, seg string) []string {
	bm, _ := st.get(seg)
	out, _ := st.UserNames(bm.ToArray())
	return out
}

func TestSegmentMembersPaging(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	st := newMemStore(5000, map[string]float64{"vip": 0.3, "empty": 0, "all": 1}, rng)
	c := segEnv(t, st, 0)
	ctx := context.Background()
	for _, seg := range []string{"vip", "empty", "all"} {
		for _, limit := range []int{1, 7, 1000, 10000} {
			if seg == "all" && limit == 1 {
				continue // 5000 round trips prove nothing more than 7 does
			}
			var got []string
			pages := 0
			err := c.EachMember(ctx, seg, limit, func(users []string) error {
				if len(users) > limit {
					t.Errorf("%s limit %d: page of %d", seg, limit, len(users))
				}
				pages++
				got = append(got, users...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := names(st, seg)
			if !slices.Equal(got, want) {
				t.Errorf("%s limit %d: %d users in %d pages, want %d (each exactly once)", seg, limit, len(got), pages, len(want))
			}
		}
	}
	var ce *client.Error
	if _, err := c.Members(ctx, "vip", "not a cursor!", 0); !client.IsBadRequest(err) || !errors.As(err, &ce) || ce.Field != "cursor" {
		t.Errorf("bad cursor: %v", err)
	}
	if _, err := c.Members(ctx, "vip", "", 10001); !client.IsBadRequest(err) || !errors.As(err, &ce) || ce.Field != "limit" {
		t.Errorf("limit too large: %v", err)
	}
	if _, err := c.Members(ctx, "nope", "", 0); !client.IsNotFound(err) {
		t.Errorf("unknown segment: %v", err)
	}
}

func TestSegmentExportRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	// 60000 users: neither the ids (~500 KB) nor the bitmap (~16 KB) fit
	// under a 16 KiB max payload; the small segment can.
	st := newMemStore(100000, map[string]float64{"big": 0.6, "small": 0.001, "empty": 0}, rng)
	c := segEnv(t, st, 16<<10)
	ctx := context.Background()
	for _, seg := range []string{"big", "small", "empty"} {
		want, _ := st.get(seg)
		for _, format := range []string{api.FormatIDs, api.FormatRoaring} {
			var progressed uint64
			ex, err := c.Export(ctx, seg, format, client.WithProgress(func(done, total uint64) {
				if done > total {
					t.Errorf("progress %d of %d", done, total)
				}
				progressed = done
			}))
			if err != nil {
				t.Fatalf("%s %s: %v", seg, format, err)
			}
			if ex.Count != want.GetCardinality() {
				t.Errorf("%s %s: count %d, want %d", seg, format, ex.Count, want.GetCardinality())
			}
			viaObject := ex.Object != ""
			if wantObject := seg == "big"; viaObject != wantObject {
				t.Errorf("%s %s: through the object store %v, want %v", seg, format, viaObject, wantObject)
			}
			if viaObject && progressed == 0 {
				t.Errorf("%s %s: no progress reported", seg, format)
			}
			switch format {
			case api.FormatIDs:
				if !slices.Equal(ex.Users, names(st, seg)) {
					t.Errorf("%s ids: %d users back, want %d", seg, len(ex.Users), want.GetCardinality())
				}
			case api.FormatRoaring:
				bm, err := ex.Bitmap()
				if err != nil || !bm.Equals(want) {
					t.Errorf("%s roaring: %v, equal %v", seg, err, err == nil && bm.Equals(want))
				}
			}
		}
	}
	var ce *client.Error
	if _, err := c.Export(ctx, "big", "csv"); !client.IsBadRequest(err) || !errors.As(err, &ce) || ce.Field != "format" {
		t.Errorf("bad format: %v", err)
	}
	if _, err := c.Export(ctx, "nope", ""); !client.IsNotFound(err) {
		t.Errorf("unknown segment: %v", err)
	}
}

func TestSegmentQueryEndpoint(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	st := newMemStore(3000, map[string]float64{"vip": 0.2, "churned": 0.3, "new_7d": 0.1}, rng)
	c := segEnv(t, st, 0)
	ctx := context.Background()
	vip, _ := st.get("vip")
	churned, _ := st.get("churned")
	new7, _ := st.get("new_7d")
	want := roaring.Or(roaring.AndNot(vip, churned), new7)
	r, err := c.Query(ctx, "vip & !churned | new_7d", false, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if r.Count != want.GetCardinality() || !slices.Equal(r.Users, must(st.UserNames(want.ToArray()))) || r.Truncated {
		t.Errorf("query: count %d (%d users, truncated %v), want %d", r.Count, len(r.Users), r.Truncated, want.GetCardinality())
	}
	r, err = c.Query(ctx, "!vip", true, 0)
	if err != nil || r.Count != 3000-vip.GetCardinality() || len(r.Users) != 0 {
		t.Errorf("!vip count_only: %+v %v", r, err)
	}
	r, err = c.Query(ctx, "vip | churned", false, 5)
	if err != nil || len(r.Users) != 5 || !r.Truncated {
		t.Errorf("limit 5: %+v %v", r, err)
	}
	var ce *client.Error
	_, err = c.Query(ctx, "vip & & churned", false, 0)
	if !client.IsBadRequest(err) || !errors.As(err, &ce) || ce.Field != "expr" || !strings.Contains(ce.Description, "column 7") {
		t.Errorf("syntax error: %v", err)
	}
	_, err = c.Query(ctx, "vip & nope", false, 0)
	if !client.IsNotFound(err) || !strings.Contains(err.Error(), `column 7: segment "nope" is not defined`) {
		t.Errorf("unknown segment: %v", err)
	}
}

func TestSegmentUploadEndpoint(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	st := newMemStore(10, map[string]float64{"newsletter": 0, "vip": 0.5}, rng)
	st.static["newsletter"] = true
	c := segEnv(t, st, 8<<10)
	ctx := context.Background()
	r, err := c.Upload(ctx, "newsletter", []string{"u00001", "x1", "x2"}, api.UploadReplace)
	if err != nil || r.Size != 3 || r.Seq == 0 {
		t.Fatalf("replace: %+v %v", r, err)
	}
	r, err = c.Upload(ctx, "newsletter", []string{"x2", "x3"}, api.UploadAppend)
	if err != nil || r.Size != 4 {
		t.Fatalf("append: %+v %v", r, err)
	}
	r, err = c.Upload(ctx, "newsletter", []string{"x9"}, api.UploadReplace)
	if err != nil || r.Size != 1 || !slices.Equal(names(st, "newsletter"), []string{"x9"}) {
		t.Fatalf("replace again: %+v %v %v", r, err, names(st, "newsletter"))
	}
	// 3000 users do not fit in 8 KiB: the client splits, in order.
	var many []string
	for i := range 3000 {
		many = append(many, fmt.Sprintf("big-%04d", i))
	}
	r, err = c.Upload(ctx, "newsletter", many, api.UploadReplace)
	if err != nil || r.Size != 3000 {
		t.Fatalf("split replace: %+v %v", r, err)
	}
	var ce *client.Error
	for _, tc := range []struct {
		req   api.SegmentUploadRequest
		code  string
		field string
	}{
		{api.SegmentUploadRequest{Segment: "vip", Users: []string{"a"}, Mode: "append"}, "400", "segment"},
		{api.SegmentUploadRequest{Segment: "nope", Users: []string{"a"}, Mode: "append"}, "404", ""},
		{api.SegmentUploadRequest{Segment: "newsletter", Users: []string{"a"}, Mode: "merge"}, "400", "mode"},
		{api.SegmentUploadRequest{Segment: "newsletter", Users: []string{"a"}}, "400", "mode"},
		{api.SegmentUploadRequest{Segment: "newsletter", Users: []string{""}, Mode: "append"}, "400", "users"},
		{api.SegmentUploadRequest{Segment: "newsletter", Mode: "append"}, "400", "users"},
	} {
		_, err := c.Upload(ctx, tc.req.Segment, tc.req.Users, tc.req.Mode)
		if !errors.As(err, &ce) || ce.Code != tc.code || ce.Field != tc.field {
			t.Errorf("%+v: %v, want %s field %q", tc.req, err, tc.code, tc.field)
		}
	}
}

func TestSegmentGetAndHistory(t *testing.T) {
	t.Parallel()
	st := newMemStore(10, map[string]float64{"vip": 1}, rand.New(rand.NewPCG(1, 1)))
	c := segEnv(t, st, 0)
	ctx := context.Background()
	g, err := c.Segment(ctx, "vip")
	if err != nil || g.ID != "vip" || g.Size != 10 || !strings.Contains(g.Definition, "static: true") {
		t.Errorf("get: %+v %v", g, err)
	}
	days, err := c.History(ctx, "vip", "2026-11-26", "2026-11-28")
	if err != nil || len(days) != 3 || days[0].Day != "2026-11-26" || days[2].Day != "2026-11-28" {
		t.Errorf("history: %+v %v", days, err)
	}
	days, err = c.History(ctx, "vip", "", "")
	if err != nil || len(days) != 30 || days[29].Day != "2026-11-28" {
		t.Errorf("history defaults: %d days %v", len(days), err)
	}
	var ce *client.Error
	for _, tc := range []struct{ from, to, field string }{
		{"2026-11-29", "2026-11-28", "from"},
		{"yesterday", "", "from"},
		{"", "28/11/2026", "to"},
		{"2024-01-01", "2026-11-28", "from"},
	} {
		if _, err := c.History(ctx, "vip", tc.from, tc.to); !errors.As(err, &ce) || ce.Code != "400" || ce.Field != tc.field {
			t.Errorf("history %q..%q: %v, want 400 on %s", tc.from, tc.to, err, tc.field)
		}
	}
	if _, err := c.Segment(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("get unknown: %v", err)
	}
	if _, err := c.Segment(ctx, ""); !client.IsBadRequest(err) {
		t.Errorf("get empty: %v", err)
	}
}

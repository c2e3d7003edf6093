package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
)

// scrape fetches and parses the metrics endpoint.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v: %s", resp.StatusCode, err, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, body)
	}
	return fams
}

// metricValue is the value of the metric name with the given labels (name,
// value pairs); ok is false when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// statusCounters are the status reply's counters by metric name.
func statusCounters(st api.StatusReply) map[string]uint64 {
	return map[string]uint64{
		"segd_ingest_batches_total":          st.Batches,
		"segd_ingest_events_total":           st.Events,
		"segd_ingest_profiles_total":         st.Profiles,
		"segd_ingest_invalid_items_total":    st.InvalidItems,
		"segd_ingest_too_new_events_total":   st.TooNew,
		"segd_ingest_expired_events_total":   st.Expired,
		"segd_ingest_not_batches_total":      st.NotBatches,
		"segd_ingest_dead_letters_total":     st.DeadLetters,
		"segd_ingest_applied_seq":            st.LastSeq,
		"segd_feed_published_changes_total":  st.Feed.Published,
		"segd_feed_published_messages_total": st.Feed.Messages,
	}
}

// TestMetricsMatchStatus scrapes /metrics while batches (with invalid,
// too-new and expired items and a message that is not a batch) are being
// ingested: every counter lies between the status read just before and
// just after the scrape; once ingest is idle they are equal, and the
// per-segment sizes are segment.list's.
func TestMetricsMatchStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	clock := engine.NewManualClock(now)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Metrics: "127.0.0.1:0",
		RulePaths: []string{rulesFile}, Clock: clock, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	addr := ts.srv.MetricsAddr()
	if addr == "" {
		t.Fatal("no metrics address")
	}
	ctx := context.Background()

	const batches = 60
	lastSeq := make(chan uint64, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		var seq uint64
		for i := range batches {
			items := []api.Item{}
			b := randomBatch(rng, now)
			for _, e := range b.Events {
				items = append(items, api.Item{User: e.User, Event: e.Name, Time: e.Time, Props: e.Props})
			}
			for _, p := range b.Profiles {
				items = append(items, api.Item{User: p.User, Profile: p.Attrs})
			}
			switch i % 10 {
			case 1:
				items = append(items, api.Item{User: "", Event: "checkout"}) // invalid: no user
			case 2:
				items = append(items, api.Item{User: "u-1", Event: "checkout", Time: now.Add(time.Hour).UnixMilli()}) // too new
			case 3:
				items = append(items, api.Item{User: "u-1", Event: "checkout", Time: now.AddDate(0, 0, -200).UnixMilli()}) // expired
			}
			ack, err := client.PublishBatch(ctx, ts.js, "segd.events.test", items, fmt.Sprintf("m-%d", i))
			if err != nil {
				t.Error(err)
				break
			}
			seq = ack.Sequence
			if i == batches/2 {
				ack, err := ts.js.Publish(ctx, "segd.events.test", []byte("not a batch"))
				if err != nil {
					t.Error(err)
					break
				}
				seq = ack.Sequence
			}
		}
		lastSeq <- seq
	}()

	check := func(exact bool) map[string]*dto.MetricFamily {
		before, err := ts.client.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fams := scrape(t, addr)
		after, err := ts.client.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := statusCounters(*before), statusCounters(*after)
		for name, l := range lo {
			v, ok := metricValue(fams, name)
			if !ok {
				t.Fatalf("%s missing from the scrape", name)
			}
			if v < float64(l) || v > float64(hi[name]) {
				t.Errorf("%s = %v, outside the status before (%d) and after (%d) the scrape", name, v, l, hi[name])
			}
			if exact && v != float64(l) {
				t.Errorf("%s = %v once idle, status says %d", name, v, l)
			}
		}
		return fams
	}

	var last uint64
	scrapes := 0
	for done := false; !done; {
		select {
		case last = <-lastSeq:
			done = true
		default:
		}
		check(false)
		scrapes++
	}
	ts.waitApplied(t, last)
	fams := check(true)
	t.Logf("%d scrapes during ingest", scrapes)

	st, err := ts.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint64{
		"segd_ingest_invalid_items_total":  batches / 10,
		"segd_ingest_too_new_events_total": batches / 10,
		"segd_ingest_not_batches_total":    1,
	} {
		if v, _ := metricValue(fams, name); v < float64(want) {
			t.Errorf("%s = %v, want at least %d", name, v, want)
		}
	}
	if v, _ := metricValue(fams, "segd_ingest_expired_events_total"); v == 0 {
		t.Error("segd_ingest_expired_events_total is 0 after expired events")
	}
	if v, ok := metricValue(fams, "segd_ingest_lag_messages"); !ok || v != 0 {
		t.Errorf("segd_ingest_lag_messages = %v (present %v) once idle, want 0", v, ok)
	}
	if v, _ := metricValue(fams, "segd_ingest_stream_last_seq"); v != float64(st.LastSeq) {
		t.Errorf("segd_ingest_stream_last_seq = %v, want %d", v, st.LastSeq)
	}
	if v, _ := metricValue(fams, "segd_ready"); v != 1 {
		t.Errorf("segd_ready = %v", v)
	}
	if v, _ := metricValue(fams, "segd_apply_duration_seconds", "kind", "batch"); v != batches {
		t.Errorf("segd_apply_duration_seconds{kind=batch} count = %v, want %d", v, batches)
	}
	if v, _ := metricValue(fams, "segd_apply_duration_seconds", "kind", "not_batch"); v != 1 {
		t.Errorf("segd_apply_duration_seconds{kind=not_batch} count = %v, want 1", v)
	}
	list, err := ts.client.Segments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if v, ok := metricValue(fams, "segd_segment_members", "segment", s.ID); !ok || v != float64(s.Size) {
			t.Errorf("segd_segment_members{segment=%s} = %v (present %v), segment.list says %d", s.ID, v, ok, s.Size)
		}
		if v, _ := metricValue(fams, "segd_segment_state", "segment", s.ID, "state", "active"); v != 1 {
			t.Errorf("segd_segment_state{segment=%s,state=active} = %v", s.ID, v)
		}
		if v, _ := metricValue(fams, "segd_segment_evaluations_total", "segment", s.ID); v == 0 {
			t.Errorf("segd_segment_evaluations_total{segment=%s} = 0 after ingest", s.ID)
		}
	}
	// The status requests above were answered, and counted, before this
	// scrape.
	fams = scrape(t, addr)
	if v, _ := metricValue(fams, "segd_requests_total", "endpoint", "status", "code", "200"); v < float64(2*scrapes) {
		t.Errorf("segd_requests_total{endpoint=status,code=200} = %v, want at least %d", v, 2*scrapes)
	}
	if v, _ := metricValue(fams, "segd_request_duration_seconds", "endpoint", "status"); v < float64(2*scrapes) {
		t.Errorf("segd_request_duration_seconds{endpoint=status} count = %v, want at least %d", v, 2*scrapes)
	}
	// No label carries a user id.
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if strings.HasPrefix(lp.GetValue(), "u-") {
					t.Errorf("%s has a user id as a label: %s=%s", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

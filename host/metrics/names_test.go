package metrics

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/plugins"
)

// fixed is a Source with fixed values; the collector's reading of a
// live server is tested in package host (TestMetricsMatchStatus).
type fixed struct{}

func (fixed) Status() api.StatusReply {
	return api.StatusReply{Ready: true, LastSeq: 5, Feed: &api.FeedStatus{}, Snapshot: &api.SnapshotStatus{Written: 1, LastPause: "1.5ms"},
		Rebuilding: []api.RebuildStatus{{Segment: "b", Seq: 1, ToSeq: 5}}, OwnedPartitions: []int{1}}
}
func (fixed) Segments() []api.SegmentInfo {
	return []api.SegmentInfo{{ID: "a", Status: "active"}, {ID: "b", Status: "rebuilding"}}
}
func (fixed) Work() engine.WorkStats                        { return engine.WorkStats{} }
func (fixed) Plugins() []plugins.Status                     { return []plugins.Status{{Name: "p", State: plugins.StateOK}} }
func (fixed) StreamLastSeq(context.Context) (uint64, error) { return 9, nil }

// metricNames are the names the registry serves, segd's own only.
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	m := New(fixed{})
	m.ObserveRequest("status", "200", 0)
	m.ObserveApply("batch", 0)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "segd_") {
			names[f.GetName()] = true
		}
		if isCounter, total := f.GetType() == dto.MetricType_COUNTER, strings.HasSuffix(f.GetName(), "_total"); isCounter != total {
			t.Errorf("%s: a counter's name ends in _total, and only a counter's (type %v)", f.GetName(), f.GetType())
		}
	}
	if len(names) != len(allDescs)+3 {
		t.Errorf("gathered %d segd metrics, %d described: a description emits nothing", len(names), len(allDescs)+3)
	}
	return names
}

var metricRef = regexp.MustCompile(`segd_[a-z_]+[a-z]`)

// TestDocsAndDashboardNameRealMetrics: docs/operations.md lists every
// metric, and it and the Grafana dashboard name no metric that does not
// exist.
func TestDocsAndDashboardNameRealMetrics(t *testing.T) {
	t.Parallel()
	names := metricNames(t)
	strip := func(n string) string {
		for _, s := range []string{"_bucket", "_count", "_sum"} {
			if base := strings.TrimSuffix(n, s); base != n && names[base] {
				return base
			}
		}
		return n
	}
	for _, file := range []string{"../../docs/operations.md", "../../examples/grafana/segd.json"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, ref := range metricRef.FindAllString(string(data), -1) {
			ref = strip(ref)
			if strings.HasPrefix(ref, "segd_data") || ref == "segd_v" {
				continue // the default data dir, not a metric
			}
			seen[ref] = true
			if !names[ref] {
				t.Errorf("%s names %s, which segd does not serve", file, ref)
			}
		}
		if strings.HasSuffix(file, ".md") {
			for n := range names {
				if !seen[n] {
					t.Errorf("%s does not list %s", file, n)
				}
			}
		}
	}
}

var _ prometheus.Collector = (*collector)(nil)

package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/host/analysis"
	"github.com/segd/segd/host/scatter"
)

// BenchmarkAnalysisWorstRequests runs the costliest request of each
// analysis endpoint on an empty index, as the service does: decode,
// validate, analyze, encode the reply. On an empty index the cost is the
// request's own size: what a client can make segd allocate for nothing.
func BenchmarkAnalysisWorstRequests(b *testing.B) {
	quoted := func(n int, f string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`"`+f+`"`, i)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	reqs := map[string]string{
		// 200 events x 200 measures, 3.8 KB: 126 MB before the caps.
		"analysis_events/200x200":      `{"events":` + quoted(200, "e%d") + `,"measures":` + quoted(200, "sum:p%d") + `}`,
		"analysis_events/200x200-year": `{"events":` + quoted(200, "e%d") + `,"measures":` + quoted(200, "sum:p%d") + `,"from":"2026-01-01","to":"2026-12-31"}`,
		"analysis_events/max":          `{"events":` + quoted(20, "e%d") + `,"measures":` + quoted(10, "sum:p%d") + `,"from":"2026-01-01","to":"2026-12-31"}`,
		"analysis_retention/max":       `{"start_event":"a","from":"2026-01-01","to":"2026-12-31","days":90}`,
		"analysis_funnel/max":          `{"steps":[` + strings.Repeat(`{"event":"a"},`, 31) + `{"event":"b"}],"from":"2026-01-01","to":"2026-12-31","window":"366d"}`,
		"analysis_trend/max":           `{"from":"2026-01-01","to":"2026-12-31"}`,
	}
	a := scatter.NewLocal(scatter.LocalConfig{Index: analysis.New(analysis.Config{Now: func() time.Time { return time.Date(2026, 12, 31, 12, 0, 0, 0, time.UTC) }})})
	eps := map[string]bus.Endpoint{}
	for _, ep := range bus.AnalysisEndpoints(a) {
		eps[ep.Name] = ep
	}
	for name, req := range reqs {
		b.Run(name, func(b *testing.B) {
			ep := eps[strings.Split(name, "/")[0]]
			b.ReportAllocs()
			for b.Loop() {
				work, bad := ep.ParseContext([]byte(req))
				if bad != nil {
					continue // a 400 at once
				}
				rep, err := work(context.Background())
				if err != nil {
					if errors.As(err, new(*bus.Error)) {
						continue // a 400 before any work
					}
					b.Fatal(err)
				}
				if _, err := json.Marshal(rep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package bus

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
)

// emptyAnalyzer answers every analysis with an empty reply: the fuzz
// target is after the request decoders, which run before it.
type emptyAnalyzer struct{}

func (emptyAnalyzer) AnalyzeEvents(context.Context, *api.AnalysisEventsRequest) (*api.AnalysisEventsReply, error) {
	return &api.AnalysisEventsReply{}, nil
}
func (emptyAnalyzer) AnalyzeFunnel(context.Context, *api.AnalysisFunnelRequest) (*api.AnalysisFunnelReply, error) {
	return &api.AnalysisFunnelReply{}, nil
}
func (emptyAnalyzer) AnalyzeRetention(context.Context, *api.AnalysisRetentionRequest) (*api.AnalysisRetentionReply, error) {
	return &api.AnalysisRetentionReply{}, nil
}
func (emptyAnalyzer) AnalyzeTrend(context.Context, *api.AnalysisTrendRequest) (*api.AnalysisTrendReply, error) {
	return &api.AnalysisTrendReply{}, nil
}

// allEndpointDefs are every endpoint segd serves, over in-memory stores.
func allEndpointDefs() []endpointDef {
	st := newMemStore(50, map[string]float64{"vip": 0.3, "young-men": 0.5}, rand.New(rand.NewPCG(1, 2)))
	defs := append([]endpointDef(nil), endpointDefs...)
	eps := append(SegmentEndpoints(st, SegmentOptions{}), AnalysisEndpoints(emptyAnalyzer{})...)
	eps = append(eps, PreviewEndpoint(func(context.Context, api.SegmentPreviewRequest) (*api.SegmentPreviewReply, error) {
		return &api.SegmentPreviewReply{}, nil
	}, time.Second))
	for _, e := range eps {
		defs = append(defs, e.def())
	}
	return defs
}

// FuzzRequest routes data to one endpoint's decoder (the first byte picks
// which) as the service does, and runs the work it validates: every
// request is answered with a reply or a 400/404/413/503 with a
// description, never a panic or a 500.
func FuzzRequest(f *testing.F) {
	defs := allEndpointDefs()
	m := newMapMembership()
	for i, d := range defs {
		for _, seed := range []string{d.request, "", "{}", "[]", "null", `{"segment":"vip","limit":-1}`, `{"user":1e400}`,
			`{"events":["a","a"],"measures":["at_least:0"]}`, `{"expr":"` + strings.Repeat("(", 100) + `"}`, "{\"user\":\"\xff\"}"} {
			f.Add(uint8(i), []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, ep uint8, data []byte) {
		d := defs[int(ep)%len(defs)]
		work, bad := safeParse(d, m, data)
		if bad != nil {
			if bad.Code != api.CodeBadRequest || bad.Description == "" {
				t.Fatalf("%s %q: %+v, want a 400 with a description", d.name, data, *bad)
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := work(ctx); err != nil {
			if det := errorDetail(err); det.Code == api.CodeInternal || det.Description == "" {
				t.Fatalf("%s %q: %+v", d.name, data, det)
			}
		}
	})
}

// Command scoring is a segd plugin: a weighted (optionally logistic) scoring
// model over several properties, matching when the score reaches a threshold.
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o scoring.wasm .
//
// Params:
//
//	{"weights": {"amount": 0.01, "items": 0.3, "premium": 1.5},
//	 "bias": -2, "logistic": true, "threshold": 0.6,
//	 "caps": {"amount": 500}}        // optional: clamp a feature before weighting
//
// A number counts as its value, a bool as 0 or 1, anything else as 0.
// score = bias + sum(weight*feature); with logistic, 1/(1+exp(-score)).
package main

import (
	"fmt"
	"math"
	"sort"

	"github.com/segd/segd/sdk"
)

type feature struct {
	key    sdk.Key
	name   string
	weight float64
	cap    float64
}

var (
	features []feature
	bias     float64
	// cut is the threshold on the raw score: with logistic, the sigmoid is
	// increasing, so sigmoid(s) >= t exactly when s >= logit(t), and no
	// item pays for an exp (tens of function calls in a Go guest).
	cut    float64
	scores []float64 // per item of the batch being judged
)

// judge scores a whole batch a feature at a time, over columns (the SDK's
// batch API): one pass per feature, no call per item.
func judge(b *sdk.Batch, out sdk.Bits) {
	n := b.Len()
	if cap(scores) < n {
		scores = make([]float64, n)
	}
	scores = scores[:n]
	for i := range scores {
		scores[i] = bias
	}
	for _, f := range features {
		vals, types := b.Nums(f.key)
		types = types[:len(vals)]
		for i, v := range vals {
			switch types[i] {
			case sdk.Number:
				scores[i] += f.weight * min(v, f.cap)
			case sdk.True:
				scores[i] += f.weight
			}
		}
	}
	for i, s := range scores {
		if s >= cut {
			out.Set(i)
		}
	}
}

func init() {
	sdk.OnInit(setup)
	sdk.SendOnlyKeys() // the host sends only the properties named in the params
	sdk.HandleEventBatch(judge)
	sdk.HandleProfileBatch(judge)
}

func setup() error {
	var p struct {
		Weights   map[string]float64 `json:"weights"`
		Caps      map[string]float64 `json:"caps"`
		Bias      float64            `json:"bias"`
		Logistic  bool               `json:"logistic"`
		Threshold *float64           `json:"threshold"`
	}
	if err := sdk.Params(&p); err != nil {
		return err
	}
	if len(p.Weights) == 0 {
		return fmt.Errorf("params: weights: need at least one weighted property")
	}
	if p.Threshold == nil {
		return fmt.Errorf("params: threshold is required")
	}
	for k := range p.Caps {
		if _, ok := p.Weights[k]; !ok {
			return fmt.Errorf("params: caps.%s: no weight for that property", k)
		}
	}
	for k, w := range p.Weights {
		c, ok := p.Caps[k]
		if !ok {
			c = math.Inf(1)
		}
		features = append(features, feature{sdk.Prop(k), k, w, c})
	}
	// A fixed order makes the floating-point sum deterministic.
	sort.Slice(features, func(i, j int) bool { return features[i].name < features[j].name })
	bias, cut = p.Bias, *p.Threshold
	if p.Logistic {
		switch t := *p.Threshold; {
		case t <= 0:
			cut = math.Inf(-1) // every score
		case t >= 1:
			cut = math.NaN() // no score: every comparison with NaN is false
		default:
			cut = math.Log(t / (1 - t))
		}
	}
	return nil
}

func main() {}

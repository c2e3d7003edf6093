package bus

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segd/segd/bus/client"
)

// TestQueryFloodDoesNotStarve: four 50,000-term queries (200 KB each,
// which ran one after another for 111 s) and a trivial query sent beside
// them are all answered, the big ones with a 400 that locates the limit;
// so are the deepest and the largest expressions the limits allow.
func TestQueryFloodDoesNotStarve(t *testing.T) {
	t.Parallel()
	st := newMemStore(20_000, map[string]float64{"vip": 0.2, "churned": 0.5}, rand.New(rand.NewPCG(9, 10)))
	c := segEnv(t, st, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := strings.Repeat("vip | ", 50_000) + "churned"
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = c.Query(ctx, big, true, 0) })
	}
	r, err := c.Query(ctx, "vip - churned", true, 0)
	if err != nil || r.Count == 0 {
		t.Errorf("a trivial query beside four huge ones: %+v %v", r, err)
	}
	wg.Wait()
	for _, err := range errs {
		var ce *client.Error
		if !client.IsBadRequest(err) || !errors.As(err, &ce) || ce.Field != "expr" || !strings.Contains(ce.Description, "column 16385") {
			t.Errorf("a 200 KB query: %v, want a 400 locating the length limit", err)
		}
	}
	for _, expr := range []string{
		strings.Repeat("(", 1<<10) + "vip" + strings.Repeat(")", 1<<10),
		strings.Repeat("!", 1<<10) + "vip",
	} {
		if _, err := c.Query(ctx, expr, true, 0); !client.IsBadRequest(err) || !strings.Contains(err.Error(), "column 65: parentheses and '!' nest more than 64 deep") {
			t.Errorf("%.20s...: %v, want a 400 at column 65", expr, err)
		}
	}
}

package bus

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/segd/segd/ingest"
	"github.com/segd/segd/rules"
)

// realisticBatch is n events of the shape segd sees in production, about
// 1 KiB each: a user of 200k, one of a dozen event names, a time as RFC
// 3339 or Unix milliseconds, and props of strings, numbers, booleans, a
// list and nested objects. Every tenth item also carries a profile update.
func realisticBatch(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	names := []string{"page_view", "checkout", "add_to_cart", "search", "login", "pay", "signup", "click", "video_play", "share", "logout", "refund"}
	pages := []string{"/", "/products/usb-c-cable-2m", "/products/hdmi-adapter", "/cart", "/checkout/payment", "/account/orders", "/search"}
	oses := []string{"iOS", "Android", "Windows", "macOS", "Linux"}
	currencies := []string{"EUR", "USD", "CNY", "GBP"}
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		user := r.IntN(200_000)
		fmt.Fprintf(&sb, `{"user":"u-%06d","event":%q,`, user, names[r.IntN(len(names))])
		if i%2 == 0 {
			fmt.Fprintf(&sb, `"time":"2026-11-28T10:%02d:%02d.%03d+08:00",`, r.IntN(60), r.IntN(60), r.IntN(1000))
		} else {
			fmt.Fprintf(&sb, `"time":%d,`, 1_795_856_100_000+r.Int64N(86_400_000))
		}
		fmt.Fprintf(&sb, `"props":{"page":%q,"referrer":"https://www.example.com/search?q=usb+c+cable&page=%d","title":"USB-C cable, 2 m, braided \u2013 Example Store",`, pages[r.IntN(len(pages))], r.IntN(10))
		fmt.Fprintf(&sb, `"amount":%d.%02d,"items":%d,"currency":%q,"logged_in":%t,"first_visit":%t,"session_id":"s-%016x",`,
			r.IntN(1000), r.IntN(100), 1+r.IntN(9), currencies[r.IntN(len(currencies))], r.IntN(2) == 0, r.IntN(5) == 0, r.Uint64())
		fmt.Fprintf(&sb, `"user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",`)
		fmt.Fprintf(&sb, `"device":{"os":%q,"version":"%d.%d","model":"Model-%d","screen":{"w":%d,"h":%d,"dpr":%d.5},"touch":true},`,
			oses[r.IntN(len(oses))], 10+r.IntN(8), r.IntN(5), r.IntN(50), 360+r.IntN(1200), 640+r.IntN(1600), 1+r.IntN(2))
		fmt.Fprintf(&sb, `"utm":{"source":"newsletter","medium":"email","campaign":"black-friday-2026","content":"hero-banner-%d"},`, r.IntN(4))
		fmt.Fprintf(&sb, `"tags":["sale","electronics","cables"],"experiment":{"id":"exp-%d","variant":"%c","holdout":false},"latency_ms":%d,"price":%d.99,"discount":0.%02d,"query":null,`,
			r.IntN(20), 'A'+rune(r.IntN(3)), r.IntN(2000), r.IntN(500), r.IntN(100))
		fmt.Fprintf(&sb, `"cart":[{"sku":"SKU-%05d","qty":%d,"price":%d.5},{"sku":"SKU-%05d","qty":1,"price":%d.25}]}`,
			r.IntN(100_000), 1+r.IntN(3), r.IntN(300), r.IntN(100_000), r.IntN(300))
		if i%10 == 0 {
			fmt.Fprintf(&sb, `,"profile":{"plan":"pro","city":"Shanghai","age":%d}`, 18+r.IntN(60))
		}
		sb.WriteByte('}')
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

// profileBatch is n profile updates (every third with an event), as a CRM
// sync sends them.
func profileBatch(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 11))
	cities := []string{"Shanghai", "Beijing", "Berlin", "Paris", "New York", "São Paulo", "Lagos"}
	plans := []string{"free", "pro", "team", "enterprise"}
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"user":"u-%06d",`, r.IntN(200_000))
		if i%3 == 0 {
			fmt.Fprintf(&sb, `"event":"profile_sync","time":%d,`, 1_795_856_100_000+r.Int64N(86_400_000))
		}
		fmt.Fprintf(&sb, `"profile":{"age":%d,"gender":%q,"city":%q,"country":"%c%c","plan":%q,"vip":%t,"ltv":%d.%02d,"signup":"2025-%02d-%02d","email_opt_in":%t,"lang":"en","churn_risk":0.%03d,"last_order":null,"address":{"street":"%d Example Street","zip":"%05d"},"segments_hint":["a","b"]}}`,
			18+r.IntN(60), []string{"male", "female", "other"}[r.IntN(3)], cities[r.IntN(len(cities))], 'A'+rune(r.IntN(26)), 'A'+rune(r.IntN(26)),
			plans[r.IntN(len(plans))], r.IntN(10) == 0, r.IntN(10000), r.IntN(100), 1+r.IntN(12), 1+r.IntN(28), r.IntN(2) == 0, r.IntN(1000), r.IntN(999), r.IntN(99999))
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

// decoderUnderTest is one decoder BenchmarkDecodeBatch measures.
type decoderUnderTest struct {
	name   string
	decode func(data []byte) (int, error) // returns how many items it read
}

func benchDecoders() []decoderUnderTest {
	var reused BatchDecoder
	return []decoderUnderTest{
		{"encoding-json-maps", func(data []byte) (int, error) {
			var items []map[string]any
			err := json.Unmarshal(data, &items)
			return len(items), err
		}},
		{"prescan+encoding-json", func(data []byte) (int, error) {
			b, err := decodeBatchStd(data, defaultTime)
			return batchItems(&b), err
		}},
		{"one-pass", func(data []byte) (int, error) {
			b, err := DecodeBatch(data, defaultTime)
			return batchItems(&b), err
		}},
		{"build-only", buildOnly},
		{"one-pass-keep-none", func(data []byte) (int, error) {
			b, err := reused.Decode(data, DecodeOptions{DefaultTime: defaultTime, Keep: func(string) bool { return false }})
			return 1000 + batchItems(&b), err // every item read, none kept
		}},
		{"one-pass-keep-1of2", func(data []byte) (int, error) {
			b, err := reused.Decode(data, DecodeOptions{DefaultTime: defaultTime, Keep: func(u string) bool { return ingest.Partition(u, 2) == 0 }})
			return 2 * batchItems(&b), err // about half the items
		}},
	}
}

// buildOnly builds the batch data decodes to from values already read (a
// copy of a decoded batch, with new maps, slices, strings and boxes made
// the way the one-pass decoder makes them): what any wire encoding,
// binary or not, still costs to deliver rules.Batch, whose props are
// map[string]any. One-pass over build-only bounds what a binary batch
// encoding could gain.
func buildOnly(data []byte) (int, error) {
	src, ok := buildOnlySource[&data[0]]
	if !ok {
		var err error
		if src, err = DecodeBatch(data, defaultTime); err != nil {
			return 0, err
		}
		buildOnlySource[&data[0]] = src
	}
	d := &buildOnlyDecoder
	b := rules.Batch{Events: make([]rules.Event, 0, len(src.Events)), Invalid: src.Invalid, FirstInvalid: src.FirstInvalid}
	for _, e := range src.Events {
		var props map[string]any
		if e.Props != nil {
			props = d.copyMap(e.Props)
		}
		b.Events = append(b.Events, rules.Event{User: strings.Clone(e.User), Name: d.intern(e.Name), Time: e.Time, Props: props})
	}
	for _, p := range src.Profiles {
		b.Profiles = append(b.Profiles, rules.ProfileUpdate{User: strings.Clone(p.User), Attrs: d.copyMap(p.Attrs)})
	}
	return batchItems(&b), nil
}

var (
	buildOnlySource  = map[*byte]rules.Batch{}
	buildOnlyDecoder BatchDecoder
)

func (d *BatchDecoder) copyMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[d.intern(k)] = d.copyValue(v)
	}
	return c
}

func (d *BatchDecoder) copyValue(v any) any {
	switch v := v.(type) {
	case string:
		return d.box([]byte(v))
	case float64:
		return boxFloat(v)
	case map[string]any:
		return d.copyMap(v)
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = d.copyValue(e)
		}
		return c
	}
	return v
}

// batchItems counts what b holds: events, profile updates and invalid
// items (an item with both an event and a profile counts twice).
func batchItems(b *rules.Batch) int { return len(b.Events) + len(b.Profiles) + b.Invalid }

// BenchmarkDecodeBatch decodes 1000-item batches of three shapes with each
// decoder. x-json is the ratio of the decoder's time to the plain
// consumer's (encoding/json into []map[string]any) measured just before it
// on the same batch: below 1 is faster. cpu-ns/op and x-json-cpu are the
// same from the process's CPU time (garbage collection included), which a
// busy machine disturbs less than the wall time.
func BenchmarkDecodeBatch(b *testing.B) {
	shapes := []struct {
		name string
		data []byte
	}{
		{"events", realisticBatch(1000, 1)},
		{"checkouts", benchBatch()},
		{"profiles", profileBatch(1000, 2)},
	}
	for _, shape := range shapes {
		var baseline, baselineCPU float64 // per op of encoding-json-maps on this shape
		for _, d := range benchDecoders() {
			b.Run(shape.name+"/"+d.name, func(b *testing.B) {
				b.SetBytes(int64(len(shape.data)))
				b.ReportAllocs()
				cpu0 := processCPU()
				for b.Loop() {
					if n, err := d.decode(shape.data); err != nil || n < 1000 {
						b.Fatalf("decoded %d items, err %v", n, err)
					}
				}
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				cpu := float64(processCPU()-cpu0) / float64(b.N)
				if d.name == "encoding-json-maps" {
					baseline, baselineCPU = ns, cpu
				}
				if baseline > 0 {
					b.ReportMetric(ns/baseline, "x-json")
				}
				if baselineCPU > 0 {
					b.ReportMetric(cpu, "cpu-ns/op")
					b.ReportMetric(cpu/baselineCPU, "x-json-cpu")
				}
				b.ReportMetric(1000*1e9/ns, "items/s")
			})
		}
	}
}

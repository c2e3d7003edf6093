package bus

import (
	"strings"
	"testing"

	"github.com/segd/segd/rules"
)

// BenchmarkDecodeWorst decodes the worst 1 MiB messages of each kind: the
// figures for time and memory per message, with the one-pass decoder and
// the one it replaced. Items the one pass leaves to the slow way (unknown
// or case-variant field names, bad UTF-8) cost about what they did.
func BenchmarkDecodeWorst(b *testing.B) {
	const size = 1 << 20
	item := `{"user":"u","event":"e","time":1}`
	deep := (size - 200) / 2
	cases := map[string]string{
		"open-brackets":    strings.Repeat("[", size),
		"deep-item":        "[" + item + `,{"user":"v","event":"e","props":{"x":` + strings.Repeat("[", deep) + strings.Repeat("]", deep) + "}}," + item + "]",
		"deep-item-ndjson": item + "\n" + `{"user":"v","event":"e","props":{"x":` + strings.Repeat("[", deep) + strings.Repeat("]", deep) + "}}\n" + item,
		"many-keys":        `[{"user":"u","event":"e","props":{` + strings.TrimSuffix(strings.Repeat(`"k":1,`, (size-60)/6), ",") + "}}]",
		"tiny-items":       "[" + strings.TrimSuffix(strings.Repeat(`{"user":"u","event":"e"},`, size/25), ",") + "]",
		"bad-utf8-ids":     "[" + strings.TrimSuffix(strings.Repeat("{\"user\":\"\xff\",\"event\":\"e\"},", size/26), ",") + "]",
	}
	cases["missing-users"] = "[" + strings.TrimSuffix(strings.Repeat(`{"event":"e"},`, size/14), ",") + "]"
	cases["unknown-fields"] = "[" + strings.TrimSuffix(strings.Repeat(`{"user":"u","Event":"e"},`, size/25), ",") + "]"
	for _, name := range []string{"open-brackets", "deep-item", "deep-item-ndjson", "many-keys", "tiny-items", "bad-utf8-ids", "missing-users", "unknown-fields"} {
		data := []byte(cases[name])
		for _, dec := range []struct {
			name   string
			decode func([]byte, int64) (rules.Batch, error)
		}{{"one-pass", DecodeBatch}, {"prescan+encoding-json", decodeBatchStd}} {
			b.Run(name+"/"+dec.name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					_, _ = dec.decode(data, 1)
				}
			})
		}
	}
}

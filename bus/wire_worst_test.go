package bus

import (
	"strings"
	"testing"
)

// BenchmarkDecodeWorst decodes the worst 1 MiB messages of each kind: the
// figures for time and memory per message.
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
	for _, name := range []string{"open-brackets", "deep-item", "deep-item-ndjson", "many-keys", "tiny-items", "bad-utf8-ids"} {
		data := []byte(cases[name])
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = DecodeBatch(data, 1)
			}
		})
	}
}

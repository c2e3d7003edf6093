package ingestbench

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// EventNames is how many distinct event names the generated stream uses
// (e00 … e19): the 100-rule set routes five rules to each.
const EventNames = 20

// StreamConfig shapes the generated stream. The zero value of a field takes
// the default named on it (the measurement: 200k users, 2.13M
// events in batches of 1000 over 14 days).
type StreamConfig struct {
	Users     int   // distinct users (default 200000)
	Events    int   // events in the stream (default 2130000)
	BatchSize int   // items per published batch (default 1000)
	Seed      int64 // the generator's seed (default 1)
	Days      int   // calendar days the events span, ending at End (default 14)
	// End is the exclusive end of the events' times (default: today's
	// midnight UTC, so that the stream is the same all day).
	End time.Time
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Users <= 0 {
		c.Users = 200000
	}
	if c.Events <= 0 {
		c.Events = 2130000
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Days <= 0 {
		c.Days = 14
	}
	if c.End.IsZero() {
		c.End = time.Now().UTC().Truncate(24 * time.Hour)
	}
	return c
}

// Generator writes batches of the stream as JSON arrays of items (the
// producers' wire format, docs/events.md), deterministically from the seed.
type Generator struct {
	cfg   StreamConfig
	rng   *rand.Rand
	start int64 // ms
	span  int64 // ms
	n     int   // events written
}

// NewGenerator returns a generator of the stream cfg describes.
func NewGenerator(cfg StreamConfig) *Generator {
	cfg = cfg.withDefaults()
	start := cfg.End.AddDate(0, 0, -cfg.Days)
	return &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5e6d)),
		start: start.UnixMilli(), span: cfg.End.UnixMilli() - start.UnixMilli()}
}

// Config is the generator's configuration with defaults filled in.
func (g *Generator) Config() StreamConfig { return g.cfg }

// Next appends the next batch to dst and returns it with the number of
// events in it; ok is false once the stream's events are all written.
// Events come in time order (with jitter within a batch), as a live
// producer's would.
func (g *Generator) Next(dst []byte) (batch []byte, events int, ok bool) {
	if g.n >= g.cfg.Events {
		return dst, 0, false
	}
	n := min(g.cfg.BatchSize, g.cfg.Events-g.n)
	dst = append(dst, '[')
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		// Times advance evenly through the span, ± a minute.
		t := g.start + int64(float64(g.n+i)/float64(g.cfg.Events)*float64(g.span)) + g.rng.Int64N(120000) - 60000
		t = max(g.start, min(t, g.start+g.span-1))
		dst = g.appendItem(dst, g.rng.IntN(g.cfg.Users), t)
	}
	dst = append(dst, ']')
	g.n += n
	return dst, n, true
}

// LiveBatch appends a batch of n events dated now (ms), for a live
// producer, followed by one item of extra when it is not empty.
func (g *Generator) LiveBatch(dst []byte, n int, now int64, extra string) []byte {
	dst = append(dst, '[')
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = g.appendItem(dst, g.rng.IntN(g.cfg.Users), now)
	}
	if extra != "" {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, extra...)
	}
	return append(dst, ']')
}

var channels = [...]string{"web", "app", "store", "partner"}

// appendItem writes one event: 40% are e00 (the page view of this
// stream), the rest spread evenly over e01 … e19; each has an amount and a
// channel, and one in twenty carries a profile update too.
func (g *Generator) appendItem(dst []byte, user int, ms int64) []byte {
	name := 0
	if g.rng.IntN(10) >= 4 {
		name = 1 + g.rng.IntN(EventNames-1)
	}
	dst = append(dst, `{"user":"`...)
	dst = appendUser(dst, user)
	dst = append(dst, `","event":"e`...)
	dst = appendTwoDigits(dst, name)
	dst = append(dst, `","time":`...)
	dst = strconv.AppendInt(dst, ms, 10)
	dst = append(dst, `,"props":{"amount":`...)
	dst = strconv.AppendInt(dst, int64(g.rng.IntN(2000)), 10)
	dst = append(dst, `,"channel":"`...)
	dst = append(dst, channels[g.rng.IntN(len(channels))]...)
	dst = append(dst, `"}`...)
	if g.rng.IntN(20) == 0 {
		dst = append(dst, `,"profile":{"age":`...)
		dst = strconv.AppendInt(dst, int64(16+g.rng.IntN(50)), 10)
		if g.rng.IntN(2) == 0 {
			dst = append(dst, `,"gender":"male"}`...)
		} else {
			dst = append(dst, `,"gender":"female"}`...)
		}
	}
	return append(dst, '}')
}

// UserID is the id of the generated user i.
func UserID(i int) string { return string(appendUser(nil, i)) }

func appendUser(dst []byte, i int) []byte {
	return fmt.Appendf(dst, "u%07d", i)
}

func appendTwoDigits(dst []byte, n int) []byte {
	return append(dst, byte('0'+n/10), byte('0'+n%10))
}

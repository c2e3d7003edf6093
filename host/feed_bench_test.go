package host

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
)

// BenchmarkUploadMillion uploads a million ids (replace) to an empty static
// segment of a fresh segd and waits until the upload is applied and its
// million changes are stored in SEGD_CHANGES ("segd"; upload-s is the time
// to the reply). The baseline stores the same upload messages in a stream
// of an embedded server that nothing consumes: the cost of moving the ids
// through JetStream.
func BenchmarkUploadMillion(b *testing.B) {
	users := userRange("u", 0, 1_000_000)
	b.Run("segd", func(b *testing.B) {
		var upload time.Duration
		for range b.N {
			b.StopTimer()
			dir := b.TempDir()
			rulesFile := filepath.Join(dir, "rules.yaml")
			if err := os.WriteFile(rulesFile, []byte(segmentTestRules), 0o644); err != nil {
				b.Fatal(err)
			}
			srv, err := Start(context.Background(), Config{DataDir: dir, NoListen: true, RulePaths: []string{rulesFile},
				Clock: engine.NewManualClock(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)), NoSnapshots: true,
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			nc, err := srv.embedded.Connect()
			if err != nil {
				b.Fatal(err)
			}
			c := client.New(nc, client.WithTimeout(5*time.Minute))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			b.StartTimer()
			t0 := time.Now()
			r, err := c.Upload(ctx, "newsletter", users, api.UploadReplace)
			if err != nil || r.Size != 1_000_000 || !r.Applied {
				b.Fatalf("upload: %+v, %v", r, err)
			}
			upload += time.Since(t0)
			if err := srv.ChangeFeed().Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cancel()
			nc.Close()
			srv.Close()
		}
		b.ReportMetric(upload.Seconds()/float64(b.N), "upload-s")
	})
	b.Run("baseline-store", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			e, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: b.TempDir(), NoListen: true})
			if err != nil {
				b.Fatal(err)
			}
			nc, err := e.Connect()
			if err != nil {
				b.Fatal(err)
			}
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if _, err := bus.EnsureEventsStream(ctx, js, bus.StreamConfig{}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			const part = 90_000 // what fits in one 1 MiB message, as the client splits
			for i := 0; i < len(users); i += part {
				msg, err := json.Marshal(api.SegmentUploadRequest{Segment: "newsletter", Users: users[i:min(i+part, len(users))], Mode: api.UploadAppend})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := js.Publish(ctx, bus.ControlUploadSubject, msg); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			nc.Close()
			e.Shutdown()
		}
	})
}

package host

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/host/engine"
)

// BenchmarkUploadMillion uploads a million ids (replace) to an empty static
// segment of a fresh segd and waits until the upload is applied and its
// million changes are stored in SEGD_CHANGES. upload-s is the time to the
// reply, op the time until the feed is stored too.
func BenchmarkUploadMillion(b *testing.B) {
	users := userRange("u", 0, 1_000_000)
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
		if err != nil || r.Size != 1_000_000 {
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
}

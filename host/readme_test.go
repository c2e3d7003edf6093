package host

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/client"
	"github.com/segd/segd/examples/shop"
	"github.com/segd/segd/host/engine"
)

// docRequest is one `nats req SUBJECT 'BODY'` of the docs with the code of
// the error it shows, if any, and the top-level keys of the reply it shows.
type docRequest struct {
	file, subject, body, code string
	keys                      []string
	line                      int
}

var natsReq = regexp.MustCompile(`^\$? ?nats req (\S+) '(.*)'$`)

func docRequests(t *testing.T, files ...string) []docRequest {
	t.Helper()
	var out []docRequest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *docRequest
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if m := natsReq.FindStringSubmatch(line); m != nil {
				out = append(out, docRequest{file: f, subject: m[1], body: m[2], line: n})
				cur = &out[len(out)-1]
				continue
			}
			if cur == nil {
				continue
			}
			switch {
			case line == "" || line == "```":
				cur = nil
			case strings.HasPrefix(line, "Nats-Service-Error-Code: "):
				cur.code = strings.TrimPrefix(line, "Nats-Service-Error-Code: ")
			case strings.HasPrefix(line, "{") && cur.keys == nil && cur.code == "":
				// The reply's top-level keys, read from the shown JSON (which
				// may be abbreviated with "...").
				for _, m := range regexp.MustCompile(`^\{"(\w+)"|,"(\w+)":`).FindAllStringSubmatch(topLevel(line), -1) {
					cur.keys = append(cur.keys, m[1]+m[2])
				}
			}
		}
	}
	return out
}

// topLevel blanks out nested objects and arrays so that only top-level
// keys remain.
func topLevel(s string) string {
	var b strings.Builder
	depth := 0
	inStr := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if inStr {
			if c == '\\' {
				i++
				continue
			}
			if c == '"' {
				inStr = false
			}
			if depth <= 1 {
				b.WriteByte(c)
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		}
		if depth <= 1 && c != ']' && c != '}' || depth == 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// TestDocumentedRequests sends every `nats req` of README.md, docs/api.md
// and docs/analysis.md, with the same payload, through the Go client to a
// segd running the example rules on demo data, and checks the documented
// error code or the documented reply's fields.
func TestDocumentedRequests(t *testing.T) {
	t.Parallel()
	reqs := docRequests(t, "../README.md", "../docs/api.md", "../docs/analysis.md")
	if len(reqs) < 10 {
		t.Fatalf("found only %d nats req examples", len(reqs))
	}
	t.Logf("%d documented requests", len(reqs))
	// The demo's history ends at its clock and the generator's draws follow
	// the time of day, so a user's recent events (user.get's example pages
	// them) depend on it: pin segd's clock and the demo's to one time of
	// day, today, so the examples meet the same data at any hour.
	now := time.Now().UTC().Truncate(24 * time.Hour).Add(13*time.Hour + 30*time.Minute)
	clock := engine.NewManualClock(now)
	cfg := Config{DataDir: t.TempDir(), NoListen: true, RulePaths: []string{"../examples/rules"}, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	srv, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	nc := srv.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := shop.Run(ctx, js, shop.RunOptions{Users: 200, Days: 10, Seed: 1, Now: clock.Now}); err != nil {
		t.Fatal(err)
	}
	c := client.New(nc, client.WithTimeout(20*time.Second))
	info, err := js.Stream(ctx, "SEGD_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, c, info.CachedInfo().State.LastSeq)
	for _, r := range reqs {
		reply, err := c.Request(ctx, r.subject, []byte(r.body))
		var ce *client.Error
		switch {
		case r.code != "":
			if !errors.As(err, &ce) || ce.Code != r.code {
				t.Errorf("%s:%d: nats req %s '%s': %v, documented as %s", r.file, r.line, r.subject, r.body, err, r.code)
			}
		case err != nil:
			t.Errorf("%s:%d: nats req %s '%s': %v", r.file, r.line, r.subject, r.body, err)
		default:
			var got map[string]json.RawMessage
			if err := json.Unmarshal(reply, &got); err != nil {
				t.Errorf("%s:%d: reply %s: %v", r.file, r.line, reply, err)
				continue
			}
			for _, k := range r.keys {
				if _, ok := got[k]; !ok && !slices.Contains([]string{"since", "next", "updated", "error"}, k) {
					t.Errorf("%s:%d: nats req %s '%s': reply %s has no %q", r.file, r.line, r.subject, r.body, reply, k)
				}
			}
		}
	}
}

func waitApplied(t *testing.T, c *client.Client, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := c.Status(context.Background())
		if err == nil && st.LastSeq >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segd did not apply sequence %d in time (%+v, %v)", seq, st, err)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}

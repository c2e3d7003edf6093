// Command flagservice is a small feature-flag service in the style of
// OpenFeature that targets segd segments: a flag file (flags.yaml) gives
// each flag its variants, a default, and rules "users in segment S get
// variant A"; an HTTP endpoint evaluates a flag for a user, asking segd
// before every evaluation whether the user is in the segments the flag's
// rules name.
//
// It fails closed: unless segd answers exactly within the membership
// deadline (client.DefaultMembershipTimeout, 100ms; --timeout), the flag
// serves its default variant with reason ERROR: segd down, too slow, the
// segment stale, failed or unknown, or segd still replaying its log after a
// start (docs/operations.md, "The membership contract").
//
// Against `make run`:
//
//	go run ./examples/flagservice --flags examples/flagservice/flags.yaml
//	curl 'localhost:8081/flags/banner?user=u00047'
//
// answers
//
//	{"key":"banner","value":"Thanks for being one of our best customers","variant":"gold","reason":"TARGETING_MATCH"}
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segd/segd/bus/client"
)

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS server of the running segd")
	flagFile := flag.String("flags", "examples/flagservice/flags.yaml", "the flag file")
	listen := flag.String("listen", "127.0.0.1:8081", "HTTP address")
	timeout := flag.Duration("timeout", client.DefaultMembershipTimeout, "how long an evaluation waits for segd before serving the default")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	flags, err := LoadFlags(*flagFile)
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect(*url, nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("flag service on http://%s/flags/{key}?user=ID", ln.Addr())
	if err := serve(ctx, ln, flags, client.New(nc, client.WithMembershipTimeout(*timeout))); err != nil {
		log.Fatal(err)
	}
}

// serve answers GET /flags/{key}?user=ID with the flag's Resolution until
// ctx ends.
func serve(ctx context.Context, ln net.Listener, flags Flags, m Membership) error {
	srv := &http.Server{Handler: Handler(flags, m), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler evaluates flags over HTTP: GET /flags/{key}?user=ID answers the
// Resolution as JSON, 200 also when it fell back to the default (the
// reason and error code say why); 404 for an unknown flag.
func Handler(flags Flags, m Membership) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /flags/{key}", func(w http.ResponseWriter, r *http.Request) {
		res := flags.Evaluate(r.Context(), m, r.PathValue("key"), r.URL.Query().Get("user"))
		w.Header().Set("Content-Type", "application/json")
		if res.ErrorCode == ErrorFlagNotFound {
			w.WriteHeader(http.StatusNotFound)
		}
		_ = json.NewEncoder(w).Encode(res)
	})
	return mux
}

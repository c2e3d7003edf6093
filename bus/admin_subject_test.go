package bus

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/segd/segd/bus/api"
)

// TestStateChangingEndpointsUnderAdminGroup checks, on the running service
// as `nats micro info segd` shows it, that segment.upload and
// segment.preview are served under segd.admin.v1 and every other endpoint
// under segd.v1: a reader granted "segd.v1.>" must not reach an endpoint
// that changes state or runs rule code.
func TestStateChangingEndpointsUnderAdminGroup(t *testing.T) {
	t.Parallel()
	st := newMemStore(10, map[string]float64{"a": 0.5}, rand.New(rand.NewPCG(1, 2)))
	e, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	svc, err := StartService(nc, newMapMembership(), ServiceOptions{Endpoints: append(SegmentEndpoints(st, SegmentOptions{}), PreviewEndpoint(nil, time.Second))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	subj, err := micro.ControlSubject(micro.InfoVerb, api.ServiceName, "")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subj, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	// Every endpoint that changes state or runs a client's rule.
	admin := map[string]bool{"segment_upload": true, "segment_preview": true}
	seen := 0
	for _, ep := range info.Endpoints {
		want := api.Group + "."
		if admin[ep.Name] {
			want = api.AdminGroup + "."
			seen++
		}
		if !strings.HasPrefix(ep.Subject, want) {
			t.Errorf("endpoint %s on %s, want it under %s>", ep.Name, ep.Subject, want)
		}
	}
	if seen != len(admin) {
		t.Fatalf("found %d of the %d state-changing endpoints in %+v", seen, len(admin), info.Endpoints)
	}
	if strings.HasPrefix(api.AdminGroup+".", api.Group+".") {
		t.Fatalf("%s is inside %s.>", api.AdminGroup, api.Group)
	}
}

package host

import (
	"context"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/host/engine"
)

// wireChanges connects the engine's membership changes to their consumers
// before the engine starts.
func (s *Server) wireChanges(_ context.Context, _ *engine.Config) error { return nil }

// segmentEndpoints are the segment API endpoints beyond membership.
func (s *Server) segmentEndpoints() []bus.Endpoint { return nil }

package host

import (
	"github.com/segd/segd/bus"
	"github.com/segd/segd/host/engine"
)

// wireAnalysis gives the analysis index the engine's events.
func (s *Server) wireAnalysis(_ *engine.Config) {}

// analysisEndpoints are the segd.v1.analysis.* endpoints.
func (s *Server) analysisEndpoints() []bus.Endpoint { return nil }

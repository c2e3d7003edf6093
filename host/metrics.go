package host

import (
	"context"
	"time"

	"github.com/segd/segd/bus"
	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/host/metrics"
	"github.com/segd/segd/plugins"
)

// startMetrics builds the registry over the server's state and, when
// Config.Metrics is set, serves it.
func (s *Server) startMetrics() error {
	s.metrics = metrics.New(metricsSource{s})
	if s.cfg.Metrics == "" {
		return nil
	}
	srv, err := metrics.Serve(s.cfg.Metrics, s.metrics, s.cfg.Logger)
	if err != nil {
		return err
	}
	s.metricsSrv = srv
	s.cfg.Logger.Info("serving Prometheus metrics", "url", "http://"+srv.Addr()+"/metrics")
	return nil
}

// MetricsAddr is the address the metrics are served on (empty: not served).
func (s *Server) MetricsAddr() string {
	if s.metricsSrv == nil {
		return ""
	}
	return s.metricsSrv.Addr()
}

// Metrics returns the server's metrics registry and hooks.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// metricsSource is what the metrics collector reads at scrape time.
type metricsSource struct{ s *Server }

func (m metricsSource) Status() api.StatusReply     { return m.s.membership().Status() }
func (m metricsSource) Segments() []api.SegmentInfo { return m.s.membership().Segments() }
func (m metricsSource) Work() engine.WorkStats      { return m.s.work() }

func (m metricsSource) Plugins() []plugins.Status {
	if m.s.plugins == nil {
		return nil
	}
	return m.s.plugins.Statuses()
}

func (m metricsSource) StreamLastSeq(ctx context.Context) (uint64, error) {
	st, err := m.s.js.Stream(ctx, bus.EventsStream)
	if err != nil {
		return 0, err
	}
	return st.CachedInfo().State.LastSeq, nil
}

// timedIngester observes each message's apply time.
type timedIngester struct {
	bus.Ingester
	m *metrics.Metrics
}

func (t timedIngester) Apply(ctx context.Context, msg *bus.IngestMessage) error {
	start := time.Now()
	err := t.Ingester.Apply(ctx, msg)
	if err == nil {
		kind := "batch"
		switch {
		case msg.Upload != nil:
			kind = "upload"
		case msg.Err != nil:
			kind = "not_batch"
		}
		t.m.ObserveApply(kind, time.Since(start))
	}
	return err
}

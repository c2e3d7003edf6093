// Package metrics exposes segd's state to Prometheus. Most metrics are read
// at scrape time from what segd already counts (its status reply, its
// segments, the engine's work counters, the plugins' counters) by one
// prometheus.Collector, so that the engine carries no Prometheus code and
// the metrics cannot drift from the status endpoint; the latencies, which
// no counter keeps, are histograms observed by hooks (ObserveRequest,
// ObserveApply).
//
// Every metric is in one prometheus.Registry of its own (no global state).
// Labels are bounded: segment ids (bounded by the rule set), plugin names,
// endpoint names and reply codes; never a user id.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/host/engine"
	"github.com/segd/segd/plugins"
)

// Source is what the collector reads at scrape time. Its methods are called
// from the scraping goroutine and must not wait for ingest.
type Source interface {
	// Status is the status endpoint's reply.
	Status() api.StatusReply
	// Segments is segment.list's reply.
	Segments() []api.SegmentInfo
	// Work is the engine's work counters.
	Work() engine.WorkStats
	// Plugins are the loaded plugins' states (nil without plugins).
	Plugins() []plugins.Status
	// StreamLastSeq is the events stream's last sequence now, for the
	// consumer's lag; an error leaves the lag out of the scrape.
	StreamLastSeq(ctx context.Context) (uint64, error)
}

// Metrics is segd's registry with its collector and histograms.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	apply    *prometheus.HistogramVec
}

// New builds the registry: the collector over src, the request and apply
// histograms, and the Go runtime's and the process's standard metrics.
func New(src Source) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "segd_requests_total",
			Help: "Requests answered, by endpoint and reply code (200, or the error code).",
		}, []string{"endpoint", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "segd_request_duration_seconds",
			Help:    "Time from a request's arrival to its answer, by endpoint.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		apply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "segd_apply_duration_seconds",
			Help:    "Time to apply one events-stream message, by kind (batch, upload, not_batch).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"kind"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.apply, &collector{src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, e.g. to gather it in a test.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveRequest records an answered request (bus.ServiceOptions.OnRequest).
func (m *Metrics) ObserveRequest(endpoint, code string, took time.Duration) {
	m.requests.WithLabelValues(endpoint, code).Inc()
	m.latency.WithLabelValues(endpoint).Observe(took.Seconds())
}

// ObserveApply records the time one message took to apply; kind is
// "batch", "upload" or "not_batch".
func (m *Metrics) ObserveApply(kind string, took time.Duration) {
	m.apply.WithLabelValues(kind).Observe(took.Seconds())
}

// Handler serves the registry in Prometheus' exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorLog: nil})
}

// Server serves /metrics over HTTP.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Serve listens on addr (HOST:PORT; port 0 picks a free one) and serves the
// metrics at /metrics until Close.
func Serve(addr string, m *Metrics, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "segd serves its metrics at /metrics", http.StatusNotFound)
	})
	s := &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr is the address the metrics are served on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving, waiting at most a few seconds for scrapes in flight.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

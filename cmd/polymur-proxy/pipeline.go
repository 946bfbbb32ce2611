package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/api"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/internal/compose"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/internal/procs"
	"github.com/polymur/polymur/listener"
	"github.com/polymur/polymur/output"
	"github.com/polymur/polymur/runstats"
)

// pipeline is the proxy's way from the listener to the gateway: an optional
// console printer, then the HTTPS output.
type pipeline struct {
	out     *output.Output // nil with -console-out and no -gateway
	console *printer
	lat     *runstats.Latency
	posts   prometheus.Histogram
}

func newPipeline(c *config, stdout io.Writer, log *slog.Logger) (*pipeline, error) {
	p := &pipeline{lat: runstats.NewLatency(4096), posts: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "polymur_proxy_post_duration_seconds", Help: "Time of one accepted POST of a batch to the gateway.",
		Buckets: daemon.LatencyBuckets})}
	if c.consoleOut {
		p.console = &printer{w: stdout}
	}
	if c.gateway != "" {
		o, err := output.New(output.Config{Gateway: c.gateway, APIKey: c.apiKey, Workers: c.workers, QueueCap: c.queueCap, QueueBytes: c.queueBytes,
			BatchSize: c.batchSize, Encoding: c.compression, FlushInterval: c.flushInterval, CAFile: c.cert, ClientCert: c.clientCert,
			ClientKey: c.clientKey, Timeout: c.httpTimeout, DrainGrace: c.drainTimeout, ObservePost: p.observePost, Logger: log,
			SpoolDir: c.spoolDir, SpoolMaxBytes: c.spoolMaxBytes, SpoolFsync: c.spoolFsync, SpoolAlways: c.spoolMode == "always"})
		if err != nil {
			return nil, err
		}
		p.out = o
	}
	return p, nil
}

func (p *pipeline) observePost(d time.Duration) {
	p.lat.Observe(d)
	p.posts.Observe(d.Seconds())
}

func (p *pipeline) send(ctx context.Context, b *batch.Batch) error {
	if p.console != nil {
		p.console.print(b)
	}
	if p.out == nil {
		b.Release()
		return nil
	}
	return p.out.Send(ctx, b)
}

// CloseInput and Run make the pipeline the proxy's compose.Stage.
func (p *pipeline) CloseInput() {
	if p.out != nil {
		p.out.CloseInput()
	}
}

func (p *pipeline) Run(ctx context.Context) error {
	if p.out == nil {
		<-ctx.Done()
		return nil
	}
	return p.out.Run(ctx)
}

func (p *pipeline) stats() output.Stats {
	if p.out == nil {
		return output.Stats{}
	}
	return p.out.Stats()
}

// statusAttrs extends the periodic throughput and idle lines.
func (p *pipeline) statusAttrs() []any {
	s, l := p.stats(), p.lat.Summary()
	return []any{"sent", s.Sent, "retries", s.Retries, daemon.CountsAttr("dropped", s.Dropped), "queued", s.QueueDepth,
		"post_p50", l.P50, "post_p99", l.P99}
}

// commands are the proxy's optional API: ping, stats, memstats.
// statsJSON is what `stats` and /api/v1/stats answer.
func (p *pipeline) statsJSON(lis *listener.TCP, start time.Time) any {
	return map[string]any{"uptime_seconds": int64(time.Since(start).Seconds()), "version": daemon.Version(),
		"listener": lis.Stats(), "output": p.stats(), "post_latency": p.lat.Summary()}
}

func (p *pipeline) commands(lis *listener.TCP, start time.Time) map[string]api.Handler {
	all := api.ControlCommands(api.Control{Stats: func() any { return p.statsJSON(lis, start) }})
	return map[string]api.Handler{"ping": all["ping"], "stats": all["stats"], "memstats": all["memstats"]}
}

// selfMetrics is what -metrics-flush sends: runtime fields, the rate and the
// output counters.
func (p *pipeline) selfMetrics(rate *runstats.Rate) func() []runstats.Metric {
	return func() []runstats.Metric {
		var ms []runstats.Metric
		for k, v := range runstats.MemFields() {
			ms = append(ms, runstats.Int("runtime."+k, v))
		}
		s := p.stats()
		ms = append(ms, runstats.Float("rate", rate.Last()), runstats.Int("sent", s.Sent),
			runstats.Int("retries", s.Retries), runstats.Int("queue.current-size", uint64(s.QueueDepth)))
		for reason, n := range s.Dropped {
			ms = append(ms, runstats.Int("dropped."+reason, n))
		}
		return ms
	}
}

// metrics exposes the output's counters for /metrics.
func (p *pipeline) metrics() admin.CollectFunc {
	return func(ch chan<- prometheus.Metric) {
		s := p.stats()
		daemon.Counter(ch, "polymur_proxy_points_sent_total", "Points in batches the gateway accepted.", float64(s.Sent))
		daemon.Counter(ch, "polymur_proxy_batches_sent_total", "Batches the gateway accepted.", float64(s.Batches))
		daemon.Counter(ch, "polymur_proxy_retries_total", "POSTs retried (transport errors, 5xx, 503, 401).", float64(s.Retries))
		for reason, n := range s.Dropped {
			daemon.Counter(ch, "polymur_proxy_points_dropped_total", "Points dropped, by reason.", float64(n), "reason", reason)
		}
		daemon.Gauge(ch, "polymur_proxy_queue_batches", "Batches waiting to be sent.", float64(s.QueueDepth))
		daemon.Gauge(ch, "polymur_proxy_queue_capacity_batches", "Capacity of the send queue.", float64(s.QueueCap))
		daemon.Counter(ch, "polymur_proxy_raw_bytes_total", "Uncompressed bytes of the batches sent.", float64(s.RawBytes))
		daemon.Counter(ch, "polymur_proxy_wire_bytes_total", "Compressed bytes of the batches sent.", float64(s.WireBytes))
		failing := 0.0
		if s.GatewayDown {
			failing = 1
		}
		daemon.Gauge(ch, "polymur_proxy_gateway_failing", "1 while POSTs to the gateway fail.", failing)
		daemon.Gauge(ch, "polymur_proxy_spool_bytes", "Bytes held in the disk spool.", float64(s.SpoolBytes))
		daemon.Counter(ch, "polymur_proxy_points_spooled_total", "Points written to the disk spool.", float64(s.Spooled))
		daemon.Counter(ch, "polymur_proxy_points_replayed_total", "Points replayed from the disk spool.", float64(s.Replayed))
	}
}

// adminServer binds -admin-addr (nil when it is empty).
func (p *pipeline) adminServer(af *daemon.AdminFlags, lis *listener.TCP, start time.Time, log *slog.Logger) (*admin.Server, error) {
	intake := daemon.Intake{Accepted: lis.Accepted.Load, Rejected: lis.Rejections}
	cfg := admin.Config{Name: "polymur-proxy", Logger: log,
		Gatherer: daemon.NewRegistry(p.posts, daemon.IntakeMetrics(intake), p.metrics()),
		Stats:    func() any { return p.statsJSON(lis, start) }, NotReady: p.notReady,
		Sample: func() admin.Sample {
			s := p.stats()
			out := admin.Sample{Received: lis.Accepted.Load(), Sent: s.Sent, Queued: map[string]int64{"gateway": int64(s.QueueDepth)}}
			for _, n := range s.Dropped {
				out.Dropped += n
			}
			return out
		}}
	af.Apply(&cfg)
	return daemon.AdminServer(cfg)
}

// notReady is /readyz: not ready while the gateway is failing.
func (p *pipeline) notReady() []string {
	if p.out != nil && p.stats().GatewayDown {
		return []string{"the gateway is failing"}
	}
	return nil
}

// runAll runs the listener (and the self-metrics flush) into the pipeline,
// with the servers beside, until ctx ends; then it drains.
func (p *pipeline) runAll(ctx context.Context, c *config, lis *listener.TCP, servers []*api.Server, adm *admin.Server, log *slog.Logger) error {
	rate := &runstats.Rate{Count: lis.Accepted.Load}
	producers := []compose.Task{lis.Run}
	if c.metricsFlush > 0 {
		producers = append(producers, func(ctx context.Context) error {
			runstats.Flush(ctx, log, time.Duration(c.metricsFlush)*time.Second, runstats.Prefix("polymur"), p.selfMetrics(rate), p.send)
			return nil
		})
	}
	beside := []compose.Task{
		func(ctx context.Context) error { return daemon.RunAdmin(ctx, adm, log) },
		func(ctx context.Context) error {
			runstats.LogRates(ctx, log, rate, 5*time.Second, p.statusAttrs)
			return nil
		},
	}
	if c.adaptiveProcs {
		beside = append(beside, func(ctx context.Context) error { procs.New(log).Run(ctx); return nil })
	}
	for _, srv := range servers {
		beside = append(beside, srv.Run)
	}
	return compose.Pipeline{Producers: producers, Stage: p, Beside: beside, OnShutdown: func() {
		log.Info("shutting down: no new connections, sending what is queued", "drain_timeout", c.drainTimeout)
	}}.Run(ctx)
}

package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/polymur/polymur/api"
	"github.com/polymur/polymur/batch"
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
}

func newPipeline(c *config, stdout io.Writer, log *slog.Logger) (*pipeline, error) {
	p := &pipeline{lat: runstats.NewLatency(4096)}
	if c.consoleOut {
		p.console = &printer{w: stdout}
	}
	if c.gateway != "" {
		o, err := output.New(output.Config{Gateway: c.gateway, APIKey: c.apiKey, Workers: c.workers, QueueCap: c.queueCap,
			BatchSize: c.batchSize, FlushInterval: c.flushInterval, CAFile: c.cert, ClientCert: c.clientCert,
			ClientKey: c.clientKey, Timeout: c.httpTimeout, DrainGrace: c.drainTimeout, ObservePost: p.lat.Observe, Logger: log,
			SpoolDir: c.spoolDir, SpoolMaxBytes: c.spoolMaxBytes})
		if err != nil {
			return nil, err
		}
		p.out = o
	}
	return p, nil
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

func (p *pipeline) closeInput() {
	if p.out != nil {
		p.out.CloseInput()
	}
}

func (p *pipeline) run(ctx context.Context) error {
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

// statusAttrs extends the periodic "Last 5.00s: Received …" line.
func (p *pipeline) statusAttrs() []any {
	s, l := p.stats(), p.lat.Summary()
	return []any{"sent", s.Sent, "retries", s.Retries, "dropped", s.Dropped, "queued", s.QueueDepth,
		"post_p50", l.P50, "post_p99", l.P99}
}

// commands are the proxy's optional API: ping, stats, memstats.
func (p *pipeline) commands(lis *listener.TCP, start time.Time) map[string]api.Handler {
	all := api.ControlCommands(api.Control{Stats: func() any {
		return map[string]any{"uptime_seconds": int64(time.Since(start).Seconds()), "listener": lis.Stats(),
			"output": p.stats(), "post_latency": p.lat.Summary()}
	}})
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

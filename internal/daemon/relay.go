package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/aggregate"
	"github.com/polymur/polymur/api"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/consul"
	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/internal/compose"
	"github.com/polymur/polymur/internal/procs"
	"github.com/polymur/polymur/runstats"
)

// Relay is a destination set with its control API, runstats port, status log and
// self-metrics: what polymur and polymur-gateway have in common.
type Relay struct {
	Log   *slog.Logger
	Dests *dest.Set
	Addrs map[string]string // bound addresses by role, for tests and logs
	// Rejects keeps the last rejected lines of the listeners (by reason),
	// for GET /api/v1/rejected and the status page.
	Rejects *batch.RejectLog

	name    string
	flags   *RelayFlags
	start   time.Time
	lat     *runstats.Latency
	servers []*api.Server
	intake  Intake
	side    []func(context.Context) error

	admin    *admin.Server
	reg      *prometheus.Registry
	notReady []func() []string
	routing  *routing          // -config; nil otherwise
	agg      *aggregate.Engine // -config's aggregates; nil otherwise
	writes   prometheus.Histogram
}

// Reload re-reads -config and swaps the routing table (an error keeps the
// running one; it is logged and counted). Without -config it does nothing.
func (r *Relay) Reload() error {
	if r.routing == nil {
		return nil
	}
	return r.routing.reload()
}

// Routed reports whether the relay routes by -config.
func (r *Relay) Routed() bool { return r.routing != nil }

// AddMetrics registers daemon-specific collectors for /metrics.
func (r *Relay) AddMetrics(cs ...prometheus.Collector) { r.reg.MustRegister(cs...) }

// AddNotReady adds a readiness check for /readyz (reasons; none is ready).
func (r *Relay) AddNotReady(f func() []string) { r.notReady = append(r.notReady, f) }

// Go adds a task that runs beside the relay until ctx ends (key sync, say);
// it is not a producer, so the set does not wait for it to drain.
func (r *Relay) Go(task func(context.Context) error) { r.side = append(r.side, task) }

// Intake is what a relay's listener reports to the status log and to the
// stats: accepted lines and rejected lines by reason.
type Intake struct {
	Accepted func() uint64
	Rejected func() map[string]uint64
	Stats    func() any // the listener's own stats, under "listener"
}

// NewRelay builds the destination set (and, with -config, its routing) from the flags.
// The listeners are built next, sending to Dests.Send; Serve then binds the
// ports that report on both.
func NewRelay(name string, f *RelayFlags, stdout io.Writer, log *slog.Logger) (*Relay, error) {
	r := &Relay{Log: log, name: name, flags: f, start: time.Now(), lat: runstats.NewLatency(4096), Addrs: map[string]string{}, Rejects: batch.NewRejectLog(20)}
	pc := f.DestConfig()
	r.writes = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "polymur_destination_write_duration_seconds",
		Help: "Time of one vectored write of queued points to a destination.", Buckets: LatencyBuckets})
	pc.Logger = log
	pc.ObserveWrite = func(d time.Duration) {
		r.lat.Observe(d)
		r.writes.Observe(d.Seconds())
	}
	if f.StateFile != "" && f.Mode != dest.Routed {
		if f.fromState {
			lvl := slog.LevelInfo
			if f.Destinations != "" {
				lvl = slog.LevelWarn // the flags said something else
			}
			log.Log(context.Background(), lvl, "destinations from the state file (runtime changes of an earlier run); they override -destinations", "state_file", f.StateFile, "destinations", len(f.Dests), "flag_destinations", f.Destinations)
			if len(f.Dests) == 0 {
				log.Warn("the state file lists no destinations: nothing will be sent until putdest", "state_file", f.StateFile)
			}
		}
		pc.OnChange = func(dests []string) {
			if err := writeState(f.StateFile, dests); err != nil {
				log.Error("saving destinations to the state file failed", "state_file", f.StateFile, "err", err)
			}
		}
	}
	if f.ConsoleOut {
		pc.Console = stdout
	}
	if len(f.Dests) == 0 && !f.ConsoleOut {
		log.Warn("no destinations: every line is dropped and counted (no_destinations) until putdest adds one")
	}
	if f.Mode == dest.Routed {
		var err error
		if r.routing, err = newRouting(f.ConfigFile, f.StateFile, f.DestCA, f.Table, consulStart{f.ConsulAddr, f.ConsulWait, f.ConsulFromState}, log); err != nil {
			return nil, fmt.Errorf("-config: %w", err)
		}
		t := r.routing.cur.Load()
		r.agg = newAggregates(f, log, func() *dest.Set { return r.Dests })
		r.agg.Apply(context.Background(), t.Aggregates())
		r.routing.agg = r.agg
		pc.Routes = newTableRoutes(t, r.agg)
		pc.InputEnd = r.agg.Final
		if pc.Destinations, err = destinations(t, f.DestCA); err != nil {
			return nil, fmt.Errorf("-config: %w", err)
		}
	}
	if err := f.checkResolves(pc.Destinations); err != nil {
		return nil, err
	}
	p, err := dest.New(pc)
	if err != nil {
		return nil, err
	}
	r.Dests = p
	if r.routing != nil {
		r.routing.set = p
		r.routing.mu.Lock()
		r.routing.applyHealth()
		r.routing.mu.Unlock()
		r.Go(r.routing.watchConsul)
	}
	return r, nil
}

// Serve binds the control API, runstats and admin ports, which report on
// the destination set and on in (the listeners, built by now). extra adds
// daemon-specific sections to the API's stats. After an error the relay
// must not Run; Close releases what was bound.
func (r *Relay) Serve(in Intake, extra func() map[string]any) error {
	f, p, log, name := r.flags, r.Dests, r.Log, r.name
	putDest, delDest := p.PutDest, p.DelDest
	if r.routing != nil {
		putDest, delDest = r.routing.putDest, r.routing.delDest
	}
	var reload func() error
	if r.routing != nil {
		reload = r.Reload
		prev := extra
		extra = func() map[string]any {
			m := map[string]any{"config": map[string]any{"file": r.routing.path, "reloads": r.routing.reloads.Load(), "reload_failures": r.routing.reloadFails.Load()}}
			if cs := r.routing.consulStats(); cs != nil {
				m["consul"] = map[string]any{"watches": cs, "changes": r.routing.consulChanges.Load(), "refused": r.routing.consulFails.Load()}
			}
			if prev != nil {
				maps.Copy(m, prev())
			}
			return m
		}
	}
	r.reg = NewRegistry(r.writes, IntakeMetrics(in), DestMetrics(p))
	if r.routing != nil && r.routing.consul != nil {
		r.reg.MustRegister(ConsulMetrics(r.routing))
	}
	if r.agg != nil {
		r.reg.MustRegister(AggregateMetrics(r.agg))
		prev := extra
		extra = func() map[string]any {
			m := map[string]any{"aggregates": r.agg.Stats()}
			if prev != nil {
				maps.Copy(m, prev())
			}
			return m
		}
	}
	stats := func() any {
		s := map[string]any{"uptime_seconds": int64(time.Since(r.start).Seconds()), "version": Version(),
			"listener": in.Stats(), "pool": p.Stats(), "write_latency": r.lat.Summary()}
		if extra != nil {
			for k, v := range extra() {
				s[k] = v
			}
		}
		return s
	}
	if f.APIAddr != "" {
		cmds := api.ControlCommands(api.Control{
			PutDest: putDest, DelDest: delDest, Route: p.Route,
			GetDest: func() any { return p.Destinations() },
			Stats:   stats, ReadOnly: f.APIReadOnly, ReadOnlyHint: cmp.Or(f.ReadOnlyHint, "-api-readonly is set"),
		})
		maps.Copy(cmds, f.ExtraCommands)
		srv, err := api.New(api.Config{Addr: f.APIAddr, Name: "API", Logger: log, Commands: cmds})
		if err != nil {
			return fmt.Errorf("-api-addr: %w", err)
		}
		r.servers, r.Addrs["api"] = append(r.servers, srv), srv.Addr().String()
	}
	if f.StatAddr != "" {
		srv, err := StatServer(f.StatAddr, r.start, log)
		if err != nil {
			return err
		}
		r.servers, r.Addrs["stat"] = append(r.servers, srv), srv.Addr().String()
	}
	r.AddNotReady(func() []string { return NotReadyDests(p, f.ConsoleOut) })
	acfg := admin.Config{Name: name, Gatherer: r.reg, Stats: stats, Logger: log, Rejected: func() any { return r.Rejects.Recent() },
		Sample: r.sample, Running: func() any { return r.running() },
		NotReady: func() []string {
			var why []string
			for _, f := range r.notReady {
				why = append(why, f()...)
			}
			return why
		},
		Dests: &admin.Destinations{
			Put: func(d string) error { return adminErr(putDest(d)) },
			Del: func(d string) error { return adminErr(delDest(d)) },
			Get: func() any { return p.Destinations() }, Route: p.Route,
		}, Reload: reload}
	f.Admin.Apply(&acfg)
	var err error
	if r.admin, err = AdminServer(acfg); err != nil {
		return err
	}
	if r.admin != nil {
		r.Addrs["admin"] = r.admin.Addr().String()
	}
	r.intake = in
	return nil
}

// adminErr marks destination set errors for the HTTP API's status codes.
func adminErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dest.ErrDuplicate):
		return admin.Conflict(err)
	case errors.Is(err, dest.ErrNotRegistered):
		return admin.NotFound(err)
	}
	return err
}

// Close releases the relay's sockets when it will not Run (a later start
// step failed).
func (r *Relay) Close() {
	for _, srv := range r.servers {
		srv.Close()
	}
	if r.admin != nil {
		r.admin.Close()
	}
}

// StatServer binds the runstats port (`stats` → runtime JSON).
func StatServer(addr string, start time.Time, log *slog.Logger) (*api.Server, error) {
	srv, err := api.New(api.Config{Addr: addr, Name: "runstats", Logger: log, Commands: map[string]api.Handler{
		"stats": func(string) string { return runstats.Snapshot(start).JSON() }}})
	if err != nil {
		return nil, fmt.Errorf("-stat-addr: %w", err)
	}
	return srv, nil
}

// Run runs producers (the listeners), the destination set and the side servers until
// ctx ends; then the producers stop, the set drains, and Run returns.
func (r *Relay) Run(ctx context.Context, producers ...compose.Task) error {
	rate := &runstats.Rate{Count: r.intake.Accepted}
	if r.agg != nil {
		producers = append(producers, r.agg.Run)
	}
	if r.flags.MetricsFlush > 0 {
		producers = append(producers, func(ctx context.Context) error {
			runstats.Flush(ctx, r.Log, time.Duration(r.flags.MetricsFlush)*time.Second, runstats.Prefix(r.name),
				r.selfMetrics(rate), r.Dests.Send)
			return nil
		})
	}
	beside := []compose.Task{
		func(ctx context.Context) error { return RunAdmin(ctx, r.admin, r.Log) },
		func(ctx context.Context) error {
			runstats.LogRates(ctx, r.Log, rate, 5*time.Second, r.statusAttrs)
			return nil
		},
	}
	if r.flags.AdaptiveProcs {
		beside = append(beside, func(ctx context.Context) error { procs.New(r.Log).Run(ctx); return nil })
	}
	for _, srv := range r.servers {
		beside = append(beside, srv.Run)
	}
	deregister, err := r.register()
	if err != nil {
		return err
	}
	err = compose.Pipeline{Producers: producers, Stage: r.Dests, Beside: append(beside, r.side...),
		OnShutdown: func() {
			r.Log.Info("shutting down: no new connections, delivering queued points", "drain_timeout", r.flags.DrainTimeout)
		}}.Run(ctx)
	if deregister != nil {
		if derr := deregister(); derr != nil {
			r.Log.Error("consul: deregistering failed", "err", derr)
		} else {
			r.Log.Info("consul: deregistered after the drain")
		}
	}
	s := r.Dests.Stats()
	r.Log.Info("stopped", "received", s.Received, "sent", s.Sent, CountsAttr("dropped", s.Dropped))
	return err
}

// register is -consul-register: the daemon in Consul's catalog under its
// listen address, checked through the admin port's /readyz.
func (r *Relay) register() (func() error, error) {
	f := r.flags
	if !f.ConsulRegister {
		return nil, nil
	}
	addr := cmp.Or(r.Addrs["listen"], r.Addrs["https"], r.Addrs["http"])
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-consul-register: no listen address to register (%q)", addr)
	}
	port, _ := strconv.Atoi(portText)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "" // all interfaces: Consul takes the node's address
	}
	host = cmp.Or(f.ConsulServiceAddr, host)
	name := cmp.Or(f.ConsulService, r.name)
	reg := consul.Registration{Consul: f.ConsulAddr, Name: name, ID: fmt.Sprintf("%s-%s-%d", name, cmp.Or(host, "node"), port), Address: host, Port: port,
		Meta:     map[string]string{"version": Version(), "metrics": "http://" + r.Addrs["admin"] + "/metrics"},
		CheckURL: "http://" + r.Addrs["admin"] + "/readyz"}
	ctx, cancel := context.WithTimeout(context.Background(), f.ConsulWait)
	defer cancel()
	dereg, err := consul.Register(ctx, reg)
	if err != nil {
		return nil, fmt.Errorf("-consul-register: %w (is Consul reachable at %s? -consul-addr)", err, consulAddr(f.ConsulAddr))
	}
	r.Log.Info("consul: registered", "service", name, "id", reg.ID, "address", host, "port", port, "check", reg.CheckURL)
	return dereg, nil
}

// selfMetrics gathers what -metrics-flush sends, with the original's names
// (runtime.*, rate, incoming-queue.*, outgoing-queue.<dest>.*) plus the
// pipeline counters.
func (r *Relay) selfMetrics(rate *runstats.Rate) func() []runstats.Metric {
	return func() []runstats.Metric {
		var ms []runstats.Metric
		for k, v := range runstats.MemFields() {
			ms = append(ms, runstats.Int("runtime."+k, v))
		}
		ms = append(ms, runstats.Float("rate", rate.Last()))
		s := r.Dests.Stats()
		ms = append(ms,
			runstats.Int("incoming-queue.current-size", uint64(s.IncomingDepth)),
			runstats.Int("incoming-queue.limit", uint64(s.IncomingCap)),
			runstats.Int("received", s.Received),
			runstats.Int("sent", s.Sent),
			runstats.Int("retried", s.Retried))
		for reason, n := range s.Dropped {
			ms = append(ms, runstats.Int("dropped."+reason, n))
		}
		for reason, n := range r.intake.Rejected() {
			ms = append(ms, runstats.Int("rejected."+reason, n))
		}
		for _, d := range s.Destinations {
			name := "outgoing-queue." + runstats.Sanitize(d.Name)
			ms = append(ms,
				runstats.Int(name+".current-size", uint64(d.QueueDepth)),
				runstats.Int(name+".limit", uint64(d.QueueCap)),
				runstats.Int(name+".sent", d.Sent),
				runstats.Int(name+".dropped", d.Dropped),
				runstats.Int(name+".reconnects", d.Reconnects),
				runstats.Int(name+".spool-bytes", uint64(d.SpoolBytes)))
		}
		return ms
	}
}

// statusAttrs are the counters on the periodic throughput and idle lines:
// with them a quiet relay (nothing queued) and a stuck one (queued, not
// sent) look different.
func (r *Relay) statusAttrs() []any {
	s := r.Dests.Stats()
	queued, spooled, down := s.IncomingDepth+s.RetryDepth, int64(0), 0
	for _, d := range s.Destinations {
		queued += d.QueueDepth + int(d.InFlight)
		spooled += d.SpoolLines
		if d.State != "up" {
			down++
		}
	}
	return []any{"sent", s.Sent, "queued", queued, "spooled", spooled, "destinations", len(s.Destinations), "down", down, CountsAttr("dropped", s.Dropped)}
}

// NewSend is a connection's own sender (listener.TCPConfig.NewSend): it
// places lines itself, with no hand-over, unless the rules aggregate — an
// aggregate's series are one lock, which connections placing side by side
// would contend for; through the one distributor it is uncontended.
func (r *Relay) NewSend() (func(context.Context, *batch.Batch) error, func()) {
	if r.routing != nil && len(r.routing.cur.Load().Aggregates()) > 0 {
		return r.Dests.Send, func() {}
	}
	return r.Dests.Direct()
}

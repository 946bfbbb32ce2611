package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/api"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/pool"
	"github.com/polymur/polymur/route"
	"github.com/polymur/polymur/runstats"
)

// RelayFlags are the flags polymur and polymur-gateway share: the pool, the
// control API, runstats, self-metrics, validation and logging.
type RelayFlags struct {
	APIAddr, StatAddr        string
	APIReadOnly              bool
	ReadOnlyHint             string // what allows changes when APIReadOnly (set by statsd mode)
	Admin                    AdminFlags
	EnvPrefix                string // POLYMUR or POLYMUR_GW, for the admin token variable
	OutgoingCap, IncomingCap int
	ConsoleOut               bool
	Destinations             string
	MetricsFlush             int
	Distribution             string
	DrainTimeout             time.Duration
	MaxLine                  int
	Validation               string
	ReconnectMax             time.Duration
	WriteTimeout             time.Duration
	DeadAfter                int
	LogLevel, LogFormat      string
	SpoolDir                 string
	SpoolMaxBytes            int64
	SpoolReplayRate          int
	SpoolFsync               time.Duration
	SpoolMode                string
	StateFile                string
	AllowEmptyState          bool

	// Set by the daemon, not by flags: statsd mode's UDP output and ring,
	// and commands added to the control API.
	Dial          func(ctx context.Context, addr string) (net.Conn, error)
	RingByAddr    bool
	ExtraCommands map[string]api.Handler
	// ConfigFile is -config (a carbon-c-relay configuration); Table is
	// what Check read from it. NoDelivery (set by -test and
	// -check-config) only reads it.
	ConfigFile  string
	Table       *route.Table
	NoDelivery  bool
	Replication int

	// Filled by Check.
	Mode      pool.Mode
	Dests     []pool.Destination
	Level     batch.Level
	fromState bool
}

// Register defines the shared flags on fs with the seeds' names and defaults;
// prefix is the daemon's environment prefix.
func (f *RelayFlags) Register(fs *flag.FlagSet, prefix string) {
	f.EnvPrefix = prefix
	fs.StringVar(&f.APIAddr, "api-addr", "localhost:2030", "API listen address (empty disables)")
	fs.BoolVar(&f.APIReadOnly, "api-readonly", false, "Refuse putdest and deldest on the TCP API (it has no authentication: any local user who can connect to -api-addr can change destinations)")
	fs.StringVar(&f.StatAddr, "stat-addr", "localhost:2020", "runstats listen address (empty disables)")
	f.Admin.Register(fs, "/metrics (Prometheus), /healthz, /readyz, /api/v1/..., and a status page on /")
	fs.IntVar(&f.OutgoingCap, "outgoing-queue-cap", 4096, "In-flight message queue capacity per destination (number of data points)")
	fs.IntVar(&f.IncomingCap, "incoming-queue-cap", 32768, "In-flight incoming message queue capacity (number of data point batches [100 points max per batch])")
	fs.BoolVar(&f.ConsoleOut, "console-out", false, "Dump output to console (every line is also printed to stdout)")
	fs.StringVar(&f.ConfigFile, "config", "", "carbon-c-relay configuration file (cluster, match, rewrite, include): clusters and rules instead of -destinations and -distribution; SIGHUP (or POST /api/v1/reload) re-reads it")
	fs.StringVar(&f.Destinations, "destinations", "", "Comma-delimited list of host:port[:instance] destinations ([v6addr]:port[:instance] for IPv6)")
	fs.IntVar(&f.MetricsFlush, "metrics-flush", 0, "Graphite flush interval for runtime metrics in seconds (0 is disabled)")
	fs.StringVar(&f.Distribution, "distribution", "broadcast", "Destination distribution methods: broadcast, hash-route; also carbon's and carbon-c-relay's names: consistent-hashing and carbon_ch (= hash-route), forward (= broadcast), fnv1a_ch, jump_fnv1a_ch, any_of, failover")
	fs.IntVar(&f.Replication, "replication", 1, "Destinations per point for the hashing distributions (carbon's REPLICATION_FACTOR; on distinct hosts for carbon_ch)")
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", 10*time.Second, "On SIGTERM/SIGINT, time allowed to deliver what was already received")
	fs.IntVar(&f.MaxLine, "max-line-length", 16384, "Longest accepted metric line in bytes; longer lines are dropped and counted")
	fs.StringVar(&f.Validation, "validation", "carbon", "Line validation: carbon (what carbon accepts), strict, or off")
	fs.DurationVar(&f.ReconnectMax, "reconnect-max", 10*time.Second, "Longest wait between reconnect attempts (backoff starts at 250ms)")
	fs.IntVar(&f.DeadAfter, "dead-after", 3, "Failed reconnects before a hash-route destination's share is re-routed to the others")
	fs.DurationVar(&f.WriteTimeout, "write-timeout", 30*time.Second, "A destination that accepts no data for this long is reconnected")
	fs.StringVar(&f.SpoolDir, "spool-dir", "", "Directory for per-destination disk spools (empty: no spool). Points that do not fit a destination's queue are kept there and replayed")
	fs.Int64Var(&f.SpoolMaxBytes, "spool-max-bytes", 1<<30, "Largest spool per destination in bytes; beyond it points for a down destination are dropped and counted")
	fs.IntVar(&f.SpoolReplayRate, "spool-replay-rate", 50000, "Lines per second replayed from a destination's spool once it is back")
	fs.DurationVar(&f.SpoolFsync, "spool-fsync-interval", time.Second, SpoolFsyncHelp)
	fs.StringVar(&f.SpoolMode, "spool-mode", "overflow", SpoolModeHelp)
	fs.BoolVar(&f.AllowEmptyState, "allow-empty-state", false, "Start even when -state-file lists no destinations while -destinations names some (the file then wins and there is nothing to send to)")
	fs.StringVar(&f.StateFile, "state-file", "", "File that keeps runtime destination changes (putdest/deldest) across restarts; when it exists it replaces -destinations")
	fs.StringVar(&f.LogLevel, "log-level", "info", "Log level: debug, info, warn, error")
	fs.StringVar(&f.LogFormat, "log-format", "text", "Log format: text or json")
}

// Check validates the shared flags and parses enums and destinations.
func (f *RelayFlags) Check() error {
	var err error
	kind, err := distribution(f.Distribution, f.Replication)
	if err != nil {
		return err
	}
	if kind == "" {
		if f.Mode, err = pool.ParseMode(f.Distribution); err != nil {
			return fmt.Errorf("-distribution: %w", err)
		}
	}
	if f.Level, err = batch.ParseLevel(f.Validation); err != nil {
		return fmt.Errorf("-validation: %w", err)
	}
	if f.Dests, err = pool.ParseDestinations(f.Destinations); err != nil {
		return fmt.Errorf("-destinations: %w", err)
	}
	if err := f.Admin.Check(f.EnvPrefix); err != nil {
		return err
	}
	if err := CheckSpoolMode(f.SpoolMode, f.SpoolDir); err != nil {
		return err
	}
	if f.ConfigFile != "" {
		return f.loadConfig()
	}
	if kind != "" {
		return f.synthesize(kind)
	}
	if f.StateFile != "" {
		saved, ok, err := readState(f.StateFile)
		if err != nil {
			return fmt.Errorf("-state-file: %w", err)
		}
		if ok && len(saved) == 0 && len(f.Dests) > 0 && !f.AllowEmptyState {
			return fmt.Errorf("-state-file %s lists no destinations, which would replace the %d of -destinations: delete the file, or start with -allow-empty-state", f.StateFile, len(f.Dests))
		}
		if ok {
			if f.Dests, err = pool.ParseDestinations(strings.Join(saved, ",")); err != nil {
				return fmt.Errorf("-state-file %s: %w", f.StateFile, err)
			}
			f.fromState = true
		}
	}
	if err := pool.CheckDestinations(f.Mode, f.Dests); err != nil {
		if f.fromState {
			return fmt.Errorf("-state-file %s: %w", f.StateFile, err)
		}
		return fmt.Errorf("-destinations: %w", err)
	}
	return Require(
		Rule{"-outgoing-queue-cap must be at least 1", f.OutgoingCap >= 1},
		Rule{"-incoming-queue-cap must be at least 1", f.IncomingCap >= 1},
		Rule{"-metrics-flush must be 0 or more seconds", f.MetricsFlush >= 0},
		Rule{"-drain-timeout must be positive", f.DrainTimeout > 0},
		Rule{"-max-line-length must be from 16 to 16777216", f.MaxLine >= 16 && f.MaxLine <= 1<<24},
		Rule{"-reconnect-max must be at least 250ms", f.ReconnectMax >= 250*time.Millisecond},
		Rule{"-dead-after must be at least 1", f.DeadAfter >= 1},
		Rule{"-write-timeout must be positive", f.WriteTimeout > 0},
		Rule{"-spool-max-bytes must be positive", f.SpoolMaxBytes > 0},
		Rule{"-spool-replay-rate must be positive", f.SpoolReplayRate > 0},
	)
}

// SpoolFsyncHelp describes -spool-fsync-interval on every daemon.
const SpoolFsyncHelp = "How often the spool is fsynced: what a power loss can take (a crash of the process loses nothing spooled). 0 fsyncs every write; negative never"

// SpoolModeHelp describes -spool-mode on every daemon.
const SpoolModeHelp = "overflow: the spool takes what the memory queue cannot (a crash loses the memory queue); always: write-ahead, every accepted line is in the spool before it counts as received and is sent from there (a crash loses nothing accepted). Needs -spool-dir"

// CheckSpoolMode validates -spool-mode against -spool-dir.
func CheckSpoolMode(mode, dir string) error {
	switch mode {
	case "overflow":
		return nil
	case "always":
		if dir == "" {
			return errors.New("-spool-mode always needs -spool-dir")
		}
		return nil
	}
	return fmt.Errorf("-spool-mode: unknown mode %q (want overflow or always)", mode)
}

// distribution maps -distribution (polymur's, carbon's and carbon-c-relay's
// names) and -replication to a carbon-c-relay cluster kind, or "" for the
// pool's own broadcast and hash-route (carbon's carbon_ch without
// replication, with re-routing of dead destinations).
func distribution(name string, replication int) (string, error) {
	if replication < 1 || replication > 255 {
		return "", errors.New("-replication must be from 1 to 255")
	}
	switch name {
	case "broadcast", "forward":
		if replication > 1 {
			return "", fmt.Errorf("-replication %d with -distribution %s: every destination gets every point already", replication, name)
		}
		return "", nil
	case "hash-route", "consistent-hashing", "carbon_ch":
		if replication > 1 {
			return "carbon_ch", nil
		}
		return "", nil
	case "fnv1a_ch", "jump_fnv1a_ch":
		return name, nil
	case "any_of", "failover":
		if replication > 1 {
			return "", fmt.Errorf("-replication with -distribution %s: it sends each point to one destination", name)
		}
		return name, nil
	}
	return "", fmt.Errorf("-distribution: unknown distribution %q (want broadcast, hash-route (consistent-hashing, carbon_ch), fnv1a_ch, jump_fnv1a_ch, any_of or failover)", name)
}

// synthesize turns -destinations into the one-cluster configuration
// "cluster default KIND [replication N] dynamic …; match * send to default"
// for the kinds the pool has no mode of its own for.
func (f *RelayFlags) synthesize(kind string) error {
	if f.StateFile != "" {
		return fmt.Errorf("-state-file with -distribution %s is not supported: its destinations are fixed at start", f.Distribution)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cluster default %s", kind)
	if kind == "carbon_ch" || kind == "fnv1a_ch" || kind == "jump_fnv1a_ch" {
		fmt.Fprintf(&b, " replication %d dynamic", f.Replication)
	}
	for _, d := range f.Dests {
		host := d.Host
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		fmt.Fprintf(&b, " %s:%d", host, d.Port)
		if d.HasInstance {
			b.WriteString("=" + d.Instance)
		}
	}
	b.WriteString(";\nmatch * send to default;\n")
	if len(f.Dests) == 0 {
		return fmt.Errorf("-distribution %s needs -destinations", f.Distribution)
	}
	t, err := route.Parse("-destinations", b.String())
	if err != nil {
		return fmt.Errorf("-destinations with -distribution %s -replication %d: %w", f.Distribution, f.Replication, err)
	}
	f.Table = t
	if f.NoDelivery {
		return nil
	}
	if f.Dests, err = destinations(t); err != nil {
		return err
	}
	f.Mode = pool.Routed
	f.APIReadOnly = true
	f.ReadOnlyHint = "destinations are fixed with -distribution " + f.Distribution
	return nil
}

// loadConfig reads -config; for delivery its servers become the
// destinations and the pool routes by its rules.
func (f *RelayFlags) loadConfig() error {
	if f.Destinations != "" {
		return errors.New("-config and -destinations both given: the configuration's clusters are the destinations")
	}
	t, err := route.ParseFile(f.ConfigFile)
	if err != nil {
		return fmt.Errorf("-config: %w", err)
	}
	f.Table = t
	if f.NoDelivery {
		return nil
	}
	if f.StateFile != "" {
		return errors.New("-config and -state-file: the configuration file is the state; edit it and send SIGHUP")
	}
	if err := deliverable(t); err != nil {
		return fmt.Errorf("-config %s: %w", f.ConfigFile, err)
	}
	if f.Dests, err = destinations(t); err != nil {
		return fmt.Errorf("-config %s: %w", f.ConfigFile, err)
	}
	f.Mode = pool.Routed
	f.APIReadOnly = true
	f.ReadOnlyHint = "destinations come from -config: edit it and send SIGHUP"
	return nil
}

// Rule is one range check of a flag value.
type Rule struct {
	Msg string
	OK  bool
}

// Require returns the first failed rule as an error.
func Require(rules ...Rule) error {
	for _, r := range rules {
		if !r.OK {
			return errors.New(r.Msg)
		}
	}
	return nil
}

// PoolConfig is the pool configuration the flags describe.
func (f *RelayFlags) PoolConfig() pool.Config {
	return pool.Config{
		Mode: f.Mode, Destinations: f.Dests, QueueCap: f.OutgoingCap, IncomingCap: f.IncomingCap,
		DrainTimeout: f.DrainTimeout, ReconnectMax: f.ReconnectMax, DeadAfter: f.DeadAfter, WriteTimeout: f.WriteTimeout,
		SpoolDir: f.SpoolDir, SpoolMaxBytes: f.SpoolMaxBytes, SpoolReplayRate: f.SpoolReplayRate, SpoolFsync: f.SpoolFsync,
		SpoolAlways: f.SpoolMode == "always",
		Dial:        f.Dial, RingByAddr: f.RingByAddr,
	}
}

// Relay is a pool with its control API, runstats port, status log and
// self-metrics: what polymur and polymur-gateway have in common.
type Relay struct {
	Log   *slog.Logger
	Pool  *pool.Pool
	Addrs map[string]string // bound addresses by role, for tests and logs

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
	routing  *routing // -config; nil otherwise
}

// Reload re-reads -config and swaps the routing table (an error keeps the
// running one; it is logged and counted). Without -config it does nothing.
func (r *Relay) Reload() error {
	if r.routing == nil {
		return nil
	}
	return r.routing.reload(r.Pool)
}

// Routed reports whether the relay routes by -config.
func (r *Relay) Routed() bool { return r.routing != nil }

// AddMetrics registers daemon-specific collectors for /metrics.
func (r *Relay) AddMetrics(cs ...prometheus.Collector) { r.reg.MustRegister(cs...) }

// AddNotReady adds a readiness check for /readyz (reasons; none is ready).
func (r *Relay) AddNotReady(f func() []string) { r.notReady = append(r.notReady, f) }

// Go adds a task that runs beside the relay until ctx ends (key sync, say);
// it is not a producer, so the pool does not wait for it to drain.
func (r *Relay) Go(task func(context.Context) error) { r.side = append(r.side, task) }

// Intake is what a relay's listener reports to the status log and to the
// stats: accepted lines and rejected lines by reason.
type Intake struct {
	Accepted func() uint64
	Rejected func() map[string]uint64
	Stats    func() any // the listener's own stats, under "listener"
}

// NewRelay builds the pool and binds the API and runstats ports. extra adds
// daemon-specific sections to the API's stats.
func NewRelay(name string, f *RelayFlags, stdout io.Writer, log *slog.Logger, in Intake, extra func() map[string]any) (*Relay, error) {
	r := &Relay{Log: log, name: name, flags: f, start: time.Now(), lat: runstats.NewLatency(4096), Addrs: map[string]string{}}
	pc := f.PoolConfig()
	writes := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "polymur_destination_write_duration_seconds",
		Help: "Time of one vectored write of queued points to a destination.", Buckets: LatencyBuckets})
	pc.Logger = log
	pc.ObserveWrite = func(d time.Duration) {
		r.lat.Observe(d)
		writes.Observe(d.Seconds())
	}
	if f.StateFile != "" {
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
	if f.Mode == pool.Routed {
		var err error
		if r.routing, err = newRouting(f.ConfigFile, f.Table, log); err != nil {
			return nil, fmt.Errorf("-config: %w", err)
		}
		pc.NewRoute = r.routing.newRoute
	}
	p, err := pool.New(pc)
	if err != nil {
		return nil, err
	}
	r.Pool = p
	var reload func() error
	if r.routing != nil {
		reload = r.Reload
		prev := extra
		extra = func() map[string]any {
			m := map[string]any{"config": map[string]any{"file": r.routing.path, "reloads": r.routing.reloads.Load(), "reload_failures": r.routing.reloadFails.Load()}}
			if prev != nil {
				maps.Copy(m, prev())
			}
			return m
		}
	}
	r.reg = NewRegistry(writes, IntakeMetrics(in), PoolMetrics(p))
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
			PutDest: p.PutDest, DelDest: p.DelDest, Route: p.Route,
			GetDest: func() any { return p.Destinations() },
			Stats:   stats, ReadOnly: f.APIReadOnly, ReadOnlyHint: cmp.Or(f.ReadOnlyHint, "-api-readonly is set"),
		})
		maps.Copy(cmds, f.ExtraCommands)
		srv, err := api.New(api.Config{Addr: f.APIAddr, Name: "API", Logger: log, Commands: cmds})
		if err != nil {
			return nil, fmt.Errorf("-api-addr: %w", err)
		}
		r.servers, r.Addrs["api"] = append(r.servers, srv), srv.Addr().String()
	}
	if f.StatAddr != "" {
		srv, err := StatServer(f.StatAddr, r.start, log)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.servers, r.Addrs["stat"] = append(r.servers, srv), srv.Addr().String()
	}
	r.AddNotReady(func() []string { return NotReadyPool(p, f.ConsoleOut) })
	acfg := admin.Config{Name: name, Gatherer: r.reg, Stats: stats, Logger: log,
		NotReady: func() []string {
			var why []string
			for _, f := range r.notReady {
				why = append(why, f()...)
			}
			return why
		},
		Dests: &admin.Destinations{
			Put: func(d string) error { return adminErr(p.PutDest(d)) },
			Del: func(d string) error { return adminErr(p.DelDest(d)) },
			Get: func() any { return p.Destinations() }, Route: p.Route,
		}, Reload: reload}
	f.Admin.Apply(&acfg)
	r.admin, err = AdminServer(acfg)
	if err != nil {
		r.Close()
		return nil, err
	}
	if r.admin != nil {
		r.Addrs["admin"] = r.admin.Addr().String()
	}
	r.intake = in
	return r, nil
}

// adminErr marks pool errors for the HTTP API's status codes.
func adminErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pool.ErrDuplicate):
		return admin.Conflict(err)
	case errors.Is(err, pool.ErrNotRegistered):
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

// Run runs producers (the listeners), the pool and the side servers until
// ctx ends; then the producers stop, the pool drains, and Run returns.
func (r *Relay) Run(ctx context.Context, producers ...func(context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	rate := &runstats.Rate{Count: r.intake.Accepted}
	var prod errgroup.Group
	for _, p := range producers {
		prod.Go(func() error { return p(gctx) })
	}
	if r.flags.MetricsFlush > 0 {
		prod.Go(func() error {
			runstats.Flush(gctx, r.Log, time.Duration(r.flags.MetricsFlush)*time.Second, runstats.Prefix(r.name),
				r.selfMetrics(rate), r.Pool.Send)
			return nil
		})
	}
	g.Go(func() error { defer r.Pool.CloseInput(); return prod.Wait() })
	g.Go(func() error { return r.Pool.Run(gctx) })
	for _, srv := range r.servers {
		g.Go(func() error { return srv.Run(gctx) })
	}
	g.Go(func() error { return RunAdmin(gctx, r.admin, r.Log) })
	for _, task := range r.side {
		g.Go(func() error { return task(gctx) })
	}
	g.Go(func() error {
		runstats.LogRates(gctx, r.Log, rate, 5*time.Second, nil)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		r.Log.Info("shutting down: no new connections, delivering queued points", "drain_timeout", r.flags.DrainTimeout)
		return nil
	})
	err := g.Wait()
	s := r.Pool.Stats()
	r.Log.Info("stopped", "received", s.Received, "sent", s.Sent, "dropped", s.Dropped)
	return err
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
		s := r.Pool.Stats()
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

// state is what -state-file holds.
type state struct {
	Destinations []string  `json:"destinations"`
	Saved        time.Time `json:"saved"`
}

// readState returns the saved destination list; ok is false when there is
// no state file yet.
func readState(path string) ([]string, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return st.Destinations, true, nil
}

// writeState replaces the state file atomically (write, sync, rename).
func writeState(path string, dests []string) error {
	b, err := json.MarshalIndent(state{Destinations: dests, Saved: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/polymur/polymur/api"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/decode"
	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/internal/procs"
	"github.com/polymur/polymur/route"
)

// RelayFlags are the flags polymur and polymur-gateway share: the destination set, the
// control API, runstats, self-metrics, validation and logging.
type RelayFlags struct {
	APIAddr, StatAddr        string
	APIReadOnly              bool
	ReadOnlyHint             string // what allows changes when APIReadOnly (set by statsd mode)
	Admin                    AdminFlags
	EnvPrefix                string // POLYMUR or POLYMUR_GW, for the admin token variable
	OutgoingCap, IncomingCap int
	IncomingBytes            int64
	ConsoleOut               bool
	Destinations             string
	DestProtocol             string
	TagNormalize             bool
	DestTLS                  bool
	DestTransport            string
	DestCA                   string
	DestCert, DestKey        string
	destTLS                  *tls.Config // from the four above, by Check
	MetricsFlush             int
	Distribution             string
	DrainTimeout             time.Duration
	MaxLine                  int
	Validation               string
	ReconnectMax             time.Duration
	WriteTimeout             time.Duration
	FlushInterval            time.Duration
	AdaptiveProcs            bool
	window                   *batch.Window
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
	ConfigFile string
	Table      *route.Table
	// Aggregates of -config: the caps and the exit policy.
	AggMaxSeries int
	AggMaxValues int64
	AggAtExit    string
	AggRank      string
	// Consul, for -config clusters whose members come from a service.
	ConsulAddr string
	ConsulWait time.Duration
	// Self-registration in Consul's catalog.
	DNSServer         string
	DNSRefresh        time.Duration
	DNSRetry          bool
	ConsulFromState   bool
	ConsulRegister    bool
	ConsulService     string
	ConsulServiceAddr string
	NoDelivery        bool
	Replication       int

	// Filled by Check.
	Mode      dest.Mode
	Dests     []dest.Destination
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
	fs.Int64Var(&f.IncomingBytes, "incoming-queue-bytes", 32<<20, "Most memory (bytes) the batches in the incoming queue hold; readers wait beyond it (backpressure to the clients). 0: bounded by -incoming-queue-cap only")
	fs.BoolVar(&f.ConsoleOut, "console-out", false, "Dump output to console (every line is also printed to stdout)")
	fs.StringVar(&f.ConfigFile, "config", "", "carbon-c-relay configuration file (cluster, match, rewrite, include): clusters and rules instead of -destinations and -distribution; SIGHUP (or POST /api/v1/reload) re-reads it")
	fs.IntVar(&f.AggMaxSeries, "aggregate-max-series", 1_000_000, "Most live aggregate series (one per name a -config aggregate's compute writes); points of new series beyond it are dropped and counted (aggregate_series_limit)")
	fs.Int64Var(&f.AggMaxValues, "aggregate-max-values", 16<<20, "Most values kept for aggregate median, percentile, variance and stddev (8 bytes each); points beyond it are dropped and counted (aggregate_values_limit)")
	fs.StringVar(&f.AggAtExit, "aggregate-at-exit", "emit", "Open aggregate buckets at shutdown (and of aggregates a reload removes): emit (partial values, sent with the drain) or drop (counted as aggregate_shutdown)")
	fs.StringVar(&f.AggRank, "aggregate-rank", "crelay", "How aggregate median and percentile rank values: crelay (as carbon-c-relay: values less than 1 apart keep their arrival order, so results match it exactly) or sorted (true order statistics)")
	fs.StringVar(&f.ConsulAddr, "consul-addr", "", "Consul's HTTP address for -config clusters that take their members from a service (cluster NAME … consul SERVICE); empty: CONSUL_HTTP_ADDR, else 127.0.0.1:8500")
	fs.DurationVar(&f.ConsulWait, "consul-wait", 10*time.Second, "How long the start waits for Consul to answer for those clusters before it fails")
	fs.StringVar(&f.DNSServer, "dns-server", "", "DNS server (host:port) that destination hostnames are looked up with instead of the system's resolver (e.g. Consul's DNS, 127.0.0.1:8600)")
	fs.DurationVar(&f.DNSRefresh, "dns-refresh", time.Minute, "How often hostname destinations are looked up again while connected; one that resolves elsewhere now is reconnected there (0: only at each connection)")
	fs.BoolVar(&f.DNSRetry, "dns-retry-unresolved", false, "Start even when a destination hostname does not resolve (it is retried like an unreachable destination); without it that is an error at start")
	fs.BoolVar(&f.ConsulFromState, "consul-start-from-state", false, "When Consul does not answer at start, start the Consul clusters with the last membership -state-file kept instead of failing")
	fs.BoolVar(&f.ConsulRegister, "consul-register", false, "Register this daemon in Consul's catalog (its listen address, an HTTP check on the admin port's /readyz; needs -admin-addr) and deregister on shutdown after the drain")
	fs.StringVar(&f.ConsulService, "consul-service", "", "Service name for -consul-register (default: the daemon's name)")
	fs.StringVar(&f.ConsulServiceAddr, "consul-service-address", "", "Address to register with -consul-register (default: the listen address' host, or the node's address when it listens on all interfaces)")
	fs.StringVar(&f.Destinations, "destinations", "", "Comma-delimited list of host:port[:instance] destinations ([v6addr]:port[:instance] for IPv6)")
	fs.StringVar(&f.DestProtocol, "destination-protocol", "line", "What -destinations (and putdest) speak: line (plaintext, carbon-cache's port 2003) or pickle (carbon's pickle protocol, port 2004; carbon's DESTINATION_PROTOCOL)")
	fs.StringVar(&f.DestTransport, "destination-transport", "plain", "Compression of the links to -destinations, as carbon-c-relay's transport: plain, gzip (one stream), lz4 (a frame per write) or snappy (a raw block per write; only for peers that read blocks whole)")
	fs.BoolVar(&f.DestTLS, "destination-tls", false, "Connect to -destinations (and putdest ones) over TLS (1.2 or later), verifying each server's certificate against the system roots and -destination-ca")
	fs.StringVar(&f.DestCA, "destination-ca", "", "PEM file of CA certificates trusted for destination TLS besides the system's (carbon-c-relay's -C); also for -config servers with transport … ssl|mtls")
	fs.StringVar(&f.DestCert, "destination-cert", "", "Client certificate (PEM) presented to -destinations over TLS (mTLS); needs -destination-key")
	fs.StringVar(&f.DestKey, "destination-key", "", "Key (PEM) of -destination-cert")
	fs.BoolVar(&f.TagNormalize, "tag-normalize", false, "Normalise tagged series names (name;k=v;… with the tags sorted, as carbon's TAG_RELAY_NORMALIZED) before routing and sending, so every spelling of a series lands on one cache; off by default, as in carbon")
	fs.IntVar(&f.MetricsFlush, "metrics-flush", 0, "Graphite flush interval for runtime metrics in seconds (0 is disabled)")
	fs.StringVar(&f.Distribution, "distribution", "broadcast", "Destination distribution methods: broadcast, hash-route; also carbon's and carbon-c-relay's names: consistent-hashing and carbon_ch (= hash-route), forward (= broadcast), fnv1a_ch, jump_fnv1a_ch, any_of, failover")
	fs.IntVar(&f.Replication, "replication", 1, "Destinations per point for the hashing distributions (carbon's REPLICATION_FACTOR; on distinct hosts for carbon_ch)")
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", 10*time.Second, "On SIGTERM/SIGINT, time allowed to deliver what was already received")
	fs.IntVar(&f.MaxLine, "max-line-length", 16384, "Longest accepted metric line in bytes; longer lines are dropped and counted")
	fs.StringVar(&f.Validation, "validation", "carbon", "Line validation: carbon (what carbon accepts), strict, or off")
	fs.DurationVar(&f.ReconnectMax, "reconnect-max", 10*time.Second, "Longest wait between reconnect attempts (backoff starts at 250ms)")
	fs.IntVar(&f.DeadAfter, "dead-after", 3, "Failed reconnects before a hash-route destination's share is re-routed to the others")
	fs.DurationVar(&f.WriteTimeout, "write-timeout", 30*time.Second, "A destination that accepts no data for this long is reconnected")
	fs.DurationVar(&f.FlushInterval, "flush-interval", 2*time.Millisecond, "Coalescing window at ordinary rates: a connection that read only a few lines waits this long before reading again, and a destination's first lines after a quiet spell wait this long for more before they are written, so one wake-up and one write carry many lines (a line waits at most about twice this); a saturated connection or destination never waits; 0 hands on and writes at once (most CPU per line)")
	fs.BoolVar(&f.AdaptiveProcs, "adaptive-procs", true, procs.FlagHelp)
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
	if err := f.ranges(); err != nil {
		return err
	}
	var err error
	kind, err := distribution(f.Distribution, f.Replication)
	if err != nil {
		return err
	}
	if kind == "" {
		if f.Mode, err = dest.ParseMode(f.Distribution); err != nil {
			return fmt.Errorf("-distribution: %w", err)
		}
	}
	if f.Level, err = batch.ParseLevel(f.Validation); err != nil {
		return fmt.Errorf("-validation: %w", err)
	}
	if svc, ok := strings.CutPrefix(f.Destinations, "consul:"); ok {
		if f.ConfigFile != "" {
			return errors.New("-config and -destinations both given: the configuration's clusters are the destinations")
		}
		return f.fromConsul(svc)
	}
	if f.Dests, err = dest.ParseDestinations(f.Destinations); err != nil {
		return fmt.Errorf("-destinations: %w", err)
	}
	if err := f.Admin.Check(f.EnvPrefix); err != nil {
		return err
	}
	if err := CheckSpoolMode(f.SpoolMode, f.SpoolDir); err != nil {
		return err
	}
	if f.DestTLS || f.DestCert != "" || f.DestKey != "" {
		if f.destTLS, err = ClientTLS(f.DestCA, f.DestCert, f.DestKey); err != nil {
			return fmt.Errorf("-destination-tls: %w", err)
		}
	} else if f.DestCA != "" {
		if _, err := ClientTLS(f.DestCA, "", ""); err != nil {
			return fmt.Errorf("-destination-ca: %w", err)
		}
	}
	if !decode.ValidTransport(f.DestTransport) {
		return fmt.Errorf("-destination-transport: %q is not plain, gzip, lz4 or snappy", f.DestTransport)
	}
	if f.DestProtocol != "line" && f.DestProtocol != "pickle" {
		return fmt.Errorf("-destination-protocol: %q is not line or pickle", f.DestProtocol)
	}
	if f.ConfigFile != "" {
		if f.DestProtocol != "line" {
			return errors.New("-destination-protocol with -config: give each pickle server \"type pickle\" in the configuration")
		}
		if f.DestTransport != "plain" {
			return errors.New("-destination-transport with -config: give each server its transport in the configuration")
		}
		if f.destTLS != nil {
			return errors.New("-destination-tls with -config: give each TLS server \"transport plain ssl\" (or mtls CERT KEY) in the configuration; -destination-ca names the CA")
		}
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
			if f.Dests, err = dest.ParseDestinations(strings.Join(saved, ",")); err != nil {
				return fmt.Errorf("-state-file %s: %w", f.StateFile, err)
			}
			f.fromState = true
		}
	}
	if err := dest.CheckDestinations(f.Mode, f.Dests); err != nil {
		if f.fromState {
			return fmt.Errorf("-state-file %s: %w", f.StateFile, err)
		}
		return fmt.Errorf("-destinations: %w", err)
	}
	return nil
}

// ranges checks the numeric and enum flags, in every mode.
func (f *RelayFlags) ranges() error {
	return Require(
		Rule{"-outgoing-queue-cap must be at least 1", f.OutgoingCap >= 1},
		Rule{"-aggregate-max-series must be at least 1", f.AggMaxSeries >= 1},
		Rule{"-aggregate-max-values must be at least 1", f.AggMaxValues >= 1},
		Rule{fmt.Sprintf("-aggregate-at-exit: %q is not emit or drop", f.AggAtExit), f.AggAtExit == "emit" || f.AggAtExit == "drop"},
		Rule{fmt.Sprintf("-aggregate-rank: %q is not crelay or sorted", f.AggRank), f.AggRank == "crelay" || f.AggRank == "sorted"},
		Rule{"-incoming-queue-cap must be at least 1", f.IncomingCap >= 1},
		Rule{"-incoming-queue-bytes must be 0 or more", f.IncomingBytes >= 0},
		Rule{"-consul-wait must be positive", f.ConsulWait > 0},
		Rule{"-dns-refresh must be 0 or more", f.DNSRefresh >= 0},
		Rule{"-consul-register needs -admin-addr (its check is the admin port's /readyz)", !f.ConsulRegister || f.Admin.Addr != ""},
		Rule{"-metrics-flush must be 0 or more seconds", f.MetricsFlush >= 0},
		Rule{"-drain-timeout must be positive", f.DrainTimeout > 0},
		Rule{"-max-line-length must be from 16 to 16777216", f.MaxLine >= 16 && f.MaxLine <= 1<<24},
		Rule{"-reconnect-max must be at least 250ms", f.ReconnectMax >= 250*time.Millisecond},
		Rule{"-dead-after must be at least 1", f.DeadAfter >= 1},
		Rule{"-write-timeout must be positive", f.WriteTimeout > 0},
		Rule{"-flush-interval must be between 0 and 1s", f.FlushInterval >= 0 && f.FlushInterval <= time.Second},
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

// DestConfig is the destination set's configuration the flags describe.
func (f *RelayFlags) DestConfig() dest.Config {
	return dest.Config{
		Mode: f.Mode, Destinations: f.Dests, QueueCap: f.OutgoingCap, IncomingCap: f.IncomingCap, IncomingBytes: f.IncomingBytes,
		Resolver: f.Resolver(), DNSRefresh: f.DNSRefresh,
		DrainTimeout: f.DrainTimeout, ReconnectMax: f.ReconnectMax, DeadAfter: f.DeadAfter, WriteTimeout: f.WriteTimeout,
		SpoolDir: f.SpoolDir, SpoolMaxBytes: f.SpoolMaxBytes, SpoolReplayRate: f.SpoolReplayRate, SpoolFsync: f.SpoolFsync,
		SpoolAlways: f.SpoolMode == "always", Pickle: f.DestProtocol == "pickle", TLS: f.destTLS,
		Transport: f.DestTransport,
		Dial:      f.Dial, RingByAddr: f.RingByAddr, Window: f.Window(),
	}
}

// Window is the -flush-interval coalescing window shared by the listeners
// and the destination writers (nil for 0).
func (f *RelayFlags) Window() *batch.Window {
	if f.window == nil {
		f.window = batch.NewWindow(f.FlushInterval)
	}
	return f.window
}

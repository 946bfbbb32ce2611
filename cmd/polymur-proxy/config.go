package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/internal/procs"
	"github.com/polymur/polymur/output"
)

// config is polymur-proxy's parsed and validated command line.
type config struct {
	compression                  string
	adaptiveProcs                bool
	gateway, apiKey, cert        string
	clientCert, clientKey        string
	listenAddr, statAddr         string
	apiAddr                      string
	admin                        daemon.AdminFlags
	clients                      daemon.ClientFlags
	queueCap, workers, batchSize int
	queueBytes                   int64
	consoleOut, verbose          bool
	metricsFlush                 int
	flushInterval, httpTimeout   time.Duration
	drainTimeout                 time.Duration
	maxLine                      int
	spoolDir                     string
	spoolMaxBytes                int64
	spoolFsync                   time.Duration
	spoolMode                    string
	validation                   string
	level                        batch.Level
	logLevel, logFormat          string
}

const usageHeader = `polymur-proxy: ships Graphite metrics to a remote polymur-gateway.

Reads Graphite plaintext lines on -listen-addr, gathers them into batches,
gzips them and POSTs them over HTTPS to -gateway's /ingest with the API key.
Batches are retried until the gateway accepts them. Every flag can also be set
through the environment variable shown in brackets; the command line wins.

Flags:
`

func parseConfig(args []string, stdout, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("polymur-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHeader)
		fs.PrintDefaults()
	}
	var c config
	fs.StringVar(&c.gateway, "gateway", "", "polymur gateway address (base URL, e.g. https://gw.example.com)")
	fs.StringVar(&c.apiKey, "api-key", "", "polymur gateway API key")
	fs.StringVar(&c.cert, "cert", "", "TLS Certificate: a PEM CA added to the system roots to verify the gateway")
	fs.StringVar(&c.clientCert, "client-cert", "", "Client certificate (PEM) for mutual TLS")
	fs.StringVar(&c.clientKey, "client-key", "", "Client key (PEM) for mutual TLS")
	fs.StringVar(&c.listenAddr, "listen-addr", "0.0.0.0:2003", "Polymur-proxy listen address")
	c.clients.Register(fs)
	fs.StringVar(&c.statAddr, "stat-addr", "localhost:2020", "runstats listen address (empty disables)")
	fs.StringVar(&c.apiAddr, "api-addr", "", "API listen address for ping/stats/memstats (empty disables)")
	c.admin.Register(fs, "/metrics (Prometheus), /healthz, /readyz, /api/v1/stats, and a status page on /")
	fs.IntVar(&c.queueCap, "queue-cap", 32768, "In-flight message queue capacity (number of data point batches [100 points max per batch])")
	fs.Int64Var(&c.queueBytes, "queue-bytes", 32<<20, "The same queue's bound in bytes (lines and their bookkeeping): it is full when either bound is reached; with the gateway healthy a full queue makes the proxy stop reading its clients")
	fs.IntVar(&c.workers, "workers", 3, "HTTP output workers")
	fs.StringVar(&c.compression, "compression", "gzip", "Batch body encoding: gzip (what every gateway takes, the original too) or zstd (polymur-gateway of this version or later; it decompresses several times faster)")
	fs.IntVar(&c.batchSize, "batch-size", 5000, "Most data points in one batch sent to the gateway")
	fs.DurationVar(&c.flushInterval, "flush-interval", time.Second, "Longest time a partial batch waits before it is sent")
	fs.DurationVar(&c.httpTimeout, "http-timeout", 30*time.Second, "Timeout of one POST to the gateway (the batch is retried after it)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 10*time.Second, "On SIGTERM/SIGINT, time allowed to deliver what was already received")
	fs.BoolVar(&c.adaptiveProcs, "adaptive-procs", true, procs.FlagHelp)
	fs.BoolVar(&c.consoleOut, "console-out", false, "Dump output to console (print every line to stdout; also send when -gateway is set)")
	fs.IntVar(&c.metricsFlush, "metrics-flush", 0, "Graphite flush interval for runtime metrics in seconds (0 is disabled)")
	fs.StringVar(&c.spoolDir, "spool-dir", "", "Directory for a disk spool of batches the gateway has not accepted (empty: no spool)")
	fs.Int64Var(&c.spoolMaxBytes, "spool-max-bytes", 1<<30, "Largest spool in bytes")
	fs.DurationVar(&c.spoolFsync, "spool-fsync-interval", time.Second, daemon.SpoolFsyncHelp)
	fs.StringVar(&c.spoolMode, "spool-mode", "overflow", daemon.SpoolModeHelp)
	fs.IntVar(&c.maxLine, "max-line-length", 16384, "Longest accepted metric line in bytes; longer lines are dropped and counted")
	fs.StringVar(&c.validation, "validation", "carbon", "Line validation: carbon (what carbon accepts), strict, or off")
	fs.BoolVar(&c.verbose, "verbose", false, "Log every batch sent (same as -log-level debug)")
	fs.StringVar(&c.logLevel, "log-level", "info", "Log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "Log format: text or json")
	version := daemon.VersionFlag(fs)
	if err := daemon.ParseFlags(fs, "POLYMUR_PROXY", args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	if *version {
		fmt.Fprintln(stdout, daemon.VersionLine("polymur-proxy"))
		return nil, daemon.ErrVersion
	}
	var err error
	if c.level, err = batch.ParseLevel(c.validation); err != nil {
		return nil, fmt.Errorf("-validation: %w", err)
	}
	if err := c.admin.Check("POLYMUR_PROXY"); err != nil {
		return nil, err
	}
	if err := c.clients.Check(); err != nil {
		return nil, err
	}
	if err := daemon.CheckSpoolMode(c.spoolMode, c.spoolDir); err != nil {
		return nil, err
	}
	if c.verbose {
		c.logLevel = "debug"
	}
	return &c, daemon.Require(
		daemon.Rule{Msg: "-gateway is required (or -console-out alone)", OK: c.gateway != "" || c.consoleOut},
		daemon.Rule{Msg: "-api-key is required with -gateway", OK: c.gateway == "" || c.apiKey != ""},
		daemon.Rule{Msg: "-queue-cap must be at least 1", OK: c.queueCap >= 1},
		daemon.Rule{Msg: "-queue-bytes must be at least 1 MiB", OK: c.queueBytes >= 1<<20},
		daemon.Rule{Msg: "-workers must be from 1 to 256", OK: c.workers >= 1 && c.workers <= 256},
		daemon.Rule{Msg: "-compression must be gzip or zstd", OK: output.CheckEncoding(c.compression) == nil},
		daemon.Rule{Msg: "-batch-size must be from 1 to 1000000", OK: c.batchSize >= 1 && c.batchSize <= 1_000_000},
		daemon.Rule{Msg: "-flush-interval must be positive", OK: c.flushInterval > 0},
		daemon.Rule{Msg: "-http-timeout must be positive", OK: c.httpTimeout > 0},
		daemon.Rule{Msg: "-drain-timeout must be positive", OK: c.drainTimeout > 0},
		daemon.Rule{Msg: "-metrics-flush must be 0 or more seconds", OK: c.metricsFlush >= 0},
		daemon.Rule{Msg: "-max-line-length must be from 16 to 16777216", OK: c.maxLine >= 16 && c.maxLine <= 1<<24},
		daemon.Rule{Msg: "-listen-addr must not be empty", OK: c.listenAddr != ""},
		daemon.Rule{Msg: "-spool-max-bytes must be positive", OK: c.spoolMaxBytes > 0},
	)
}

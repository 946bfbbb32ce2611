package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/pool"
	"github.com/polymur/polymur/runstats"
)

// config is polymur's parsed and validated command line.
type config struct {
	listenAddr, apiAddr, statAddr string
	outgoingCap, incomingCap      int
	consoleOut                    bool
	destinations                  []pool.Destination
	metricsFlush                  int
	mode                          pool.Mode
	drainTimeout                  time.Duration
	maxLine                       int
	level                         batch.Level
	reconnectMax, writeTimeout    time.Duration
	deadAfter                     int
	test                          bool
	logLevel, logFormat           string
}

const usageHeader = `polymur: a Graphite carbon-relay replacement.

Reads Graphite plaintext lines ("name value timestamp") on -listen-addr and
broadcasts them to every destination or hash-routes each to the destination
carbon's consistent-hashing ring picks. Every flag can also be set through
the environment variable shown in brackets; the command line wins.

Flags:
`

func parseConfig(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("polymur", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHeader)
		fs.PrintDefaults()
	}
	var c config
	var dests, dist, level string
	fs.StringVar(&c.listenAddr, "listen-addr", "0.0.0.0:2003", "Polymur listen address")
	fs.StringVar(&c.apiAddr, "api-addr", "localhost:2030", "API listen address (empty disables)")
	fs.StringVar(&c.statAddr, "stat-addr", "localhost:2020", "runstats listen address (empty disables)")
	fs.IntVar(&c.outgoingCap, "outgoing-queue-cap", 4096, "In-flight message queue capacity per destination (number of data points)")
	fs.IntVar(&c.incomingCap, "incoming-queue-cap", 32768, "In-flight incoming message queue capacity (number of data point batches [100 points max per batch])")
	fs.BoolVar(&c.consoleOut, "console-out", false, "Dump output to console (every line is also printed to stdout)")
	fs.StringVar(&dests, "destinations", "", "Comma-delimited list of host:port[:instance] destinations ([v6addr]:port[:instance] for IPv6)")
	fs.IntVar(&c.metricsFlush, "metrics-flush", 0, "Graphite flush interval for runtime metrics in seconds (0 is disabled)")
	fs.StringVar(&dist, "distribution", "broadcast", "Destination distribution methods: broadcast, hash-route")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 10*time.Second, "On SIGTERM/SIGINT, time allowed to deliver what was already received")
	fs.IntVar(&c.maxLine, "max-line-length", 16384, "Longest accepted metric line in bytes; longer lines are dropped and counted")
	fs.StringVar(&level, "validation", "carbon", "Line validation: carbon (what carbon accepts), strict, or off")
	fs.DurationVar(&c.reconnectMax, "reconnect-max", 10*time.Second, "Longest wait between reconnect attempts (backoff starts at 250ms)")
	fs.IntVar(&c.deadAfter, "dead-after", 3, "Failed reconnects before a hash-route destination's share is re-routed to the others")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 30*time.Second, "A destination that accepts no data for this long is reconnected")
	fs.BoolVar(&c.test, "test", false, "Test mode: read metric names or lines on stdin, print '<metric>\\t<destination(s)>' and exit; connects nowhere")
	fs.StringVar(&c.logLevel, "log-level", "info", "Log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "Log format: text or json")
	if err := daemon.ParseFlags(fs, "POLYMUR", args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	var err error
	if c.mode, err = pool.ParseMode(dist); err != nil {
		return nil, fmt.Errorf("-distribution: %w", err)
	}
	if c.level, err = batch.ParseLevel(level); err != nil {
		return nil, fmt.Errorf("-validation: %w", err)
	}
	if c.destinations, err = pool.ParseDestinations(dests); err != nil {
		return nil, fmt.Errorf("-destinations: %w", err)
	}
	for _, chk := range []struct {
		name string
		ok   bool
	}{
		{"-outgoing-queue-cap must be at least 1", c.outgoingCap >= 1},
		{"-incoming-queue-cap must be at least 1", c.incomingCap >= 1},
		{"-metrics-flush must be 0 or more seconds", c.metricsFlush >= 0},
		{"-drain-timeout must be positive", c.drainTimeout > 0},
		{"-max-line-length must be from 16 to 16777216", c.maxLine >= 16 && c.maxLine <= 1<<24},
		{"-reconnect-max must be at least 250ms", c.reconnectMax >= 250*time.Millisecond},
		{"-dead-after must be at least 1", c.deadAfter >= 1},
		{"-write-timeout must be positive", c.writeTimeout > 0},
		{"-listen-addr must not be empty", c.listenAddr != "" || c.test},
	} {
		if !chk.ok {
			return nil, fmt.Errorf("%s", chk.name)
		}
	}
	return &c, nil
}

func (c *config) poolConfig() pool.Config {
	return pool.Config{
		Mode:         c.mode,
		Destinations: c.destinations,
		QueueCap:     c.outgoingCap,
		IncomingCap:  c.incomingCap,
		DrainTimeout: c.drainTimeout,
		ReconnectMax: c.reconnectMax,
		DeadAfter:    c.deadAfter,
		WriteTimeout: c.writeTimeout,
	}
}

// testMode prints where each metric read from in would go, like
// carbon-c-relay -t. It binds and dials nothing.
func testMode(c *config, in io.Reader, out io.Writer) error {
	p, err := pool.New(c.poolConfig())
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), c.maxLine+1)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		dests := p.Route(fields[0])
		if len(dests) == 0 {
			return fmt.Errorf("no destinations configured (-destinations)")
		}
		fmt.Fprintf(w, "%s\t%s\n", fields[0], strings.Join(dests, ","))
	}
	return sc.Err()
}

// selfMetrics gathers what -metrics-flush sends, with the original's names
// (runtime.*, rate, incoming-queue.*, outgoing-queue.<dest>.*) plus the
// pipeline counters.
func selfMetrics(p *pool.Pool, rate *runstats.Rate, rejected func() map[string]uint64) func() []runstats.Metric {
	return func() []runstats.Metric {
		var ms []runstats.Metric
		for k, v := range runstats.MemFields() {
			ms = append(ms, runstats.Int("runtime."+k, v))
		}
		ms = append(ms, runstats.Float("rate", rate.Last()))
		s := p.Stats()
		ms = append(ms,
			runstats.Int("incoming-queue.current-size", uint64(s.IncomingDepth)),
			runstats.Int("incoming-queue.limit", uint64(s.IncomingCap)),
			runstats.Int("received", s.Received),
			runstats.Int("sent", s.Sent),
			runstats.Int("retried", s.Retried))
		for reason, n := range s.Dropped {
			ms = append(ms, runstats.Int("dropped."+reason, n))
		}
		for reason, n := range rejected() {
			ms = append(ms, runstats.Int("rejected."+reason, n))
		}
		for _, d := range s.Destinations {
			name := "outgoing-queue." + runstats.Sanitize(d.Name)
			ms = append(ms,
				runstats.Int(name+".current-size", uint64(d.QueueDepth)),
				runstats.Int(name+".limit", uint64(d.QueueCap)),
				runstats.Int(name+".sent", d.Sent),
				runstats.Int(name+".dropped", d.Dropped))
		}
		return ms
	}
}

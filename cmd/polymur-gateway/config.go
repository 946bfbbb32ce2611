package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/polymur/polymur/consul"
	"github.com/polymur/polymur/internal/daemon"
)

// config is polymur-gateway's parsed and validated command line.
type config struct {
	daemon.RelayFlags
	listenAddr, httpPort, httpsPort string
	cert, key                       string
	devMode, keyPrefix              bool
	keysPath                        string
	keyRefresh                      time.Duration
	maxBody, maxDecoded, maxBuffer  int64
	queueWait                       time.Duration
}

const usageHeader = `polymur-gateway: HTTPS ingest for polymur-proxy batches.

Accepts gzip batches of Graphite lines on POST /ingest from polymur-proxy
instances whose X-Polymur-Key is registered in Consul KV (%s<name>),
and distributes them like polymur: broadcast or carbon_ch hash-route. Consul
is reached through the client's environment (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
...). Every flag can also be set through the environment variable shown in
brackets; the command line wins.

Flags:
`

func parseConfig(args []string, stdout, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("polymur-gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, usageHeader, consul.DefaultPrefix)
		fs.PrintDefaults()
	}
	var c config
	c.Register(fs, "POLYMUR_GW")
	fs.StringVar(&c.listenAddr, "listen-addr", "0.0.0.0", "Polymur-gateway listen address (host only; ports below)")
	fs.StringVar(&c.httpPort, "listen-http-port", "80", "Polymur-gateway listen port (http); 'off' disables plain HTTP")
	fs.StringVar(&c.httpsPort, "listen-https-port", "443", "Polymur-gateway listen port (https); used when -cert and -key are set")
	fs.StringVar(&c.cert, "cert", "", "TLS Certificate (PEM file)")
	fs.StringVar(&c.key, "key", "", "TLS Key (PEM file; not an API key)")
	fs.BoolVar(&c.devMode, "dev-mode", false, "Dev mode: disables Consul API key store; uses '123' (name 'dev')")
	fs.BoolVar(&c.keyPrefix, "key-prefix", false, "If enabled, prepends all metrics with the origin polymur-proxy API key's name")
	fs.StringVar(&c.keysPath, "keys-path", consul.DefaultPrefix, "Consul KV folder holding the API keys")
	fs.DurationVar(&c.keyRefresh, "key-refresh", 30*time.Second, "Longest time between API key syncs (changes arrive sooner through Consul blocking queries)")
	fs.Int64Var(&c.maxBody, "max-body-bytes", 16<<20, "Largest accepted compressed batch (413 above)")
	fs.Int64Var(&c.maxDecoded, "max-decoded-bytes", 64<<20, "Largest accepted decompressed batch (413 above; stops gzip bombs)")
	fs.Int64Var(&c.maxBuffer, "max-buffered-bytes", 128<<20, "Bound of the decoded lines held in memory (requests being read plus batches in the pipeline); beyond it requests get 503 and proxies retry. Also sets the Go memory limit (2x this + 128 MiB) unless GOMEMLIMIT is set")
	fs.DurationVar(&c.queueWait, "queue-wait", 2*time.Second, "How long a batch may wait for room in the pipeline before the gateway answers 503")
	version := daemon.VersionFlag(fs)
	if err := daemon.ParseFlags(fs, "POLYMUR_GW", args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	if *version {
		fmt.Fprintln(stdout, daemon.VersionLine("polymur-gateway"))
		return nil, daemon.ErrVersion
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	tls := c.cert != "" && c.key != ""
	if err := daemon.Require(
		daemon.Rule{Msg: "-cert and -key go together", OK: (c.cert == "") == (c.key == "")},
		daemon.Rule{Msg: "-listen-http-port is 'off' and no -cert/-key: nothing to listen on", OK: c.httpPort != "off" || tls},
		daemon.Rule{Msg: "-key-refresh must be at least 1s", OK: c.keyRefresh >= time.Second},
		daemon.Rule{Msg: "-max-body-bytes must be positive", OK: c.maxBody > 0},
		daemon.Rule{Msg: "-max-decoded-bytes must be positive", OK: c.maxDecoded > 0},
		daemon.Rule{Msg: "-queue-wait must be positive", OK: c.queueWait > 0},
		daemon.Rule{Msg: "-max-buffered-bytes must be at least -max-decoded-bytes (a request must fit)", OK: c.maxBuffer >= c.maxDecoded},
	); err != nil {
		return nil, err
	}
	return &c, nil
}

// httpAddr and httpsAddr are the listener addresses ("" when off).
func (c *config) httpAddr() string {
	if c.httpPort == "off" {
		return ""
	}
	return net.JoinHostPort(c.listenAddr, c.httpPort)
}

func (c *config) httpsAddr() string {
	if c.cert == "" {
		return ""
	}
	return net.JoinHostPort(c.listenAddr, c.httpsPort)
}

package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/decode"
	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/route"
	"github.com/polymur/polymur/statsd"
)

// config is polymur's parsed and validated command line.
type config struct {
	daemon.RelayFlags
	clients     daemon.ClientFlags
	listenAddr  string
	listenGiven bool // -listen-addr (or its variable) was set: it replaces -config's listen statements
	pickleAddr  string
	pickleMax   int
	udpAddr     string
	udpBuffer   int
	zipAddrs    map[string]*string // transport → -gzip-listen-addr, -lz4-…, -snappy-…
	tlsAddr     string
	tlsCert     string
	tlsKey      string
	tlsClientCA string
	tlsTrans    string
	unixPath    string
	unixModeS   string
	unixMode    os.FileMode
	test        bool
	checkConfig bool
	version     *bool
	mode        string
	statsd      statsd.Settings
	statsdDests []dest.Destination
}

const usageHeader = `polymur: a Graphite carbon-relay replacement.

Reads Graphite plaintext lines ("name value timestamp") on -listen-addr and
broadcasts them to every destination or hash-routes each to the destination
carbon's consistent-hashing ring picks. Every flag can also be set through
the environment variable shown in brackets; the command line wins.

With -mode statsd (or -statsd-config proxyConfig.js) it is a statsd proxy
instead: statsd lines over UDP on -statsd-listen, each sent to the statsd
backend that owns its name on a consistent-hash ring, backends health-checked
on their admin port; the -statsd-* flags apply and -listen-addr,
-destinations and -distribution do not.

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
	c.Register(fs, "POLYMUR")
	fs.StringVar(&c.listenAddr, "listen-addr", "0.0.0.0:2003", "Polymur listen address")
	fs.StringVar(&c.pickleAddr, "pickle-addr", "", "Carbon pickle listener address (what carbon-relay sends with its default DESTINATION_PROTOCOL = pickle, usually :2004); frames are decoded into lines and validated like plaintext; off when empty")
	fs.IntVar(&c.pickleMax, "pickle-max-frame", decode.DefaultMaxFrame, "Largest pickle frame accepted, in bytes; a larger one is counted (pickle_frame_too_large) and closes its connection")
	fs.StringVar(&c.udpAddr, "udp-listen-addr", "", "Graphite plaintext over UDP (carbon's ENABLE_UDP_LISTENER, usually :2003): a datagram may hold many lines, each validated like TCP's; off when empty")
	fs.IntVar(&c.udpBuffer, "udp-read-buffer", 8<<20, "Receive buffer of the UDP socket in bytes (the kernel caps it at net.core.rmem_max); datagrams the kernel drops when it is full are counted (kernel_drops)")
	c.zipAddrs = map[string]*string{}
	for _, tr := range []string{decode.Gzip, decode.LZ4, decode.Snappy} {
		c.zipAddrs[tr] = fs.String(tr+"-listen-addr", "", "Graphite plaintext compressed with "+tr+" on this address, as carbon-c-relay's 'transport "+tr+"' sends it (one gzip stream; an LZ4 frame per flush; a raw snappy block per flush); off when empty")
	}
	fs.StringVar(&c.tlsAddr, "tls-listen-addr", "", "Graphite plaintext over TLS (1.2 or later) on this address (carbon-c-relay's 'listen … transport plain ssl'); needs -tls-cert and -tls-key, re-read on SIGHUP; off when empty")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "Certificate (PEM) of -tls-listen-addr")
	fs.StringVar(&c.tlsKey, "tls-key", "", "Key (PEM) of -tls-cert")
	fs.StringVar(&c.tlsTrans, "tls-transport", "plain", "Compression inside the TLS of -tls-listen-addr: plain, gzip, lz4 or snappy (carbon-c-relay's 'transport lz4 ssl')")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "mTLS: clients of -tls-listen-addr must present a certificate that chains to a CA in this PEM file")
	fs.StringVar(&c.unixPath, "unix-listen-path", "", "Graphite plaintext on a unix stream socket at this path (carbon-c-relay's 'listen … proto unix'); a stale socket file is replaced; off when empty")
	fs.StringVar(&c.unixModeS, "unix-socket-mode", "0660", "File mode of the -unix-listen-path socket (octal): who may connect")
	c.clients.Register(fs)
	c.version = daemon.VersionFlag(fs)
	fs.StringVar(&c.mode, "mode", "graphite", "graphite (carbon relay) or statsd (statsd proxy; see -statsd-*)")
	c.statsd.Register(fs)
	fs.BoolVar(&c.test, "test", false, "Test mode: read metric names or lines on stdin, print '<metric>\\t<destination(s)>' (with -config: '<metric>\\t<as sent>\\t<send|blackhole|unrouted|invalid>\\t<cluster>\\t<host:port>' per delivery) and exit; connects nowhere")
	fs.BoolVar(&c.checkConfig, "check-config", false, "Parse and check -config, print it normalised and exit (1 on an error, naming file:line:col)")
	if err := daemon.ParseFlags(fs, "POLYMUR", args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { c.listenGiven = c.listenGiven || f.Name == "listen-addr" })
	c.listenGiven = c.listenGiven || os.Getenv(daemon.EnvName("POLYMUR", "listen-addr")) != ""
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	if *c.version {
		return &c, nil
	}
	c.NoDelivery = c.test || c.checkConfig
	if err := c.Check(); err != nil {
		return nil, err
	}
	if m, err := strconv.ParseUint(c.unixModeS, 8, 32); err != nil || m > 0o777 {
		return nil, fmt.Errorf("-unix-socket-mode: %q is not an octal file mode such as 0660", c.unixModeS)
	} else {
		c.unixMode = os.FileMode(m)
	}
	if !decode.ValidTransport(c.tlsTrans) {
		return nil, fmt.Errorf("-tls-transport: %q is not plain, gzip, lz4 or snappy", c.tlsTrans)
	}
	if c.tlsAddr != "" && (c.tlsCert == "" || c.tlsKey == "") {
		return nil, fmt.Errorf("-tls-listen-addr needs -tls-cert and -tls-key")
	}
	if c.tlsAddr == "" && (c.tlsCert != "" || c.tlsClientCA != "") {
		return nil, fmt.Errorf("-tls-cert and -tls-client-ca are for -tls-listen-addr, which is not set")
	}
	if c.udpBuffer < 4096 || c.udpBuffer > 1<<30 {
		return nil, fmt.Errorf("-udp-read-buffer must be from 4096 to 1073741824 bytes")
	}
	if c.pickleMax < 64 || c.pickleMax > 1<<30 {
		return nil, fmt.Errorf("-pickle-max-frame must be from 64 to 1073741824 bytes")
	}
	if err := c.clients.Check(); err != nil {
		return nil, err
	}
	if c.ConfigFile != "" && !c.NoDelivery && (c.mode == "statsd" || c.statsd.ConfigFile != "") {
		return nil, fmt.Errorf("-config is for graphite mode, not statsd mode")
	}
	if c.checkConfig && c.ConfigFile == "" {
		return nil, fmt.Errorf("-check-config needs -config")
	}
	switch c.mode {
	case "graphite":
		if c.statsd.ConfigFile != "" {
			c.mode = "statsd"
		}
	case "statsd":
	default:
		return nil, fmt.Errorf("-mode: unknown mode %q (want graphite or statsd)", c.mode)
	}
	if c.mode == "statsd" {
		if c.statsd.ConfigFile != "" {
			given := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
			if err := c.statsd.LoadProxyJS(c.statsd.ConfigFile, given); err != nil {
				return nil, fmt.Errorf("-statsd-config: %w", err)
			}
		}
		if err := c.statsd.Check(); err != nil {
			return nil, err
		}
		var err error
		if c.statsdDests, err = dest.ParseDestinations(c.statsd.Nodes); err != nil {
			return nil, fmt.Errorf("-statsd-nodes: %w", err)
		}
		return &c, nil
	}
	if c.listenAddr == "" && !c.test {
		return nil, fmt.Errorf("-listen-addr must not be empty")
	}
	return &c, nil
}

// testMode prints where each metric read from in would go, like
// carbon-c-relay -t. It binds and dials nothing.
func testMode(c *config, in io.Reader, out io.Writer) error {
	if c.Table != nil {
		return routeTestMode(c, in, out)
	}
	pc := c.DestConfig()
	pc.SpoolDir, pc.SpoolAlways = "", false // -test touches no spool
	p, err := dest.New(pc)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), c.MaxLine+1)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		dests := p.Route(c.normalized(fields[0]))
		if len(dests) == 0 {
			return fmt.Errorf("no destinations configured (-destinations)")
		}
		fmt.Fprintf(w, "%s\t%s\n", fields[0], strings.Join(dests, ","))
	}
	return sc.Err()
}

// routeTestMode is -config FILE -test: every delivery of every metric read,
// as carbon-c-relay -t decides it. It binds and dials nothing.
func routeTestMode(c *config, in io.Reader, out io.Writer) error {
	w := bufio.NewWriter(out)
	defer w.Flush()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), c.MaxLine+1)
	var ds []route.Delivery
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		ds = c.Table.Route(ds[:0], c.normalized(fields[0]), strings.Join(fields[1:], " "), nil)
		route.WriteTest(w, fields[0], ds)
	}
	return sc.Err()
}

// normalized is the name as -tag-normalize sends it (-test shows where
// polymur would really send a line).
func (c *config) normalized(name string) string {
	if !c.TagNormalize || !batch.IsTagged([]byte(name)) {
		return name
	}
	if n, ok := batch.NormalizeTags(nil, []byte(name)); ok {
		return string(n)
	}
	return name
}

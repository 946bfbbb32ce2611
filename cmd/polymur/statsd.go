package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/api"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/listener"
	"github.com/polymur/polymur/pool"
)

// statsdFlags are the settings of statsd mode (-mode statsd).
type statsdFlags struct {
	configFile    string
	listen        string
	tcp           bool
	nodes         string
	mgmtAddr      string
	mgmtWrite     bool
	checkInterval time.Duration
	maxDatagram   int
	flush         time.Duration
	debug         bool
}

func (s *statsdFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.configFile, "statsd-config", "", "statsd mode: a statsd proxy.js configuration file (nodes, host, port, mgmt_port, mgmt_address, checkInterval, server); implies -mode statsd; flags given on the command line win")
	fs.StringVar(&s.listen, "statsd-listen", "0.0.0.0:8125", "statsd mode: UDP address for statsd lines")
	fs.BoolVar(&s.tcp, "statsd-tcp", false, "statsd mode: also accept newline-separated statsd lines over TCP on the same address")
	fs.StringVar(&s.nodes, "statsd-nodes", "", "statsd mode: comma-separated statsd backends host:port[:adminport] (health-checked on adminport when given)")
	fs.StringVar(&s.mgmtAddr, "statsd-mgmt-addr", "localhost:8126", "statsd mode: management interface (ping, stats, memstats, health, status, route, getdest, ...); it has no authentication, so it listens on loopback unless told otherwise")
	fs.BoolVar(&s.mgmtWrite, "statsd-mgmt-write", false, "statsd mode: allow putdest, deldest and 'health up|down' on the management interface (anyone who can connect could redirect the stream)")
	fs.DurationVar(&s.checkInterval, "statsd-check-interval", 10*time.Second, "statsd mode: how often each backend's admin port is asked 'health'")
	fs.IntVar(&s.maxDatagram, "statsd-max-datagram", 1432, "statsd mode: largest datagram sent to a backend in bytes (1432 fits a 1500-byte MTU); lines are never split")
	fs.DurationVar(&s.flush, "statsd-flush", 5*time.Millisecond, "statsd mode: how often a busy listener collects what arrived and sends it on (about the longest a line waits)")
	fs.BoolVar(&s.debug, "d", false, "statsd mode: log routing decisions (rate-limited: one line per second)")
}

// proxyConfig is what statsd's proxy.js reads (exampleProxyConfig.js).
type proxyConfig struct {
	Nodes []struct {
		Host      string  `json:"host"`
		Port      flexInt `json:"port"`
		AdminPort flexInt `json:"adminport"`
	} `json:"nodes"`
	Host          string  `json:"host"`
	Port          flexInt `json:"port"`
	MgmtPort      flexInt `json:"mgmt_port"`
	MgmtAddress   string  `json:"mgmt_address"`
	CheckInterval flexInt `json:"checkInterval"`
	Server        string  `json:"server"`
	AddressIPv6   bool    `json:"address_ipv6"`
}

// flexInt takes a JSON number or a numeric string ("8125"), as JavaScript does.
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%s is not a whole number", b)
	}
	*f = flexInt(n)
	return nil
}

// jsObjectToJSON turns the JavaScript object literal that proxy.js evaluates
// (comments, unquoted keys, single quotes, trailing commas) into JSON.
func jsObjectToJSON(src []byte) []byte {
	var out bytes.Buffer
	n := len(src)
	lastSignificant := byte(0)
	for i := 0; i < n; i++ {
		c := src[i]
		switch {
		case c == '/' && i+1 < n && src[i+1] == '/':
			for i < n && src[i] != '\n' {
				i++
			}
			out.WriteByte('\n')
		case c == '/' && i+1 < n && src[i+1] == '*':
			i += 2
			for i+1 < n && !(src[i] == '*' && src[i+1] == '/') {
				i++
			}
			i++
			out.WriteByte(' ')
		case c == '"' || c == '\'':
			out.WriteByte('"')
			for i++; i < n && src[i] != c; i++ {
				switch {
				case src[i] == '\\' && i+1 < n:
					if src[i+1] == '\'' {
						out.WriteByte('\'')
					} else {
						out.Write(src[i : i+2])
					}
					i++
				case src[i] == '"':
					out.WriteString(`\"`)
				default:
					out.WriteByte(src[i])
				}
			}
			out.WriteByte('"')
			lastSignificant = '"'
		case c == ',':
			// Drop a trailing comma: look ahead past space and comments.
			j := i + 1
			for j < n {
				if isJSSpace(src[j]) {
					j++
				} else if src[j] == '/' && j+1 < n && src[j+1] == '/' {
					for j < n && src[j] != '\n' {
						j++
					}
				} else if src[j] == '/' && j+1 < n && src[j+1] == '*' {
					j += 2
					for j+1 < n && !(src[j] == '*' && src[j+1] == '/') {
						j++
					}
					j += 2
				} else {
					break
				}
			}
			if j < n && (src[j] == '}' || src[j] == ']') {
				continue
			}
			out.WriteByte(c)
			lastSignificant = c
		case isIdentStart(c) && (lastSignificant == '{' || lastSignificant == ','):
			j := i
			for j < n && isIdentPart(src[j]) {
				j++
			}
			k := j
			for k < n && isJSSpace(src[k]) {
				k++
			}
			word := string(src[i:j])
			if k < n && src[k] == ':' {
				out.WriteString(strconv.Quote(word))
			} else {
				out.WriteString(word)
			}
			i = j - 1
			lastSignificant = 'a'
		default:
			out.WriteByte(c)
			if !isJSSpace(c) {
				lastSignificant = c
			}
		}
	}
	return out.Bytes()
}

func isJSSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}
func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// loadProxyConfig reads a proxy.js configuration and fills the statsd flags
// that were not given on the command line.
func (s *statsdFlags) loadProxyConfig(path string, given map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var pc proxyConfig
	dec := json.NewDecoder(bytes.NewReader(jsObjectToJSON(data)))
	if err := dec.Decode(&pc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(pc.Nodes) == 0 {
		return fmt.Errorf("%s: no nodes", path)
	}
	set := func(flag string, apply func()) {
		if !given[flag] {
			apply()
		}
	}
	set("statsd-nodes", func() {
		var specs []string
		for _, n := range pc.Nodes {
			host := n.Host
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			spec := host + ":" + strconv.Itoa(int(n.Port))
			if n.AdminPort > 0 {
				spec += ":" + strconv.Itoa(int(n.AdminPort))
			}
			specs = append(specs, spec)
		}
		s.nodes = strings.Join(specs, ",")
	})
	host := pc.Host
	if host == "" {
		host = "0.0.0.0"
		if pc.AddressIPv6 {
			host = "::"
		}
	}
	port := int(pc.Port)
	if port == 0 {
		port = 8125
	}
	set("statsd-listen", func() { s.listen = net.JoinHostPort(host, strconv.Itoa(port)) })
	mgmtHost, mgmtPort := pc.MgmtAddress, int(pc.MgmtPort)
	if mgmtHost == "" {
		mgmtHost = "localhost" // proxy.js binds 0.0.0.0; an open management port lets anyone redirect the stream
	}
	if mgmtPort == 0 {
		mgmtPort = 8126
	}
	set("statsd-mgmt-addr", func() { s.mgmtAddr = net.JoinHostPort(mgmtHost, strconv.Itoa(mgmtPort)) })
	if pc.CheckInterval > 0 {
		set("statsd-check-interval", func() { s.checkInterval = time.Duration(pc.CheckInterval) * time.Millisecond })
	}
	if strings.HasSuffix(strings.TrimSuffix(pc.Server, ".js"), "/tcp") {
		set("statsd-tcp", func() { s.tcp = true })
	}
	return nil
}

// check validates the statsd settings and turns the nodes into pool
// destinations: host:port, with the admin port as the "instance".
func (s *statsdFlags) check() ([]pool.Destination, error) {
	if s.nodes == "" {
		return nil, errors.New("-statsd-nodes (or -statsd-config) is required in statsd mode")
	}
	dests, err := pool.ParseDestinations(s.nodes)
	if err != nil {
		return nil, fmt.Errorf("-statsd-nodes: %w", err)
	}
	for _, d := range dests {
		if d.HasInstance {
			if p, err := strconv.Atoi(d.Instance); err != nil || p < 1 || p > 65535 {
				return nil, fmt.Errorf("-statsd-nodes: %s: the admin port must be a number from 1 to 65535", d.Name)
			}
		}
	}
	return dests, daemon.Require(
		daemon.Rule{Msg: "-statsd-check-interval must be at least 10ms", OK: s.checkInterval >= 10*time.Millisecond},
		daemon.Rule{Msg: "-statsd-max-datagram must be from 64 to 65507", OK: s.maxDatagram >= 64 && s.maxDatagram <= 65507},
		daemon.Rule{Msg: "-statsd-flush must be from 100µs to 1s", OK: s.flush >= 100*time.Microsecond && s.flush <= time.Second},
		daemon.Rule{Msg: "-statsd-listen must not be empty", OK: s.listen != ""},
	)
}

// health is the state of one backend's admin-port checks.
type health struct {
	mu      sync.Mutex
	status  map[string]bool // name → healthy (absent: not checked yet)
	fails   map[string]uint64
	checks  atomic.Uint64
	downFor atomic.Bool // "health down" from an operator: answer down to our own checkers
}

// checkBackend asks a statsd admin port "health" and wants "up" back, as
// proxy.js does. The check is bounded by timeout.
func checkBackend(host, adminPort string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, adminPort), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "health\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if n == 0 {
		if err == nil {
			err = io.EOF
		}
		return err
	}
	if !bytes.Contains(buf[:n], []byte("up")) {
		return fmt.Errorf("answered %q", strings.TrimSpace(string(buf[:n])))
	}
	return nil
}

// healthLoop checks every backend with an admin port each interval (and
// once at once): a failed check takes it out of the ring (pool.Hold), a
// good one puts it back. Transitions are logged and counted.
func (h *health) loop(ctx context.Context, p *pool.Pool, interval time.Duration, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for name := range p.Destinations().Registered {
			d, err := pool.ParseDestination(name)
			if err != nil || !d.HasInstance {
				continue // no admin port: not checked
			}
			wg.Go(func() {
				err := checkBackend(d.Host, d.Instance, min(interval, 5*time.Second))
				h.checks.Add(1)
				h.mu.Lock()
				was, seen := h.status[name]
				h.status[name] = err == nil
				if err != nil {
					h.fails[name]++
				}
				h.mu.Unlock()
				switch {
				case err != nil && (was || !seen):
					log.Warn("statsd backend unhealthy: out of the ring", "backend", name, "err", err)
					p.Hold(name, "health check: "+err.Error())
				case err == nil && seen && !was:
					log.Info("statsd backend healthy again: back in the ring", "backend", name)
					p.Unhold(name)
				}
			})
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (h *health) snapshot() map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]any{}
	for name, ok := range h.status {
		out[name] = map[string]any{"healthy": ok, "failed_checks": h.fails[name]}
	}
	return out
}

// routeLogger logs, at most once a second, where the first line of a batch
// goes (-d).
type routeLogger struct {
	last atomic.Int64
	p    *pool.Pool
	log  *slog.Logger
}

func (r *routeLogger) wrap(send listener.SendFunc) listener.SendFunc {
	return func(ctx context.Context, b *batch.Batch) error {
		now := time.Now().UnixNano()
		if last := r.last.Load(); b.Len() > 0 && now-last >= int64(time.Second) && r.last.CompareAndSwap(last, now) {
			name := string(b.Name(0))
			r.log.Info("route", "name", name, "backend", strings.Join(r.p.Route(name), ","), "batch_lines", b.Len())
		}
		return send(ctx, b)
	}
}

// runStatsd is polymur in statsd mode: statsd lines over UDP (and TCP) in,
// each line to the backend that owns its name on a consistent-hash ring
// keyed on host:port, coalesced into datagrams; backends health-checked on
// their admin port.
func runStatsd(ctx context.Context, c *config, stdout io.Writer, log *slog.Logger, ready func(map[string]string)) error {
	s := &c.statsd
	var dg pool.DatagramStats
	start := time.Now()
	h := &health{status: map[string]bool{}, fails: map[string]uint64{}}
	c.Mode, c.Dests, c.Level, c.RingByAddr = pool.HashRoute, c.statsdDests, batch.LevelStatsd, true
	c.Dial = pool.DatagramDial(s.maxDatagram, &dg)
	c.APIAddr = s.mgmtAddr
	c.APIReadOnly = c.APIReadOnly || !s.mgmtWrite
	c.ReadOnlyHint = "start with -statsd-mgmt-write to allow them"
	c.ExtraCommands = map[string]api.Handler{
		"health": func(arg string) string {
			if arg != "" && c.APIReadOnly {
				return "Error: health changes are disabled on this port (" + c.ReadOnlyHint + ")"
			}
			switch strings.ToLower(arg) {
			case "up":
				h.downFor.Store(false)
			case "down":
				h.downFor.Store(true)
			}
			if h.downFor.Load() {
				return "health: down"
			}
			return "health: up"
		},
	}
	var udp *listener.UDP
	var tcp *listener.TCP
	intake := daemon.Intake{
		Accepted: func() uint64 {
			n := udp.Accepted.Load()
			if tcp != nil {
				n += tcp.Accepted.Load()
			}
			return n
		},
		Rejected: func() map[string]uint64 {
			m := udp.Rejections()
			if tcp != nil {
				for k, v := range tcp.Rejections() {
					m[k] += v
				}
			}
			return m
		},
		Stats: func() any {
			if tcp != nil {
				return map[string]any{"udp": udp.Stats(), "tcp": tcp.Stats()}
			}
			return udp.Stats()
		},
	}
	var relay *daemon.Relay
	var err error
	c.ExtraCommands["status"] = func(string) string {
		var live []string
		for _, d := range relay.Pool.Stats().Destinations {
			if d.State != "dead" {
				live = append(live, d.Name)
			}
		}
		sort.Strings(live)
		return fmt.Sprintf("uptime: %d\nnodes: %s", int64(time.Since(start).Seconds()), strings.Join(live, " "))
	}
	relay, err = daemon.NewRelay("polymur", &c.RelayFlags, stdout, log, intake, func() map[string]any {
		return map[string]any{"statsd": map[string]any{
			"packets_received": udp.Packets(), "datagrams_sent": dg.Datagrams.Load(), "lines_sent": dg.Lines.Load(),
			"send_errors": dg.SendErrors.Load(), "health_checks": h.checks.Load(), "backends": h.snapshot(),
			"uptime_seconds": int64(time.Since(start).Seconds()),
		}}
	})
	if err != nil {
		return err
	}
	// The single UDP reader places its batches itself (no hand-off); TCP
	// connections, many goroutines, go through the incoming queue.
	direct, stopDirect := relay.Pool.Direct()
	defer stopDirect()
	send := listener.SendFunc(direct)
	if s.debug {
		send = (&routeLogger{p: relay.Pool, log: log}).wrap(send)
	}
	udp, err = listener.NewUDP(listener.UDPConfig{Addr: s.listen, Level: batch.LevelStatsd, MaxLine: c.MaxLine,
		FlushInterval: s.flush, Send: send, Logger: log})
	if err != nil {
		relay.Close()
		return fmt.Errorf("-statsd-listen: %w", err)
	}
	relay.Addrs["statsd"] = udp.Addr().String()
	producers := []func(context.Context) error{udp.Run}
	if s.tcp {
		tcpSend := listener.SendFunc(relay.Pool.Send)
		if s.debug {
			tcpSend = (&routeLogger{p: relay.Pool, log: log}).wrap(tcpSend)
		}
		tcp, err = listener.NewTCP(listener.TCPConfig{Addr: s.listen, Level: batch.LevelStatsd, MaxLine: c.MaxLine,
			DrainTimeout: c.DrainTimeout, Send: tcpSend, Logger: log})
		if err != nil {
			udp.Close()
			relay.Close()
			return fmt.Errorf("-statsd-listen (TCP): %w", err)
		}
		relay.Addrs["statsd-tcp"] = tcp.Addr().String()
		producers = append(producers, tcp.Run)
	}
	relay.AddMetrics(admin.CollectFunc(func(ch chan<- prometheus.Metric) {
		daemon.Counter(ch, "polymur_statsd_packets_received_total", "statsd datagrams received.", float64(udp.Packets()))
		daemon.Counter(ch, "polymur_statsd_datagrams_sent_total", "Datagrams sent to statsd backends.", float64(dg.Datagrams.Load()))
		daemon.Counter(ch, "polymur_statsd_lines_sent_total", "statsd lines sent to backends.", float64(dg.Lines.Load()))
		daemon.Counter(ch, "polymur_statsd_send_errors_total", "Datagram sends refused (backend port closed); the lines are sent again.", float64(dg.SendErrors.Load()))
		daemon.Counter(ch, "polymur_statsd_health_checks_total", "Health checks of statsd backends.", float64(h.checks.Load()))
	}))
	relay.Go(func(ctx context.Context) error { return h.loop(ctx, relay.Pool, s.checkInterval, log) })
	log.Info("::: Polymur (statsd mode) :::", "version", daemon.Version(), "backends", len(c.Dests),
		"listen", udp.Addr().String(), "tcp", s.tcp, "mgmt", relay.Addrs["api"], "check_interval", s.checkInterval,
		"max_datagram", s.maxDatagram)
	if ready != nil {
		ready(relay.Addrs)
	}
	return relay.Run(ctx, producers...)
}

// Command polymur is a Graphite carbon-relay replacement: plaintext TCP in,
// broadcast or carbon_ch hash-route out, with a runtime control API.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/decode"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/listener"
)

func main() {
	ctx, stop := daemon.SignalContext()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, nil)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "polymur:", err)
		os.Exit(1)
	}
}

// run is polymur's whole life: parse, bind, serve until ctx ends, drain.
// ready, when not nil, receives the bound addresses by role (for tests).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, ready func(map[string]string)) error {
	c, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	if *c.version {
		_, err := fmt.Fprintln(stdout, daemon.VersionLine("polymur"))
		return err
	}
	if c.checkConfig {
		return c.Table.Format(stdout)
	}
	if c.test {
		return testMode(c, stdin, stdout)
	}
	log, err := daemon.NewLogger(stderr, c.LogLevel, c.LogFormat)
	if err != nil {
		return err
	}
	if c.mode == "statsd" {
		defer daemon.HandleSignals(log)()
		return runStatsd(ctx, c, stdout, log, ready)
	}
	relay, err := daemon.NewRelay("polymur", &c.RelayFlags, stdout, log)
	if err != nil {
		return err
	}
	var certs *listener.Certs
	if c.tlsAddr != "" {
		if certs, err = listener.NewCerts(c.tlsCert, c.tlsKey, log); err != nil {
			relay.Close()
			return fmt.Errorf("-tls-cert: %w", err)
		}
	}
	// SIGHUP re-reads -config and the TLS certificate (without either it
	// is logged and ignored).
	var onHup func()
	if relay.Routed() || certs != nil {
		onHup = func() {
			if certs != nil {
				certs.ReloadAndLog("SIGHUP")
			}
			relay.Reload()
		}
	}
	defer daemon.HandleSignalsReload(log, onHup)()
	tcp := listener.TCPConfig{Addr: c.listenAddr, Level: c.Level, MaxLine: c.MaxLine,
		DrainTimeout: c.DrainTimeout, Send: relay.Dests.Send, Logger: log, TagNormalize: c.TagNormalize,
		IdleTimeout: c.clients.IdleTimeout, MaxConns: c.clients.MaxConns}
	var ins intakes
	defer ins.closeUnlessRun()
	// -config's listen statements replace -listen-addr; given, -listen-addr
	// replaces them.
	if c.Table == nil || len(c.Table.Listeners) == 0 || c.listenGiven {
		lis, err := listener.NewTCP(tcp)
		if err != nil {
			relay.Close()
			return fmt.Errorf("-listen-addr: %w", err)
		}
		ins.add("listen", lis)
		relay.Addrs["listen"] = lis.Addr().String()
	}
	if c.Table != nil && len(c.Table.Listeners) > 0 {
		if c.listenGiven {
			log.Info("-listen-addr is given: the configuration's listen statements are not used", "config", c.ConfigFile, "listen_addr", c.listenAddr)
		} else if err := configListeners(c, tcp, relay, &ins, log); err != nil {
			relay.Close()
			return err
		}
	}
	if c.pickleAddr != "" {
		tcp.Addr, tcp.Pickle, tcp.MaxPickleFrame = c.pickleAddr, true, c.pickleMax
		pl, err := listener.NewTCP(tcp)
		if err != nil {
			relay.Close()
			return fmt.Errorf("-pickle-addr: %w", err)
		}
		ins.add("pickle", pl)
		relay.Addrs["pickle"] = pl.Addr().String()
	}
	for _, tr := range []string{decode.Gzip, decode.LZ4, decode.Snappy} {
		if addr := *c.zipAddrs[tr]; addr != "" {
			zc := tcp
			zc.Addr, zc.Pickle, zc.Transport = addr, false, tr
			zl, err := listener.NewTCP(zc)
			if err != nil {
				relay.Close()
				return fmt.Errorf("-%s-listen-addr: %w", tr, err)
			}
			ins.add(tr, zl)
			relay.Addrs[tr] = zl.Addr().String()
		}
	}
	if certs != nil {
		tc := tcp
		tc.Addr, tc.Pickle, tc.Transport = c.tlsAddr, false, c.tlsTrans
		tc.TLS = &tls.Config{GetCertificate: certs.Get, MinVersion: tls.VersionTLS12}
		if c.tlsClientCA != "" {
			pool, err := daemon.ClientCAs(c.tlsClientCA)
			if err != nil {
				relay.Close()
				return fmt.Errorf("-tls-client-ca: %w", err)
			}
			tc.TLS.ClientCAs, tc.TLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		tl, err := listener.NewTCP(tc)
		if err != nil {
			relay.Close()
			return fmt.Errorf("-tls-listen-addr: %w", err)
		}
		ins.add("tls", tl)
		relay.Addrs["tls"] = tl.Addr().String()
	}
	if c.unixPath != "" {
		uc := tcp
		uc.Unix, uc.UnixMode, uc.Pickle = c.unixPath, c.unixMode, false
		ul, err := listener.NewTCP(uc)
		if err != nil {
			relay.Close()
			return fmt.Errorf("-unix-listen-path: %w", err)
		}
		ins.add("unix", ul)
		relay.Addrs["unix"] = c.unixPath
	}
	var udp *listener.UDP
	if c.udpAddr != "" {
		u, err := listener.NewUDP(listener.UDPConfig{Addr: c.udpAddr, Level: c.Level, MaxLine: c.MaxLine,
			ReadBuffer: c.udpBuffer, Send: relay.Dests.Send, Logger: log, TagNormalize: c.TagNormalize})
		if err != nil {
			relay.Close()
			return fmt.Errorf("-udp-listen-addr: %w", err)
		}
		ins.add("udp", u)
		relay.Addrs["udp"] = u.Addr().String()
		udp = u
	}
	if err := relay.Serve(ins.intake(), nil); err != nil {
		relay.Close()
		return err
	}
	if udp != nil {
		relay.AddMetrics(admin.CollectFunc(func(ch chan<- prometheus.Metric) {
			daemon.Counter(ch, "polymur_udp_kernel_drops_total", "Datagrams the kernel dropped on the UDP listener (its receive buffer was full: raise -udp-read-buffer).", float64(udp.KernelDrops()))
			daemon.Counter(ch, "polymur_udp_datagrams_total", "Datagrams received on the UDP listener.", float64(udp.Packets()))
		}))
	}
	log.Info("::: Polymur :::", "version", daemon.Version(), "revision", daemon.Revision(), "distribution", c.Mode.String(), "destinations", len(c.Dests))
	if ready != nil {
		ready(relay.Addrs)
	}
	return relay.Run(ctx, ins.run()...)
}

// intake is one of polymur's listeners.
type intake interface {
	Run(context.Context) error
	Close() error
	Rejections() map[string]uint64
}

// intakes are polymur's listeners (plaintext, pickle, UDP) as one intake.
type intakes struct {
	names []string
	ls    []intake
	ran   bool
}

func (in *intakes) add(name string, l intake) {
	in.names, in.ls = append(in.names, name), append(in.ls, l)
}

// closeUnlessRun releases the sockets when start-up failed after binding.
func (in *intakes) closeUnlessRun() {
	if !in.ran {
		for _, l := range in.ls {
			l.Close()
		}
	}
}

func (in *intakes) run() []func(context.Context) error {
	in.ran = true
	var out []func(context.Context) error
	for _, l := range in.ls {
		out = append(out, l.Run)
	}
	return out
}

func accepted(l intake) uint64 {
	switch l := l.(type) {
	case *listener.TCP:
		return l.Accepted.Load()
	case *listener.UDP:
		return l.Accepted.Load()
	}
	return 0
}

func stats(l intake) any {
	switch l := l.(type) {
	case *listener.TCP:
		return l.Stats()
	case *listener.UDP:
		return l.Stats()
	}
	return nil
}

func (in *intakes) intake() daemon.Intake {
	if len(in.ls) == 1 {
		l := in.ls[0]
		return daemon.Intake{Accepted: func() uint64 { return accepted(l) }, Rejected: l.Rejections, Stats: func() any { return stats(l) }}
	}
	return daemon.Intake{
		Accepted: func() uint64 {
			var n uint64
			for _, l := range in.ls {
				n += accepted(l)
			}
			return n
		},
		Rejected: func() map[string]uint64 {
			m := map[string]uint64{}
			for _, l := range in.ls {
				for k, v := range l.Rejections() {
					m[k] += v
				}
			}
			return m
		},
		Stats: func() any {
			m := map[string]any{}
			for i, l := range in.ls {
				m[in.names[i]] = stats(l)
			}
			return m
		},
	}
}

// configListeners binds -config's listen statements: each address becomes
// a TCP, UDP or unix listener of its type (linemode or pickle), transport
// and TLS certificate. They are bound at start; a reload does not rebind.
func configListeners(c *config, base listener.TCPConfig, relay *daemon.Relay, ins *intakes, log *slog.Logger) error {
	for li, l := range c.Table.Listeners {
		var tlsCfg *tls.Config
		if l.PEMCert != "" {
			certs, err := listener.NewCerts(l.PEMCert, l.PEMCert, log)
			if err != nil {
				return fmt.Errorf("%s: listen … ssl %s: %w", l.Pos, l.PEMCert, err)
			}
			tlsCfg = &tls.Config{GetCertificate: certs.Get, MinVersion: tls.VersionTLS12}
		}
		for ai, a := range l.Addrs {
			name := fmt.Sprintf("config%d.%d", li+1, ai+1)
			if a.Proto == "udp" {
				u, err := listener.NewUDP(listener.UDPConfig{Addr: a.Addr, Level: c.Level, MaxLine: c.MaxLine,
					ReadBuffer: c.udpBuffer, Send: relay.Dests.Send, Logger: log, TagNormalize: c.TagNormalize})
				if err != nil {
					return fmt.Errorf("%s: listen %s proto udp: %w", l.Pos, a.Addr, err)
				}
				ins.add(name, u)
				relay.Addrs[name] = u.Addr().String()
				continue
			}
			lc := base
			lc.Addr, lc.Pickle, lc.Transport, lc.TLS, lc.MaxPickleFrame = a.Addr, l.Type == "pickle", l.Transport, tlsCfg, c.pickleMax
			if a.Proto == "unix" {
				lc.Unix, lc.UnixMode = a.Addr, c.unixMode
			}
			tl, err := listener.NewTCP(lc)
			if err != nil {
				return fmt.Errorf("%s: listen %s proto %s: %w", l.Pos, a.Addr, a.Proto, err)
			}
			ins.add(name, tl)
			relay.Addrs[name] = tl.Addr().String()
			if _, ok := relay.Addrs["listen"]; !ok && a.Proto == "tcp" && l.Type == "linemode" && tlsCfg == nil && l.Transport == "plain" {
				relay.Addrs["listen"] = tl.Addr().String()
			}
		}
	}
	return nil
}

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/decode"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/listener"
)

// connBatch is the lines of a connection's batch: what is placed, queued
// and released as one. Each batch costs the same to hand on whatever it
// holds, so at hundreds of thousands of lines a second larger ones are
// cheaper (250 against the listener's 100: 5–20% less CPU per line with
// realistic names and 2,000 clients, measured); a trickling connection
// hands on what each read brought anyway, so it adds no latency.
const connBatch = 250

// bindListeners binds every listener the flags and -config ask for, all
// sending to the relay's destination set: plaintext (-listen-addr, or the
// configuration's listen statements), pickle, compressed, TLS, unix and
// UDP. It returns them as one intake, and the TLS certificate that SIGHUP
// re-reads (nil without -tls-listen-addr).
func bindListeners(c *config, relay *daemon.Relay, log *slog.Logger) (*intakes, *listener.Certs, error) {
	ins := &intakes{relay: relay}
	fail := func(err error) (*intakes, *listener.Certs, error) {
		ins.closeUnlessRun()
		return nil, nil, err
	}
	base := listener.TCPConfig{Addr: c.listenAddr, Level: c.Level, MaxLine: c.MaxLine, BatchSize: connBatch,
		DrainTimeout: c.DrainTimeout, Send: relay.Dests.Send, Logger: log, TagNormalize: c.TagNormalize, Rejects: relay.Rejects,
		IdleTimeout: c.clients.IdleTimeout, MaxConns: c.clients.MaxConns, MaxPickleFrame: c.pickleMax,
		Window: c.Window(), NewSend: func() (listener.SendFunc, func()) { s, stop := relay.NewSend(); return s, stop }}
	// -config's listen statements replace -listen-addr; given, -listen-addr
	// replaces them.
	configured := c.Table != nil && len(c.Table.Listeners) > 0
	if !configured || c.listenGiven {
		if err := ins.bindTCP("listen", "-listen-addr", base); err != nil {
			return fail(err)
		}
	}
	if configured && c.listenGiven {
		log.Info("-listen-addr is given: the configuration's listen statements are not used", "config", c.ConfigFile, "listen_addr", c.listenAddr)
	} else if configured {
		if err := configListeners(c, base, ins, log); err != nil {
			return fail(err)
		}
	}
	if c.pickleAddr != "" {
		pc := base
		pc.Addr, pc.Pickle = c.pickleAddr, true
		if err := ins.bindTCP("pickle", "-pickle-addr", pc); err != nil {
			return fail(err)
		}
	}
	for _, tr := range []string{decode.Gzip, decode.LZ4, decode.Snappy} {
		if addr := *c.zipAddrs[tr]; addr != "" {
			zc := base
			zc.Addr, zc.Transport = addr, tr
			if err := ins.bindTCP(tr, "-"+tr+"-listen-addr", zc); err != nil {
				return fail(err)
			}
		}
	}
	var certs *listener.Certs
	if c.tlsAddr != "" {
		var err error
		if certs, err = listener.NewCerts(c.tlsCert, c.tlsKey, log); err != nil {
			return fail(fmt.Errorf("-tls-cert: %w", err))
		}
		tc := base
		tc.Addr, tc.Transport = c.tlsAddr, c.tlsTrans
		tc.TLS = &tls.Config{GetCertificate: certs.Get, MinVersion: tls.VersionTLS12}
		if c.tlsClientCA != "" {
			pool, err := daemon.ClientCAs(c.tlsClientCA)
			if err != nil {
				return fail(fmt.Errorf("-tls-client-ca: %w", err))
			}
			tc.TLS.ClientCAs, tc.TLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		if err := ins.bindTCP("tls", "-tls-listen-addr", tc); err != nil {
			return fail(err)
		}
	}
	if c.unixPath != "" {
		uc := base
		uc.Unix, uc.UnixMode = c.unixPath, c.unixMode
		if err := ins.bindTCP("unix", "-unix-listen-path", uc); err != nil {
			return fail(err)
		}
	}
	if c.udpAddr != "" {
		if err := ins.bindUDP("udp", "-udp-listen-addr", c, c.udpAddr, log); err != nil {
			return fail(err)
		}
	}
	return ins, certs, nil
}

// configListeners binds -config's listen statements: each address becomes
// a TCP, UDP or unix listener of its type (linemode or pickle), transport
// and TLS certificate. They are bound at start; a reload does not rebind.
func configListeners(c *config, base listener.TCPConfig, ins *intakes, log *slog.Logger) error {
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
			name, what := fmt.Sprintf("config%d.%d", li+1, ai+1), fmt.Sprintf("%s: listen %s proto %s", l.Pos, a.Addr, a.Proto)
			if a.Proto == "udp" {
				if err := ins.bindUDP(name, what, c, a.Addr, log); err != nil {
					return err
				}
				continue
			}
			lc := base
			lc.Addr, lc.Pickle, lc.Transport, lc.TLS = a.Addr, l.Type == "pickle", l.Transport, tlsCfg
			if a.Proto == "unix" {
				lc.Unix, lc.UnixMode = a.Addr, c.unixMode
			}
			if err := ins.bindTCP(name, what, lc); err != nil {
				return err
			}
			if _, ok := ins.relay.Addrs["listen"]; !ok && a.Proto == "tcp" && l.Type == "linemode" && tlsCfg == nil && l.Transport == "plain" {
				ins.relay.Addrs["listen"] = ins.relay.Addrs[name]
			}
		}
	}
	return nil
}

// intake is one of polymur's listeners.
type intake interface {
	Run(context.Context) error
	Close() error
	Rejections() map[string]uint64
}

// intakes are polymur's listeners (plaintext, pickle, UDP) as one intake.
type intakes struct {
	relay *daemon.Relay
	names []string
	ls    []intake
	udp   []*listener.UDP
	ran   bool
}

// bindTCP binds one TCP (or unix) listener; what names it in an error (the
// flag, or the listen statement).
func (in *intakes) bindTCP(name, what string, cfg listener.TCPConfig) error {
	l, err := listener.NewTCP(cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	in.add(name, l)
	in.relay.Addrs[name] = l.Addr().String()
	if cfg.Unix != "" {
		in.relay.Addrs[name] = cfg.Unix
	}
	return nil
}

// bindUDP binds one Graphite UDP listener.
func (in *intakes) bindUDP(name, what string, c *config, addr string, log *slog.Logger) error {
	u, err := listener.NewUDP(listener.UDPConfig{Addr: addr, Level: c.Level, MaxLine: c.MaxLine,
		ReadBuffer: c.udpBuffer, Send: in.relay.Dests.Send, Logger: log, TagNormalize: c.TagNormalize, Rejects: in.relay.Rejects})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	in.add(name, u)
	in.udp = append(in.udp, u)
	in.relay.Addrs[name] = u.Addr().String()
	return nil
}

// addMetrics exports the UDP listeners' datagram and kernel-drop counts.
func (in *intakes) addMetrics(relay *daemon.Relay) {
	if len(in.udp) == 0 {
		return
	}
	relay.AddMetrics(admin.CollectFunc(func(ch chan<- prometheus.Metric) {
		var drops, packets uint64
		for _, u := range in.udp {
			drops, packets = drops+u.KernelDrops(), packets+u.Packets()
		}
		daemon.Counter(ch, "polymur_udp_kernel_drops_total", "Datagrams the kernel dropped on the UDP listeners (their receive buffer was full: raise -udp-read-buffer).", float64(drops))
		daemon.Counter(ch, "polymur_udp_datagrams_total", "Datagrams received on the UDP listeners.", float64(packets))
	}))
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

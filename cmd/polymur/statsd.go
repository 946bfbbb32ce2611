package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/api"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/listener"
	"github.com/polymur/polymur/statsd"
)

// runStatsd is polymur in statsd mode: statsd lines over UDP (and TCP) in,
// each line to the backend that owns its name on a consistent-hash ring
// keyed on host:port, coalesced into datagrams; backends health-checked on
// their admin port.
func runStatsd(ctx context.Context, c *config, stdout io.Writer, log *slog.Logger, ready func(map[string]string)) error {
	s := &c.statsd
	var dg dest.DatagramStats
	start := time.Now()
	h := statsd.NewHealth()
	c.Mode, c.Dests, c.Level, c.RingByAddr = dest.HashRoute, c.statsdDests, batch.LevelStatsd, true
	c.Dial = dest.DatagramDial(s.MaxDatagram, &dg)
	c.APIAddr = s.MgmtAddr
	c.APIReadOnly = c.APIReadOnly || !s.MgmtWrite
	c.ReadOnlyHint = "start with -statsd-mgmt-write to allow them"
	relay, err := daemon.NewRelay("polymur", &c.RelayFlags, stdout, log)
	if err != nil {
		return err
	}
	p := relay.Dests
	// The single UDP reader places its batches itself (no hand-off); TCP
	// connections, many goroutines, go through the incoming queue.
	direct, stopDirect := p.Direct()
	defer stopDirect()
	send, tcpSend := direct, p.Send
	if s.Debug {
		rl := &statsd.RouteLogger{Route: p.Route, Log: log}
		send, tcpSend = rl.Wrap(send), rl.Wrap(tcpSend)
	}
	udp, err := listener.NewUDP(listener.UDPConfig{Addr: s.Listen, Level: batch.LevelStatsd, MaxLine: c.MaxLine,
		FlushInterval: s.Flush, Send: send, Logger: log})
	if err != nil {
		relay.Close()
		return fmt.Errorf("-statsd-listen: %w", err)
	}
	relay.Addrs["statsd"] = udp.Addr().String()
	producers := []func(context.Context) error{udp.Run}
	intake := daemon.Intake{Accepted: udp.Accepted.Load, Rejected: udp.Rejections, Stats: func() any { return udp.Stats() }}
	if s.TCP {
		tcp, err := listener.NewTCP(listener.TCPConfig{Addr: s.Listen, Level: batch.LevelStatsd, MaxLine: c.MaxLine,
			DrainTimeout: c.DrainTimeout, Send: tcpSend, Logger: log})
		if err != nil {
			udp.Close()
			relay.Close()
			return fmt.Errorf("-statsd-listen (TCP): %w", err)
		}
		relay.Addrs["statsd-tcp"] = tcp.Addr().String()
		producers = append(producers, tcp.Run)
		intake = daemon.Intake{
			Accepted: func() uint64 { return udp.Accepted.Load() + tcp.Accepted.Load() },
			Rejected: func() map[string]uint64 {
				m := udp.Rejections()
				for k, v := range tcp.Rejections() {
					m[k] += v
				}
				return m
			},
			Stats: func() any { return map[string]any{"udp": udp.Stats(), "tcp": tcp.Stats()} },
		}
	}
	c.ExtraCommands = map[string]api.Handler{
		"health": func(arg string) string { return h.Command(arg, c.APIReadOnly, c.ReadOnlyHint) },
		"status": func(string) string {
			var live []string
			for _, d := range p.Stats().Destinations {
				if d.State != "dead" {
					live = append(live, d.Name)
				}
			}
			sort.Strings(live)
			return fmt.Sprintf("uptime: %d\nnodes: %s", int64(time.Since(start).Seconds()), strings.Join(live, " "))
		},
	}
	err = relay.Serve(intake, func() map[string]any {
		return map[string]any{"statsd": map[string]any{
			"packets_received": udp.Packets(), "datagrams_sent": dg.Datagrams.Load(), "lines_sent": dg.Lines.Load(),
			"send_errors": dg.SendErrors.Load(), "health_checks": h.Checks(), "backends": h.Snapshot(),
			"uptime_seconds": int64(time.Since(start).Seconds()),
		}}
	})
	if err != nil {
		udp.Close()
		relay.Close()
		return err
	}
	relay.AddMetrics(admin.CollectFunc(func(ch chan<- prometheus.Metric) {
		daemon.Counter(ch, "polymur_statsd_packets_received_total", "statsd datagrams received.", float64(udp.Packets()))
		daemon.Counter(ch, "polymur_statsd_datagrams_sent_total", "Datagrams sent to statsd backends.", float64(dg.Datagrams.Load()))
		daemon.Counter(ch, "polymur_statsd_lines_sent_total", "statsd lines sent to backends.", float64(dg.Lines.Load()))
		daemon.Counter(ch, "polymur_statsd_send_errors_total", "Datagram sends refused (backend port closed); the lines are sent again.", float64(dg.SendErrors.Load()))
		daemon.Counter(ch, "polymur_statsd_health_checks_total", "Health checks of statsd backends.", float64(h.Checks()))
	}))
	targets := statsd.Targets{Hold: p.Hold, Unhold: p.Unhold, Names: func() []string {
		var names []string
		for name := range p.Destinations().Registered {
			names = append(names, name)
		}
		return names
	}}
	relay.Go(func(ctx context.Context) error { return h.Loop(ctx, targets, s.CheckInterval, log) })
	log.Info("::: Polymur (statsd mode) :::", "version", daemon.Version(), "backends", len(c.Dests),
		"listen", udp.Addr().String(), "tcp", s.TCP, "mgmt", relay.Addrs["api"], "check_interval", s.CheckInterval,
		"max_datagram", s.MaxDatagram)
	if ready != nil {
		ready(relay.Addrs)
	}
	return relay.Run(ctx, producers...)
}

// Command polymur is a Graphite carbon-relay replacement: plaintext TCP in,
// broadcast or carbon_ch hash-route out, with a runtime control API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/polymur/polymur/api"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/listener"
	"github.com/polymur/polymur/pool"
	"github.com/polymur/polymur/runstats"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, nil)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "polymur:", err)
		os.Exit(1)
	}
}

// run is polymur's whole life: parse, bind, serve until ctx ends, drain.
// ready, when not nil, receives the bound listener addresses (for tests).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, ready func(addrs map[string]string)) error {
	c, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	if c.test {
		return testMode(c, stdin, stdout)
	}
	log, err := daemon.NewLogger(stderr, c.logLevel, c.logFormat)
	if err != nil {
		return err
	}
	start := time.Now()
	lat := runstats.NewLatency(4096)
	pc := c.poolConfig()
	pc.Logger, pc.ObserveWrite = log, lat.Observe
	if c.consoleOut {
		pc.Console = stdout
	}
	p, err := pool.New(pc)
	if err != nil {
		return err
	}
	lis, err := listener.NewTCP(listener.TCPConfig{Addr: c.listenAddr, Level: c.level, MaxLine: c.maxLine,
		DrainTimeout: c.drainTimeout, Send: p.Send, Logger: log})
	if err != nil {
		return fmt.Errorf("-listen-addr: %w", err)
	}
	addrs := map[string]string{"listen": lis.Addr().String()}
	var servers []*api.Server
	if c.apiAddr != "" {
		srv, err := api.New(api.Config{Addr: c.apiAddr, Name: "API", Logger: log, Commands: api.ControlCommands(api.Control{
			PutDest: p.PutDest, DelDest: p.DelDest, Route: p.Route,
			GetDest: func() any { return p.Destinations() },
			Stats: func() any {
				return map[string]any{"uptime_seconds": int64(time.Since(start).Seconds()), "version": daemon.Version(),
					"listener": lis.Stats(), "pool": p.Stats(), "write_latency": lat.Summary()}
			},
		})})
		if err != nil {
			return fmt.Errorf("-api-addr: %w", err)
		}
		servers, addrs["api"] = append(servers, srv), srv.Addr().String()
	}
	if c.statAddr != "" {
		srv, err := api.New(api.Config{Addr: c.statAddr, Name: "runstats", Logger: log, Commands: map[string]api.Handler{
			"stats": func(string) string { return runstats.Snapshot(start).JSON() }}})
		if err != nil {
			return fmt.Errorf("-stat-addr: %w", err)
		}
		servers, addrs["stat"] = append(servers, srv), srv.Addr().String()
	}
	log.Info("::: Polymur :::", "version", daemon.Version(), "distribution", c.mode.String(), "destinations", len(c.destinations))
	if ready != nil {
		ready(addrs)
	}

	g, gctx := errgroup.WithContext(ctx)
	rate := &runstats.Rate{Count: lis.Accepted.Load}
	var producers errgroup.Group
	producers.Go(func() error { return lis.Run(gctx) })
	if c.metricsFlush > 0 {
		producers.Go(func() error {
			runstats.Flush(gctx, log, time.Duration(c.metricsFlush)*time.Second, runstats.Prefix("polymur"),
				selfMetrics(p, rate, lis.Rejections), p.Send)
			return nil
		})
	}
	g.Go(func() error { defer p.CloseInput(); return producers.Wait() })
	g.Go(func() error { return p.Run(gctx) })
	for _, srv := range servers {
		g.Go(func() error { return srv.Run(gctx) })
	}
	g.Go(func() error {
		runstats.LogRates(gctx, log, rate, 5*time.Second, nil)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: no new connections, delivering queued points", "drain_timeout", c.drainTimeout)
		return nil
	})
	err = g.Wait()
	s := p.Stats()
	log.Info("stopped", "received", s.Received, "sent", s.Sent, "dropped", s.Dropped)
	return err
}

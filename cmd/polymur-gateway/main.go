// Command polymur-gateway ingests gzip batches from polymur-proxy over
// HTTP(S), checks their API key against keys mirrored from Consul, and
// distributes the lines like polymur.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/polymur/polymur/consul"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/listener"
)

func main() {
	ctx, stop := daemon.SignalContext()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "polymur-gateway:", err)
		os.Exit(1)
	}
}

// run is the gateway's whole life; ready receives the bound addresses.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(map[string]string)) error {
	c, err := parseConfig(args, stdout, stderr)
	if errors.Is(err, daemon.ErrVersion) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := daemon.NewLogger(stderr, c.LogLevel, c.LogFormat)
	if err != nil {
		return err
	}
	kc := consul.Config{Prefix: c.keysPath, Refresh: c.keyRefresh, Logger: log}
	if c.devMode {
		kc.Static = map[string]string{"123": "dev"}
		log.Warn("dev mode: Consul is not used; the only valid API key is 123 (name dev)")
	}
	keys, err := consul.NewCache(kc)
	if err != nil {
		return err
	}
	if c.Table != nil && len(c.Table.Listeners) > 0 {
		log.Info("the configuration's listen statements are for polymur; the gateway listens on -listen-http-port and -listen-https-port", "config", c.ConfigFile)
	}
	relay, err := daemon.NewRelay("polymur-gateway", &c.RelayFlags, stdout, log)
	if err != nil {
		return err
	}
	ingest, err := listener.NewIngest(listener.IngestConfig{Lookup: keys.Lookup, Send: relay.Dests.Send,
		Level: c.Level, MaxLine: c.MaxLine, KeyPrefix: c.keyPrefix, TagNormalize: c.TagNormalize, Rejects: relay.Rejects, MaxBody: c.maxBody, MaxDecoded: c.maxDecoded,
		QueueWait: c.queueWait, MaxBuffered: c.maxBuffer, Logger: log})
	if err != nil {
		relay.Close()
		return err
	}
	intake := daemon.Intake{Accepted: ingest.Accepted.Load, Rejected: ingest.Rejections, Stats: func() any { return ingest.Stats() }}
	if err := relay.Serve(intake, func() map[string]any { return map[string]any{"keys": keys.Stats()} }); err != nil {
		relay.Close()
		return err
	}
	daemon.MemoryLimit(2*c.maxBuffer+128<<20, "-max-buffered-bytes", log)
	producers, certs, err := bindHTTP(c, ingest, relay)
	if err != nil {
		relay.Close()
		return err
	}
	// SIGHUP re-reads the TLS certificate (until then SIGHUP was ignored
	// from the start: see daemon.SignalContext).
	var reload func()
	if len(certs) > 0 || relay.Routed() {
		reload = func() {
			for _, c := range certs {
				c.ReloadAndLog("SIGHUP")
			}
			relay.Reload()
		}
	}
	defer daemon.HandleSignalsReload(log, reload)()
	relay.Go(keys.Run)
	relay.AddMetrics(gatewayMetrics(keys, ingest))
	relay.AddNotReady(func() []string {
		if !keys.Ready() {
			return []string{"API keys not loaded yet"}
		}
		if p := keys.Problem(); p != "" {
			return []string{"API key sync: " + p}
		}
		return nil
	})
	log.Info("::: Polymur-gateway :::", "version", daemon.Version(), "distribution", c.Mode.String(), "destinations", len(c.Dests), "key_prefix", c.keyPrefix)
	if ready != nil {
		ready(relay.Addrs)
	}
	return relay.Run(ctx, producers...)
}

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

	"github.com/polymur/polymur/internal/daemon"
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
	ins, certs, err := bindListeners(c, relay, log)
	if err != nil {
		relay.Close()
		return err
	}
	defer ins.closeUnlessRun()
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
	if err := relay.Serve(ins.intake(), nil); err != nil {
		relay.Close()
		return err
	}
	ins.addMetrics(relay)
	log.Info("::: Polymur :::", "version", daemon.Version(), "revision", daemon.Revision(), "distribution", c.Mode.String(), "destinations", len(c.Dests))
	if ready != nil {
		ready(relay.Addrs)
	}
	return relay.Run(ctx, ins.run()...)
}

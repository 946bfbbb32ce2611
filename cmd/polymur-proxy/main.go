// Command polymur-proxy runs on-site: it accepts Graphite plaintext over TCP
// and forwards it to polymur-gateway as gzip batches over HTTPS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/polymur/polymur/api"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/listener"
)

func main() {
	ctx, stop := daemon.SignalContext()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "polymur-proxy:", err)
		os.Exit(1)
	}
}

// run is the proxy's whole life; ready receives the bound addresses.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(map[string]string)) error {
	c, err := parseConfig(args, stdout, stderr)
	if errors.Is(err, daemon.ErrVersion) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := daemon.NewLogger(stderr, c.logLevel, c.logFormat)
	if err != nil {
		return err
	}
	defer daemon.HandleSignals(log)()
	p, err := newPipeline(c, stdout, log)
	if err != nil {
		return err
	}
	// The queue (what -queue-bytes bounds), and what the workers hold
	// besides: a batch being gathered, one compressed body and an encoder
	// each. With zstd the heap's growth alone took the proxy past 128 MiB
	// in a 2M-line burst; with the limit it stays near 110.
	daemon.MemoryLimit(2*c.queueBytes+48<<20, "-queue-bytes", log)
	lis, err := listener.NewTCP(listener.TCPConfig{Addr: c.listenAddr, Level: c.level, MaxLine: c.maxLine,
		DrainTimeout: c.drainTimeout, Send: p.send, Logger: log,
		IdleTimeout: c.clients.IdleTimeout, MaxConns: c.clients.MaxConns})
	if err != nil {
		return fmt.Errorf("-listen-addr: %w", err)
	}
	start := time.Now()
	addrs := map[string]string{"listen": lis.Addr().String()}
	var servers []*api.Server
	closeAll := func() {
		lis.Close()
		for _, s := range servers {
			s.Close()
		}
	}
	if c.statAddr != "" {
		srv, err := daemon.StatServer(c.statAddr, start, log)
		if err != nil {
			closeAll()
			return err
		}
		servers, addrs["stat"] = append(servers, srv), srv.Addr().String()
	}
	if c.apiAddr != "" {
		srv, err := api.New(api.Config{Addr: c.apiAddr, Name: "API", Logger: log, Commands: p.commands(lis, start)})
		if err != nil {
			closeAll()
			return fmt.Errorf("-api-addr: %w", err)
		}
		servers, addrs["api"] = append(servers, srv), srv.Addr().String()
	}
	adm, err := p.adminServer(&c.admin, lis, start, log)
	if err != nil {
		closeAll()
		return err
	}
	if adm != nil {
		addrs["admin"] = adm.Addr().String()
	}
	log.Info("::: Polymur-proxy :::", "version", daemon.Version(), "gateway", c.gateway, "workers", c.workers, "batch_size", c.batchSize)
	if ready != nil {
		ready(addrs)
	}

	err = p.runAll(ctx, c, lis, servers, adm, log)
	s := p.stats()
	log.Info("stopped", "received", s.Received, "sent", s.Sent, "batches", s.Batches, "retries", s.Retries, daemon.CountsAttr("dropped", s.Dropped),
		"queued", s.QueueDepth, "raw_bytes", s.RawBytes, "wire_bytes", s.WireBytes, "spooled", s.Spooled, "replayed", s.Replayed)
	return err
}

// printer writes every batch to stdout (-console-out).
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (pr *printer) print(b *batch.Batch) {
	pr.mu.Lock()
	pr.w.Write(b.Buf)
	pr.mu.Unlock()
}

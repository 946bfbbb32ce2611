package main

import (
	"context"
	"fmt"

	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/listener"
)

// bindHTTP binds the HTTP and HTTPS ingest servers the flags ask for; it
// returns their Run funcs and the certificates SIGHUP re-reads.
func bindHTTP(c *config, ingest *listener.Ingest, relay *daemon.Relay) ([]func(context.Context) error, []*listener.Certs, error) {
	var producers []func(context.Context) error
	var certs []*listener.Certs
	for _, l := range []struct{ name, addr, cert, key string }{
		{"http", c.httpAddr(), "", ""},
		{"https", c.httpsAddr(), c.cert, c.key},
	} {
		if l.addr == "" {
			continue
		}
		srv, err := listener.NewHTTPServer(l.name, l.addr, l.cert, l.key, ingest.Handler(), c.DrainTimeout, relay.Log)
		if err != nil {
			return nil, nil, fmt.Errorf("-listen-%s-port: %w", l.name, err)
		}
		relay.Addrs[l.name] = srv.Addr().String()
		producers = append(producers, srv.Run)
		if srv.Certs != nil {
			certs = append(certs, srv.Certs)
		}
	}
	return producers, certs, nil
}

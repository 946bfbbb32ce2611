package listener

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// CertCheckInterval is how often a served certificate's files are checked
// for a change.
const CertCheckInterval = 10 * time.Second

// HTTPServer serves a handler on one bound address, over TLS when a
// certificate is given, with every timeout set.
type HTTPServer struct {
	ln    net.Listener
	srv   *http.Server
	grace time.Duration
	log   *slog.Logger
	name  string
	// Certs is the served certificate (nil for plain HTTP): Run watches its
	// files; the daemon reloads it on SIGHUP.
	Certs *Certs
}

// NewHTTPServer binds addr. With certFile and keyFile it serves HTTPS (and
// HTTP/2); the files are read now so that a bad certificate fails at start.
func NewHTTPServer(name, addr, certFile, keyFile string, h http.Handler, grace time.Duration, log *slog.Logger) (*HTTPServer, error) {
	if log == nil {
		log = slog.Default()
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	var tlsConf *tls.Config
	var certs *Certs
	if certFile != "" || keyFile != "" {
		var err error
		if certs, err = NewCerts(certFile, keyFile, log); err != nil {
			return nil, err
		}
		tlsConf = ServerTLS(certs)
		srv.TLSConfig = tlsConf
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	return &HTTPServer{ln: ln, srv: srv, grace: grace, log: log, name: name, Certs: certs}, nil
}

// Addr returns the bound address.
func (s *HTTPServer) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends, then lets requests in progress finish (bounded
// by the grace period) and returns.
func (s *HTTPServer) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info(s.name+" listening", "addr", s.ln.Addr().String())
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.Certs != nil {
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		wg.Go(func() { s.Certs.Watch(wctx, CertCheckInterval) })
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.grace)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	<-errc
	if err != nil {
		s.srv.Close()
	}
	return nil
}

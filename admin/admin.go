// Package admin is a daemon's optional HTTP side (-admin-addr): Prometheus
// metrics on /metrics, /healthz and /readyz for load balancers, a JSON API
// that mirrors the TCP control API (/api/v1/...), and a live status page on
// /. It reaches the daemon only through the funcs and the Gatherer it is
// given, like package api.
package admin

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Errors a Destinations func marks (Conflict, NotFound) so that the API
// answers 409 or 404 instead of 400.
var (
	ErrConflict = errors.New("conflict")
	ErrNotFound = errors.New("not found")
)

// marked is err, matched by errors.Is to kind too, with err's message.
type marked struct{ kind, err error }

func (m marked) Error() string   { return m.err.Error() }
func (m marked) Unwrap() []error { return []error{m.kind, m.err} }

// Conflict marks err as a conflict (409), keeping its message.
func Conflict(err error) error { return marked{ErrConflict, err} }

// NotFound marks err as not found (404), keeping its message.
func NotFound(err error) error { return marked{ErrNotFound, err} }

// Destinations is the runtime destination control of a relay (polymur and
// polymur-gateway; the proxy has none).
type Destinations struct {
	Put   func(dest string) error
	Del   func(dest string) error
	Get   func() any
	Route func(metric string) []string
}

// Config configures a Server.
type Config struct {
	Addr     string
	Name     string // the daemon, for the page title
	Gatherer prometheus.Gatherer
	// NotReady returns why the daemon should not get traffic; nothing
	// means ready.
	NotReady func() []string
	Stats    func() any
	// Rejected, when set, is GET /api/v1/rejected: the last rejected
	// lines by reason.
	Rejected func() any
	// Sample, when set, is read every HistoryEvery for the status page's
	// charts (GET /api/v1/history: the last HistoryLen points).
	Sample func() Sample
	// Running, when set, is GET /api/v1/config: the running configuration
	// (listeners, clusters, rules, ring members) for the status page.
	Running func() any
	Dests   *Destinations // nil: no destination API
	// Reload, when set, is POST /api/v1/reload (re-read -config), a write
	// endpoint like the destination changes.
	Reload func() error
	Logger *slog.Logger

	// Write enables the endpoints that change the daemon (destination
	// changes); Pprof enables /debug/pprof/ (its cmdline shows secrets given
	// as flags). Both are off by default and, when on, need Token.
	Write, Pprof bool
	// Token is the bearer token the protected endpoints require
	// ("Authorization: Bearer <token>"); required when Write or Pprof.
	Token string
	// AllowedHosts are host names, besides IP literals, "localhost" and the
	// listen host, that a protected request may name in its Host header
	// (DNS-rebinding protection).
	AllowedHosts []string
}

// Server is the admin HTTP server.
type Server struct {
	cfg  Config
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger
	hist history
}

//go:embed status.html
var static embed.FS

// New binds cfg.Addr.
func New(cfg Config) (*Server, error) {
	if cfg.Gatherer == nil || cfg.Stats == nil || cfg.NotReady == nil {
		return nil, errors.New("admin: Gatherer, Stats and NotReady are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if (cfg.Write || cfg.Pprof) && len(cfg.Token) < 16 {
		return nil, errors.New("admin: write and pprof endpoints need a bearer token of at least 16 characters")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ln: ln, log: cfg.Logger}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout:   2 * time.Minute, // a 30 s CPU profile must fit
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	return s, nil
}

// MaxHeaderBytes bounds a request's header block (larger ones get 431).
const MaxHeaderBytes = 64 << 10

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close releases the socket of a server that will not Run.
func (s *Server) Close() error { return s.ln.Close() }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("admin HTTP started", "addr", "http://"+s.ln.Addr().String()+"/")
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	if s.cfg.Sample != nil {
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		go s.sample(sctx)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(sctx)
	<-errc
	return nil
}

// Handler is the admin mux (exported for tests).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn), ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /api/v1/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.cfg.Stats()) })
	if d := s.cfg.Dests; d != nil {
		mux.HandleFunc("GET /api/v1/destinations", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, d.Get()) })
		mux.Handle("POST /api/v1/destinations", s.guard(s.cfg.Write, "-admin-write", s.putDest))
		mux.Handle("DELETE /api/v1/destinations", s.guard(s.cfg.Write, "-admin-write", s.delDest))
		mux.Handle("DELETE /api/v1/destinations/{dest}", s.guard(s.cfg.Write, "-admin-write", s.delDest))
		mux.HandleFunc("GET /api/v1/route", s.route)
	}
	if f := s.cfg.Rejected; f != nil {
		mux.HandleFunc("GET /api/v1/rejected", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, f()) })
	}
	if s.cfg.Sample != nil {
		mux.HandleFunc("GET /api/v1/history", s.historyJSON)
	}
	if f := s.cfg.Running; f != nil {
		mux.HandleFunc("GET /api/v1/config", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, f()) })
	}
	if s.cfg.Reload != nil {
		mux.Handle("POST /api/v1/reload", s.guard(s.cfg.Write, "-admin-write", func(w http.ResponseWriter, _ *http.Request) {
			if err := s.cfg.Reload(); err != nil {
				writeError(w, http.StatusUnprocessableEntity, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"reloaded": "ok"})
		}))
	}
	// Go profiles, as carbon-relay-ng and nanotube expose them, but only
	// when asked for and with the token: the command line may hold secrets.
	mux.Handle("GET /debug/pprof/", s.guard(s.cfg.Pprof, "-admin-pprof", pprof.Index))
	mux.Handle("GET /debug/pprof/cmdline", s.guard(s.cfg.Pprof, "-admin-pprof", pprof.Cmdline))
	mux.Handle("GET /debug/pprof/profile", s.guard(s.cfg.Pprof, "-admin-pprof", pprof.Profile))
	mux.Handle("GET /debug/pprof/symbol", s.guard(s.cfg.Pprof, "-admin-pprof", pprof.Symbol))
	mux.Handle("GET /debug/pprof/trace", s.guard(s.cfg.Pprof, "-admin-pprof", pprof.Trace))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		page, _ := static.ReadFile("status.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte(strings.Replace(string(page), "{{NAME}}", s.cfg.Name, -1)))
	})
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	reasons := s.cfg.NotReady()
	if len(reasons) == 0 {
		io.WriteString(w, "ready\n")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, "not ready: "+strings.Join(reasons, "; ")+"\n")
}

// destArg finds the destination in the path, the query, a JSON body
// {"destination": "...", "cluster": "..."} or a plain-text body; a cluster
// (polymur -config) follows it after a space, as in the control API.
func destArg(r *http.Request) (string, error) {
	d, err := destOnly(r)
	if c := strings.TrimSpace(r.URL.Query().Get("cluster")); err == nil && c != "" {
		d += " " + c
	}
	return d, err
}

func destOnly(r *http.Request) (string, error) {
	if v := r.PathValue("dest"); v != "" {
		return v, nil
	}
	if v := r.URL.Query().Get("destination"); v != "" {
		return v, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err != nil {
		return "", err
	}
	text := strings.TrimSpace(string(body))
	if strings.HasPrefix(text, "{") {
		var req struct {
			Destination string `json:"destination"`
			Cluster     string `json:"cluster"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return "", errors.New("body: " + err.Error())
		}
		text = strings.TrimSpace(req.Destination)
		if c := strings.TrimSpace(req.Cluster); c != "" && text != "" {
			text += " " + c
		}
	}
	if text == "" {
		return "", errors.New(`no destination: give {"destination": "host:port[:instance]"}, ?destination= or a path`)
	}
	return text, nil
}

func (s *Server) putDest(w http.ResponseWriter, r *http.Request) {
	dest, err := destArg(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.cfg.Dests.Put(dest); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"registered": dest})
}

func (s *Server) delDest(w http.ResponseWriter, r *http.Request) {
	dest, err := destArg(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.cfg.Dests.Del(dest); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"unregistered": dest})
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	metric := strings.TrimSpace(r.URL.Query().Get("metric"))
	if metric == "" {
		writeError(w, http.StatusBadRequest, errors.New("no metric: give ?metric=<name>"))
		return
	}
	dests := s.cfg.Dests.Route(metric)
	if dests == nil {
		dests = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"metric": metric, "destinations": dests})
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// CollectFunc is a prometheus.Collector made of a function that sends the
// current values, read from counters the daemon keeps anyway, so /metrics
// costs nothing on the data path. It is unchecked (describes nothing).
type CollectFunc func(ch chan<- prometheus.Metric)

// Describe implements prometheus.Collector (unchecked collector).
func (f CollectFunc) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (f CollectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

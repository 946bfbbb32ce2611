package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/internal/testutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fakeDests struct {
	mu    sync.Mutex
	dests map[string]bool
}

func (f *fakeDests) control() *Destinations {
	return &Destinations{
		Put: func(d string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if !strings.Contains(d, ":") {
				return errors.New("destination " + d + ": want host:port")
			}
			if f.dests[d] {
				return Conflict(errors.New("destination " + d + " already registered"))
			}
			f.dests[d] = true
			return nil
		},
		Del: func(d string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if !f.dests[d] {
				return NotFound(errors.New("destination " + d + " is not registered"))
			}
			delete(f.dests, d)
			return nil
		},
		Get: func() any {
			f.mu.Lock()
			defer f.mu.Unlock()
			var l []string
			for d := range f.dests {
				l = append(l, d)
			}
			return map[string]any{"registered": l}
		},
		Route: func(m string) []string { return []string{"127.0.0.1:2004:a"} },
	}
}

const testToken = "test-token-0123456789"

func start(t *testing.T, notReady func() []string) string {
	t.Helper()
	return startWith(t, Config{Write: true, Token: testToken, NotReady: notReady})
}

func startWith(t *testing.T, cfg Config) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(CollectFunc(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("polymur_test_total", "A test counter.", nil, nil), prometheus.CounterValue, 7)
	}))
	f := &fakeDests{dests: map[string]bool{}}
	if cfg.NotReady == nil {
		cfg.NotReady = func() []string { return nil }
	}
	cfg.Addr, cfg.Name, cfg.Gatherer, cfg.Logger, cfg.Dests = "127.0.0.1:0", "polymur-test", reg, quiet, f.control()
	cfg.Stats = func() any { return map[string]int{"received": 42} }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + s.Addr().String()
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	return request(t, method, url, body, map[string]string{"Authorization": "Bearer " + testToken})
}

var request = testutil.Request

func TestEndpoints(t *testing.T) {
	var ready sync.Mutex
	why := []string{"every destination is down (2 registered)"}
	base := start(t, func() []string { ready.Lock(); defer ready.Unlock(); return why })
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"healthz", "GET", "/healthz", "", 200, "ok"},
		{"readyz while down", "GET", "/readyz", "", 503, "not ready: every destination is down"},
		{"metrics", "GET", "/metrics", "", 200, "polymur_test_total 7"},
		{"stats", "GET", "/api/v1/stats", "", 200, `"received": 42`},
		{"status page", "GET", "/", "", 200, "<title>polymur-test status</title>"},
		{"unknown path", "GET", "/nope", "", 404, ""},
		{"put plain body", "POST", "/api/v1/destinations", "127.0.0.1:2104", 201, `"registered": "127.0.0.1:2104"`},
		{"put JSON body", "POST", "/api/v1/destinations", `{"destination": "127.0.0.1:2105:b"}`, 201, `"registered": "127.0.0.1:2105:b"`},
		{"put query", "POST", "/api/v1/destinations?destination=127.0.0.1:2106", "", 201, `"registered"`},
		{"put duplicate", "POST", "/api/v1/destinations", "127.0.0.1:2104", 409, "already registered"},
		{"put invalid", "POST", "/api/v1/destinations", "garbage", 400, "want host:port"},
		{"put empty", "POST", "/api/v1/destinations", "", 400, "no destination"},
		{"put bad JSON", "POST", "/api/v1/destinations", `{"destination": `, 400, "body:"},
		{"get destinations", "GET", "/api/v1/destinations", "", 200, "127.0.0.1:2105:b"},
		{"delete by path", "DELETE", "/api/v1/destinations/127.0.0.1:2104", "", 200, `"unregistered": "127.0.0.1:2104"`},
		{"delete by query", "DELETE", "/api/v1/destinations?destination=127.0.0.1:2106", "", 200, `"unregistered"`},
		{"delete unknown", "DELETE", "/api/v1/destinations/127.0.0.1:9", "", 404, "not registered"},
		{"route", "GET", "/api/v1/route?metric=a.b.c", "", 200, `"127.0.0.1:2004:a"`},
		{"route without metric", "GET", "/api/v1/route", "", 400, "no metric"},
		{"wrong method", "PUT", "/api/v1/destinations", "x", 405, ""},
		{"wrong method on metrics", "POST", "/metrics", "", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, base+tc.path, tc.body)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%s %s → %d %q, want %d containing %q", tc.method, tc.path, code, body, tc.code, tc.want)
			}
		})
	}
	ready.Lock()
	why = nil
	ready.Unlock()
	if code, body := do(t, "GET", base+"/readyz", ""); code != 200 || body != "ready\n" {
		t.Fatalf("readyz when ready: %d %q", code, body)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{Addr: "127.0.0.1:0"}); err == nil {
		t.Fatal("missing funcs accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Addr: "256.0.0.1:0", Gatherer: reg, Stats: func() any { return nil }, NotReady: func() []string { return nil }}); err == nil {
		t.Fatal("bad address accepted")
	}
}

// TestProtectedEndpoints: writes and pprof are off by default; when on they
// refuse requests without the token, from another site (a form post from
// any web page), and naming a host that is not this server (DNS rebinding).
func TestProtectedEndpoints(t *testing.T) {
	auth := "Bearer " + testToken
	off := startWith(t, Config{})
	on := startWith(t, Config{Write: true, Pprof: true, Token: testToken, AllowedHosts: []string{"relay1.example"}})
	for _, tc := range []struct {
		name, base, method, path string
		hdr                      map[string]string
		code                     int
		want                     string
	}{
		{"write off by default", off, "POST", "/api/v1/destinations", map[string]string{"Authorization": auth}, 403, "-admin-write"},
		{"delete off by default", off, "DELETE", "/api/v1/destinations/127.0.0.1:2999", map[string]string{"Authorization": auth}, 403, "-admin-write"},
		{"pprof off by default", off, "GET", "/debug/pprof/cmdline", map[string]string{"Authorization": auth}, 403, "-admin-pprof"},
		{"reads stay open", off, "GET", "/api/v1/destinations", nil, 200, "registered"},
		{"no token", on, "POST", "/api/v1/destinations", nil, 401, "bearer token"},
		{"wrong token", on, "POST", "/api/v1/destinations", map[string]string{"Authorization": "Bearer nope-nope-nope-nope"}, 401, "bearer token"},
		{"cross-site form post", on, "POST", "/api/v1/destinations?destination=127.0.0.9:2003",
			map[string]string{"Content-Type": "text/plain", "Origin": "http://attacker.example", "Authorization": auth}, 403, "cross-origin"},
		{"sec-fetch-site cross-site", on, "POST", "/api/v1/destinations?destination=127.0.0.9:2003",
			map[string]string{"Sec-Fetch-Site": "cross-site", "Authorization": auth}, 403, "cross-origin"},
		{"DNS rebinding host", on, "POST", "/api/v1/destinations?destination=127.0.0.9:2003",
			map[string]string{"Host": "rebind.evil.example:2040", "Authorization": auth}, 403, "DNS rebinding"},
		{"rebinding host on pprof", on, "GET", "/debug/pprof/cmdline", map[string]string{"Host": "rebind.evil.example", "Authorization": auth}, 403, "DNS rebinding"},
		{"pprof without token", on, "GET", "/debug/pprof/cmdline", nil, 401, "bearer token"},
		{"allowed host name", on, "POST", "/api/v1/destinations", map[string]string{"Host": "relay1.example:2040", "Authorization": auth}, 201, "registered"},
		{"localhost", on, "DELETE", "/api/v1/destinations/127.0.0.1:2999", map[string]string{"Host": "localhost:2040", "Authorization": auth}, 200, "unregistered"},
		{"pprof with token", on, "GET", "/debug/pprof/cmdline", map[string]string{"Authorization": auth}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := request(t, tc.method, tc.base+tc.path, "127.0.0.1:2999", tc.hdr)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%s %s → %d %q, want %d containing %q", tc.method, tc.path, code, body, tc.code, tc.want)
			}
		})
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Addr: "127.0.0.1:0", Gatherer: reg, Stats: func() any { return nil }, NotReady: func() []string { return nil },
		Write: true, Token: "short"}); err == nil {
		t.Fatal("write enabled with a short token accepted")
	}
}

// TestHeaderLimit: a header block over MaxHeaderBytes gets 431.
func TestHeaderLimit(t *testing.T) {
	base := startWith(t, Config{})
	req, _ := http.NewRequest("GET", base+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 200<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("200 KB header → %d, want 431", resp.StatusCode)
	}
}

// The charts' history: rates per interval from counter samples, the queues
// as sampled, at most HistoryLen points, and a live point since the last
// sample.
func TestHistory(t *testing.T) {
	var h history
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	h.add(t0, Sample{Received: 100, Sent: 50})
	if got := h.snapshot(t0.Add(100*time.Millisecond), Sample{}); len(got) != 0 {
		t.Fatalf("a point right after the baseline: %+v", got)
	}
	h.add(t0.Add(5*time.Second), Sample{Received: 600, Sent: 550, Dropped: 10, Queued: map[string]int64{"a": 7}})
	got := h.snapshot(t0.Add(7*time.Second), Sample{Received: 800, Sent: 550, Dropped: 10})
	if len(got) != 2 || got[0].Received != 100 || got[0].Sent != 100 || got[0].Dropped != 2 || got[0].Queued["a"] != 7 ||
		got[1].Received != 100 || got[1].Sent != 0 || got[1].T != t0.Add(7*time.Second).UnixMilli() {
		t.Fatalf("points: %+v", got)
	}
	for i := range 2 * HistoryLen {
		h.add(t0.Add(time.Duration(10+5*i)*time.Second), Sample{Received: uint64(1000 + i)})
	}
	if n := len(h.snapshot(t0, Sample{})); n != HistoryLen {
		t.Fatalf("kept %d points", n)
	}
	// A counter that went backwards is a zero rate, not a huge one.
	h.add(t0.Add(time.Hour), Sample{})
	if p := h.points[len(h.points)-1]; p.Received != 0 {
		t.Fatalf("rate after a reset: %+v", p)
	}
}

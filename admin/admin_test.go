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

	"github.com/prometheus/client_golang/prometheus"
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

func start(t *testing.T, notReady func() []string) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(CollectFunc(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("polymur_test_total", "A test counter.", nil, nil), prometheus.CounterValue, 7)
	}))
	f := &fakeDests{dests: map[string]bool{}}
	s, err := New(Config{Addr: "127.0.0.1:0", Name: "polymur-test", Gatherer: reg, NotReady: notReady, Logger: quiet,
		Stats: func() any { return map[string]int{"received": 42} }, Dests: f.control()})
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
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

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

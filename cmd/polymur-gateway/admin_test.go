package main

import (
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

func TestAdminHTTP(t *testing.T) {
	s := testutil.NewSink(t)
	d := start(t, "-dev-mode", "-admin-addr", "127.0.0.1:0", "-destinations", s.Addr())
	base := "http://" + d.Addrs["admin"]
	url := "http://" + d.Addrs["http"] + "/ingest"
	for range 3 {
		if code := post(t, url, "123", "gw.admin 1 1700000000\n"); code != 200 {
			t.Fatalf("post: %d", code)
		}
	}
	post(t, url, "wrong", "gw.admin 1 1700000000\n")
	if code := post(t, url, "123", "gw.bad x 1700000000\n"); code != 200 {
		t.Fatalf("post with a bad line: %d", code)
	}
	if !s.WaitCount(3, limit) {
		t.Fatal("not delivered")
	}
	// The bad line is kept with its reason, the key and the client.
	_, rejected := testutil.Get(t, base+"/api/v1/rejected")
	testutil.HasAll(t, "/api/v1/rejected", rejected, `"line": "gw.bad x 1700000000"`, `"client": "key dev from 127.0.0.1`)
	testutil.WaitFor(t, "ready", limit, func() bool { c, _ := testutil.Get(t, base+"/readyz"); return c == 200 })
	metrics := testutil.Scrape(t, base+"/metrics")
	testutil.HasAll(t, "/metrics", metrics,
		`polymur_gateway_requests_total{code="200",key="dev"} 4`,
		`polymur_gateway_requests_total{code="401",key="(none)"} 1`,
		"polymur_gateway_keys 1", "polymur_gateway_keys_loaded 1", "polymur_gateway_key_sync_age_seconds",
		"polymur_points_received_total 3", "polymur_lines_accepted_total 3")
	_, stats := testutil.Get(t, base+"/api/v1/stats")
	testutil.HasAll(t, "/api/v1/stats", stats, `"keys":`, `"source": "static"`, `"requests_by_key"`)
}

func TestNotReadyUntilKeysLoad(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", testutil.FreeAddr(t)) // nobody there
	s := testutil.NewSink(t)
	d := start(t, "-admin-addr", "127.0.0.1:0", "-destinations", s.Addr(), "-key-refresh", "1s")
	base := "http://" + d.Addrs["admin"]
	testutil.WaitFor(t, "a failed key sync", limit, func() bool {
		return strings.Contains(d.Ask(t, "api", "stats"), `"sync_errors": `) && !strings.Contains(d.Ask(t, "api", "stats"), `"sync_errors": 0`)
	})
	code, body := testutil.Get(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "API keys not loaded") {
		t.Fatalf("readyz without keys: %d %q", code, body)
	}
	if code, _ := testutil.Get(t, base+"/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	metrics := testutil.Scrape(t, base+"/metrics")
	testutil.HasAll(t, "/metrics", metrics, "polymur_gateway_keys_loaded 0")
}

// The gateway's status page in headless Chromium shows its destinations and
// the API key section.
func TestStatusPageInChromium(t *testing.T) {
	s := testutil.NewSink(t)
	d := start(t, "-dev-mode", "-admin-addr", "127.0.0.1:0", "-destinations", s.Addr())
	if code := post(t, "http://"+d.Addrs["http"]+"/ingest", "123", "gw.page 1 1700000000\n"); code != 200 {
		t.Fatal(code)
	}
	dom := testutil.RenderPage(t, "http://"+d.Addrs["admin"]+"/", 3*time.Second, "")
	testutil.HasAll(t, "rendered page", dom, `data-loaded="yes"`, `data-dest="`+s.Addr()+`"`, "1 keys from static", "<h1>polymur-gateway</h1>")
	if t.Failed() {
		t.Logf("rendered DOM:\n%s", dom)
	}
}

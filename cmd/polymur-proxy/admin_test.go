package main

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

func TestAdminHTTP(t *testing.T) {
	g := &fakeGateway{}
	srv := httptest.NewServer(g)
	defer srv.Close()
	d := testutil.StartDaemon(t, run, "-gateway", srv.URL, "-api-key", "secret", "-listen-addr", "127.0.0.1:0",
		"-stat-addr", "", "-api-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-flush-interval", "20ms")
	base := "http://" + d.Addrs["admin"]
	var sb strings.Builder
	for i := range 300 {
		fmt.Fprintf(&sb, "proxy.admin%d %d 1700000000\n", i, i)
	}
	d.Send(t, "listen", sb.String())
	testutil.WaitFor(t, "delivery", 60*time.Second, func() bool { l, _ := g.snapshot(); return len(l) == 300 })
	testutil.WaitFor(t, "counted", 60*time.Second, func() bool {
		return strings.Contains(testutil.Scrape(t, base+"/metrics"), "polymur_proxy_points_sent_total 300")
	})
	metrics := testutil.Scrape(t, base+"/metrics")
	testutil.HasAll(t, "/metrics", metrics, "polymur_proxy_post_duration_seconds_bucket", "polymur_proxy_post_duration_seconds_count",
		"polymur_lines_accepted_total 300", "polymur_proxy_gateway_failing 0", "polymur_proxy_wire_bytes_total")
	if code, body := testutil.Get(t, base+"/readyz"); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
	_, page := testutil.Get(t, base+"/")
	testutil.HasAll(t, "status page", page, "<title>polymur-proxy status</title>")
	_, stats := testutil.Get(t, base+"/api/v1/stats")
	testutil.HasAll(t, "/api/v1/stats", stats, `"output":`, `"post_latency":`)
	if code, _ := testutil.Get(t, base+"/api/v1/destinations"); code != 404 {
		t.Fatalf("the proxy has no destination API, got %d", code)
	}
}

func TestNotReadyWhileGatewayFails(t *testing.T) {
	d := testutil.StartDaemon(t, run, "-gateway", "http://"+testutil.FreeAddr(t), "-api-key", "k", "-listen-addr", "127.0.0.1:0",
		"-stat-addr", "", "-admin-addr", "127.0.0.1:0", "-flush-interval", "20ms")
	base := "http://" + d.Addrs["admin"]
	d.Send(t, "listen", "proxy.nogw 1 1700000000\n")
	testutil.WaitFor(t, "not ready", 60*time.Second, func() bool {
		code, body := testutil.Get(t, base+"/readyz")
		return code == 503 && strings.Contains(body, "gateway is failing")
	})
}

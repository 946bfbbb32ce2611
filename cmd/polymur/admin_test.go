package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

var get = testutil.Get

func TestAdminHTTP(t *testing.T) {
	a, b := testutil.NewSink(t), testutil.NewSink(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("admin-token-for-tests\n"), 0o600)
	d := start(t, "-admin-addr", "127.0.0.1:0", "-distribution", "hash-route", "-admin-write", "-admin-token-file", tokenFile,
		"-destinations", a.Addr()+":a,"+b.Addr()+":b")
	base := "http://" + d.Addrs["admin"]
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, "admin.m%d %d 1700000000\n", i, i)
	}
	sb.WriteString("not a metric\n")
	d.Send(t, "listen", sb.String())
	if !testutil.WaitTotal(1000, limit, a, b) {
		t.Fatal("lines not delivered")
	}
	testutil.WaitFor(t, "ready", limit, func() bool { c, _ := get(t, base+"/readyz"); return c == 200 })

	metrics := testutil.Scrape(t, base+"/metrics")
	testutil.HasAll(t, "/metrics", metrics,
		"polymur_points_received_total 1000",
		`polymur_lines_rejected_total{reason="value"} 1`,
		`polymur_destination_up{destination="`+a.Addr()+`:a"} 1`,
		`polymur_destination_queue_capacity_points{destination="`+b.Addr()+`:b"} 4096`,
		"polymur_destination_write_duration_seconds_bucket",
		"polymur_position_cache_sampled_lookups_total", "polymur_position_cache_off 0",
		"go_goroutines", "process_resident_memory_bytes")

	// A cross-site form post (any web page the operator visits can send
	// one) and a DNS-rebinding request are refused even with -admin-write;
	// nothing is registered.
	evil := testutil.NewSink(t)
	for _, hdr := range []map[string]string{
		{"Content-Type": "text/plain", "Origin": "http://attacker.example"},
		{"Host": "rebind.evil.example:2040", "Authorization": "Bearer admin-token-for-tests"},
		{"Content-Type": "text/plain"}, // no token
	} {
		if code, body := testutil.Request(t, http.MethodPost, base+"/api/v1/destinations?destination="+evil.Addr(), "x", hdr); code != 403 && code != 401 {
			t.Fatalf("hostile POST %v: %d %s", hdr, code, body)
		}
	}
	if got := d.Ask(t, "api", "getdest"); strings.Contains(got, evil.Addr()) {
		t.Fatalf("a hostile request registered a destination: %s", got)
	}

	// The HTTP destination API is the TCP one's twin.
	c := testutil.NewSink(t)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/destinations", strings.NewReader(c.Addr()+":c"))
	req.Header.Set("Authorization", "Bearer admin-token-for-tests")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST destination: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := d.Ask(t, "api", "getdest"); !strings.Contains(got, c.Addr()+":c") {
		t.Fatalf("getdest after HTTP POST: %s", got)
	}
	if _, route := get(t, base+"/api/v1/route?metric=admin.m1"); !strings.Contains(route, d.Ask(t, "api", "route admin.m1")[:10]) {
		t.Fatalf("HTTP route %s disagrees with TCP route", route)
	}

	// Every destination down: not ready (the load balancer stops sending).
	a.Stop()
	b.Stop()
	c.Stop()
	testutil.WaitFor(t, "not ready", limit, func() bool {
		code, body := get(t, base+"/readyz")
		return code == 503 && strings.Contains(body, "every destination is down")
	})
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("healthz while destinations are down: %d", code)
	}
}

// The status page as a person sees it: rendered by headless Chromium, it
// shows the destinations with their state and the counters.
func TestStatusPageInChromium(t *testing.T) {
	up, down := testutil.NewSink(t), testutil.NewSink(t)
	down.Stop()
	d := start(t, "-admin-addr", "127.0.0.1:0", "-destinations", up.Addr()+":up,"+down.Addr()+":down", "-outgoing-queue-cap", "100000")
	var sb strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&sb, "page.m%d %d 1700000000\n", i, i)
	}
	sb.WriteString("no.value\nbad.value x 1700000000\n")
	d.Send(t, "listen", sb.String())
	if !up.WaitCount(5000, limit) {
		t.Fatal("lines not delivered")
	}
	testutil.WaitFor(t, "the rejected lines kept", limit, func() bool {
		_, body := testutil.Get(t, "http://"+d.Addrs["admin"]+"/api/v1/rejected")
		return strings.Contains(body, `"line": "no.value"`) && strings.Contains(body, `"line": "bad.value x 1700000000"`) && strings.Contains(body, `"client": "127.0.0.1"`)
	})
	if got := d.Ask(t, "api", "putdest 127.0.0.1:1:gone"); !strings.HasPrefix(got, "Registered") {
		t.Fatal(got)
	}
	d.Ask(t, "api", "deldest 127.0.0.1:1:gone")

	shot := filepath.Join(t.TempDir(), "status.png")
	if dir := os.Getenv("POLYMUR_SCREENSHOT_DIR"); dir != "" {
		shot = filepath.Join(dir, "polymur-status.png")
	}
	dom := testutil.RenderPage(t, "http://"+d.Addrs["admin"]+"/", 5*time.Second, shot)
	for _, want := range []string{
		`data-loaded="yes"`,
		`data-dest="` + up.Addr() + `:up"`, `data-dest="` + down.Addr() + `:down"`, `data-dest="127.0.0.1:1:gone"`,
		`class="state connected"`, `class="state removed"`,
		"points sent", "5000", "destination write",
		"Rejected lines", "bad.value x 1700000000",
		// The charts of the last minutes, drawn inline; the running
		// configuration; why /readyz says what it says.
		`data-chart="throughput"`, `data-series="in"`, `data-series="out"`, `data-chart="dropped"`,
		`data-chart="queued"`, `data-series="` + down.Addr() + `:down"`, "<polyline",
		"Running configuration", `data-listener="listen"`, `data-listener="admin"`, "distribution broadcast",
		`id="ready" class="ok"`, "ready: /readyz answers 200",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if !strings.Contains(dom, `class="state reconnecting"`) && !strings.Contains(dom, `class="state down"`) {
		t.Error("the stopped destination is shown neither reconnecting nor down")
	}
	if t.Failed() {
		t.Logf("rendered DOM:\n%s", dom)
	}
	t.Logf("screenshot: %s", shot)
}

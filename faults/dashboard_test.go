package faults

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/polymur/polymur/internal/testutil"
)

// Every metric contrib/grafana/polymur.json queries exists in /metrics of
// running daemons: polymur (with a UDP listener, a destination that is
// down, a rejected line), polymur-gateway and polymur-proxy.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "contrib", "grafana", "polymur.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	names := map[string]string{} // metric → panel
	metric := regexp.MustCompile(`polymur_[a-z0-9_]+`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				names[strings.TrimSuffix(m, "_bucket")] = p.Title
			}
		}
	}
	get := func(addr string) string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}

	sink := testutil.NewSink(t)
	admin, udp := testutil.FreeAddr(t), testutil.FreeAddr(t)
	r := startPolymur(t, "-destinations", sink.Addr()+",127.0.0.1:1", "-admin-addr", admin, "-udp-listen-addr", udp,
		"-dead-after", "1", "-outgoing-queue-cap", "10", "-reconnect-max", "250ms", "-drain-timeout", "500ms")
	testutil.SendTCP(t, r.listen, []byte("not a metric line\n"))
	u, _ := net.Dial("udp", udp)
	u.Write([]byte("dash.udp 1 1700000000\n"))
	u.Close()
	testutil.WaitFor(t, "the dead destination's points dropped", limit, func() bool {
		testutil.SendTCP(t, r.listen, []byte(strings.Repeat("dash.m 1 1700000000\n", 50)))
		return strings.Contains(get(admin), "polymur_points_dropped_total")
	})
	have := get(admin)

	gwAdmin := testutil.FreeAddr(t)
	gw := startDevGateway(t, sink.Addr(), "-admin-addr", gwAdmin)
	req, _ := http.NewRequest(http.MethodPost, "http://"+gw.addr+"/ingest", strings.NewReader(""))
	req.Header.Set("X-Polymur-Key", "123")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	have += get(gwAdmin)

	pxListen, pxAPI, pxAdmin := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	px := testutil.StartProc(t, bin("polymur-proxy"), nil, "-gateway", "http://"+gw.addr, "-api-key", "123",
		"-listen-addr", pxListen, "-api-addr", pxAPI, "-stat-addr", "", "-admin-addr", pxAdmin)
	testutil.WaitFor(t, "proxy", limit, func() bool { return testutil.Ask(pxAPI, "ping") == "pong" })
	have += get(pxAdmin)

	for name, panel := range names {
		if !regexp.MustCompile(`(?m)^` + name + `(_bucket)?[{ ]`).MatchString(have) {
			t.Errorf("panel %q queries %s, which no daemon exports", panel, name)
		}
	}
	t.Logf("%d metrics in %d panels, all exported", len(names), len(dash.Panels))
	px.Stop(t)
	gw.Stop(t)
	r.Stop(t)
}

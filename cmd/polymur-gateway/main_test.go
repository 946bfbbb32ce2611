package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/consul"
	"github.com/polymur/polymur/internal/testutil"
)

const limit = 60 * time.Second // only keeps a broken test from hanging

func start(t *testing.T, args ...string) *testutil.Daemon {
	t.Helper()
	base := []string{"-listen-addr", "127.0.0.1", "-listen-http-port", "0", "-listen-https-port", "0",
		"-api-addr", "127.0.0.1:0", "-stat-addr", "127.0.0.1:0"}
	return testutil.StartDaemon(t, run, append(base, args...)...)
}

var client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 30 * time.Second}

func post(t *testing.T, url, key, body string) int {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	io.WriteString(w, body)
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, url, &b)
	req.Header.Set("X-Polymur-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestDevModeHashRouteWithKeyPrefix(t *testing.T) {
	a, b, c := testutil.NewSink(t), testutil.NewSink(t), testutil.NewSink(t)
	d := start(t, "-dev-mode", "-key-prefix", "-distribution", "hash-route",
		"-destinations", a.Addr()+":a,"+b.Addr()+":b,"+c.Addr()+":c")
	url := "http://" + d.Addrs["http"] + "/ingest"
	var body strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&body, "gw.metric%d %d 1700000000\n", i, i)
	}
	body.WriteString("\n \nbad\n")
	if code := post(t, url, "123", body.String()); code != 200 {
		t.Fatalf("status %d", code)
	}
	if code := post(t, url, "1234", "x 1 2\n"); code != 401 {
		t.Fatalf("bad key: %d", code)
	}
	if !testutil.WaitTotal(3000, limit, a, b, c) {
		t.Fatalf("delivered %d of 3000", a.Count()+b.Count()+c.Count())
	}
	for _, s := range []*testutil.Sink{a, b, c} {
		for _, l := range s.Lines()[:10] {
			name := strings.Fields(l)[0]
			if !strings.HasPrefix(name, "dev.gw.metric") {
				t.Fatalf("line without key prefix: %q", l)
			}
			if route := strings.TrimSpace(d.Ask(t, "api", "route "+name)); !strings.HasPrefix(route, strings.Split(s.Addr(), ":")[0]) || !strings.Contains(route, s.Addr()) {
				t.Fatalf("%s at %s, route says %s", name, s.Addr(), route)
			}
		}
	}
	stats := d.Ask(t, "api", "stats")
	for _, want := range []string{`"keys"`, `"source": "static"`, `"lines_accepted": 3000`, `"401": 1`} {
		if !strings.Contains(stats, want) {
			t.Fatalf("stats lack %s:\n%s", want, stats)
		}
	}
}

func TestHTTPSOnly(t *testing.T) {
	files := testutil.NewTLSFiles(t)
	s := testutil.NewSink(t)
	d := start(t, "-dev-mode", "-listen-http-port", "off", "-cert", files.CertFile, "-key", files.KeyFile, "-destinations", s.Addr())
	if _, ok := d.Addrs["http"]; ok {
		t.Fatal("plain HTTP listener started although turned off")
	}
	if code := post(t, "https://"+d.Addrs["https"]+"/ingest", "123", "tls.metric 1 1700000000\n"); code != 200 {
		t.Fatalf("status %d", code)
	}
	if !s.WaitCount(1, limit) || s.Lines()[0] != "tls.metric 1 1700000000" {
		t.Fatalf("sink got %q", s.Lines())
	}
}

func TestKeysFromRealConsul(t *testing.T) {
	agent := testutil.StartConsul(t)
	t.Setenv("CONSUL_HTTP_ADDR", agent.Addr)
	store, err := consul.NewStore("", "")
	if err != nil {
		t.Fatal(err)
	}
	key, err := store.Create("customer-a")
	if err != nil {
		t.Fatal(err)
	}
	agent.Put("polymur/gateway/keys/", nil) // the folder entry that once let keyless requests in
	s := testutil.NewSink(t)
	d := start(t, "-key-prefix", "-key-refresh", "2s", "-destinations", s.Addr())
	url := "http://" + d.Addrs["http"] + "/ingest"
	deadline := time.Now().Add(limit)
	for post(t, url, key, "app.rate 1 1700000000\n") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("key never accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !s.WaitCount(1, limit) || s.Lines()[0] != "customer-a.app.rate 1 1700000000" {
		t.Fatalf("sink got %q", s.Lines())
	}
	if code := post(t, url, "", "x 1 2\n"); code != 401 {
		t.Fatalf("empty key: %d", code)
	}
	if err := store.Delete("customer-a"); err != nil {
		t.Fatal(err)
	}
	for post(t, url, key, "app.rate 2 1700000000\n") != 401 {
		if time.Now().After(deadline) {
			t.Fatal("revoked key still accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBadConfigurationFailsAtStart(t *testing.T) {
	files := testutil.NewTLSFiles(t)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"cert without key", []string{"-cert", files.CertFile}, nil, "-cert and -key"},
		{"nothing to listen on", []string{"-listen-http-port", "off"}, nil, "nothing to listen on"},
		{"bad distribution", []string{"-distribution", "foo"}, nil, "-distribution"},
		{"bad int env", nil, map[string]string{"POLYMUR_GW_INCOMING_QUEUE_CAP": "abc"}, "POLYMUR_GW_INCOMING_QUEUE_CAP"},
		{"bad bool env", nil, map[string]string{"POLYMUR_GW_DEV_MODE": "maybe"}, "POLYMUR_GW_DEV_MODE"},
		{"unreadable key file", []string{"-cert", files.CertFile, "-key", "/nonexistent"}, nil, "-listen-https-port"},
		{"bad refresh", []string{"-key-refresh", "10ms"}, nil, "-key-refresh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"-dev-mode", "-listen-addr", "127.0.0.1", "-listen-http-port", "0", "-listen-https-port", "0",
				"-api-addr", "", "-stat-addr", ""}, tc.args...)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := run(ctx, args, io.Discard, io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

// The gateway routes by a carbon-c-relay configuration too.
func TestGatewayConfig(t *testing.T) {
	a, b := testutil.NewSink(t), testutil.NewSink(t)
	conf := filepath.Join(t.TempDir(), "gw.conf")
	os.WriteFile(conf, []byte("cluster a forward "+a.Addr()+";\ncluster b forward "+b.Addr()+";\nmatch ^web\\. send to a stop;\nmatch * send to b;\n"), 0o600)
	d := start(t, "-dev-mode", "-config", conf)
	url := "http://" + d.Addrs["http"] + "/ingest"
	if code := post(t, url, "123", "web.x 1 1700000000\ndb.y 2 1700000000\n"); code != 200 {
		t.Fatalf("status %d", code)
	}
	if !a.WaitCount(1, limit) || !b.WaitCount(1, limit) || a.Lines()[0] != "web.x 1 1700000000" || b.Lines()[0] != "db.y 2 1700000000" {
		t.Fatalf("a %q, b %q", a.Lines(), b.Lines())
	}
}

// TestGatewayRegistersInConsul: -consul-register makes the gateway a
// catalog service (its HTTPS address, a passing check on /readyz) that a
// load balancer or SERVICE.service.consul can use; gone after shutdown.
func TestGatewayRegistersInConsul(t *testing.T) {
	consul := testutil.StartConsul(t)
	t.Setenv("CONSUL_HTTP_ADDR", consul.Addr)
	s := testutil.NewSink(t)
	d := start(t, "-dev-mode", "-destinations", s.Addr(), "-admin-addr", "127.0.0.1:0", "-consul-register")
	_, port, _ := strings.Cut(d.Addrs["https"], ":")
	testutil.WaitFor(t, "the gateway registered with a passing check", 60*time.Second, func() bool {
		h := consul.API("GET", "health/service/polymur-gateway?passing=true", "")
		return strings.Contains(h, `"Port":`+port) && strings.Contains(h, `"Status":"passing"`)
	})
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := consul.API("GET", "catalog/service/polymur-gateway", ""); strings.Contains(got, `"ServicePort":`+port) {
		t.Fatalf("still registered after shutdown: %s", got)
	}
}

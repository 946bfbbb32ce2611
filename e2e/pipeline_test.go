// Package e2e runs the built binaries together, as users run them: a real
// Consul agent, pgw-key, polymur-gateway over HTTPS and polymur-proxy, with
// Graphite sinks on loopback.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

var binDir string

func TestMain(m *testing.M) { testutil.MainWithCommands(m, "..", &binDir) }

func startProc(t *testing.T, env []string, name string, args ...string) *testutil.Proc {
	return testutil.StartProc(t, filepath.Join(binDir, name), env, args...)
}

var ask = testutil.Ask

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, 90*time.Second, cond)
}

func TestProxyGatewayPipeline(t *testing.T) {
	consul := testutil.StartConsul(t)
	env := []string{"CONSUL_HTTP_ADDR=" + consul.Addr}

	// A key created the way operators do it.
	pgw := exec.Command(filepath.Join(binDir, "pgw-key"), "create", "site-a")
	pgw.Env = append(os.Environ(), env...)
	out, err := pgw.CombinedOutput()
	out2 := string(out)
	if err != nil || !strings.HasPrefix(out2, "Successfully registered site-a with key ") {
		t.Fatalf("pgw-key: %v %s", err, out2)
	}
	key := strings.TrimSpace(strings.TrimPrefix(out2, "Successfully registered site-a with key "))

	tlsFiles := testutil.NewTLSFiles(t)
	sinks := []*testutil.Sink{testutil.NewSink(t), testutil.NewSink(t), testutil.NewSink(t)}
	var dests []string
	for i, s := range sinks {
		dests = append(dests, fmt.Sprintf("%s:%c", s.Addr(), 'a'+i))
	}
	gwAddr, gwAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
	host, port, _ := net.SplitHostPort(gwAddr)
	gwArgs := []string{"-listen-addr", host, "-listen-http-port", "off", "-listen-https-port", port,
		"-cert", tlsFiles.CertFile, "-key", tlsFiles.KeyFile, "-api-addr", gwAPI, "-stat-addr", "",
		"-distribution", "hash-route", "-destinations", strings.Join(dests, ","), "-key-refresh", "5s"}
	gw := startProc(t, env, "polymur-gateway", gwArgs...)
	gwReady := func() bool {
		req, _ := http.NewRequest(http.MethodPost, "https://"+gwAddr+"/ping", nil)
		req.Header.Set("X-Polymur-Key", key)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	waitFor(t, "gateway with the key loaded", gwReady)

	pxListen, pxAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
	px := startProc(t, nil, "polymur-proxy", "-gateway", "https://"+gwAddr, "-api-key", key, "-cert", tlsFiles.CertFile,
		"-listen-addr", pxListen, "-api-addr", pxAPI, "-stat-addr", "", "-flush-interval", "100ms",
		// The restart below takes longer than the whole 300,000-line stream:
		// the queue must hold all of it (the 32 MiB default holds about as
		// much; a longer outage is what -spool-dir is for).
		"-queue-bytes", "134217728")
	waitFor(t, "proxy", func() bool { return ask(pxAPI, "ping") == "pong" })

	const n = 1_000_000
	var input bytes.Buffer
	names := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("site.host%03d.app%d.requests.count", i%500, i)
		names = append(names, name)
		fmt.Fprintf(&input, "%s %d 1700000000\n", name, i%1000)
	}
	start := time.Now()
	testutil.SendTCP(t, pxListen, input.Bytes())
	total := func() int { return sinks[0].Count() + sinks[1].Count() + sinks[2].Count() }
	waitFor(t, "1,000,000 lines at the sinks", func() bool { return total() >= n })
	elapsed := time.Since(start)
	if got := total(); got != n {
		t.Fatalf("sinks got %d lines, want %d", got, n)
	}

	// Exactly where carbon_ch puts them (polymur -test on the same ring).
	placement := exec.Command(filepath.Join(binDir, "polymur"), "-test", "-distribution", "hash-route", "-destinations", strings.Join(dests, ","))
	placement.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	pout, err := placement.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(pout))
	for sc.Scan() {
		name, dest, _ := strings.Cut(sc.Text(), "\t")
		want[name] = dest
	}
	seen := map[string]bool{}
	for i, s := range sinks {
		for _, l := range s.Lines() {
			name := l[:strings.IndexByte(l, ' ')]
			if !strings.HasPrefix(name, "site.") {
				t.Fatalf("unexpected line %q", l)
			}
			if want[name] != dests[i] {
				t.Fatalf("%s at %s, carbon_ch says %s", name, dests[i], want[name])
			}
			if seen[name] {
				t.Fatalf("%s delivered twice", name)
			}
			seen[name] = true
		}
	}
	stats := ask(pxAPI, "stats")
	raw, wire := testutil.JSONInt(stats, "raw_bytes"), testutil.JSONInt(stats, "gzip_bytes")
	t.Logf("proxy → gateway (HTTPS) → 3 sinks: %d lines in %v (%.0f lines/s); wire %d bytes for %d raw (1/%.1f)",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), wire, raw, float64(raw)/float64(wire))
	if wire == 0 || wire*5 > raw {
		t.Fatalf("wire bytes %d vs raw %d: want at most 1/5", wire, raw)
	}

	// Gateway restarted in the middle of a stream: nothing is lost.
	const m = 300_000
	var second bytes.Buffer
	for i := range m {
		fmt.Fprintf(&second, "restart.host%03d.m%d %d 1700000000\n", i%300, i, i)
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		c, err := net.Dial("tcp", pxListen)
		if err != nil {
			return
		}
		defer c.Close()
		data := second.Bytes()
		for len(data) > 0 { // paced so the restart lands mid-stream
			k := min(len(data), 64<<10)
			c.Write(data[:k])
			data = data[k:]
			time.Sleep(2 * time.Millisecond)
		}
	}()
	waitFor(t, "stream under way", func() bool { return total() > n+m/10 })
	gw.Stop(t)
	gw = startProc(t, env, "polymur-gateway", gwArgs...)
	waitFor(t, "gateway back", gwReady)
	<-sent
	waitFor(t, "every line after the restart", func() bool { return total() >= n+m })
	time.Sleep(500 * time.Millisecond) // let any duplicate show up
	if got := total(); got != n+m {
		t.Fatalf("after a gateway restart the sinks hold %d lines, want %d (lost or duplicated)", got, n+m)
	}
	px.Stop(t)
	gw.Stop(t)
}

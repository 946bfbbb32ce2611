package faults

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

func kill9(t *testing.T, p *testutil.Proc) {
	t.Helper()
	p.Cmd.Process.Signal(syscall.SIGKILL)
	testutil.WaitFor(t, p.Name()+" killed", limit, p.Exited)
}

// kill -9 (the OOM killer, a crash) with one destination down: with
// -spool-mode overflow the memory queue is lost (measured and logged here:
// that is what the mode promises); with -spool-mode always every line
// polymur accepted is delivered after the restart, each on its carbon_ch
// node.
func TestKill9WithSpoolModes(t *testing.T) {
	for _, mode := range []string{"overflow", "always"} {
		t.Run(mode, func(t *testing.T) {
			up, down := testutil.NewSink(t), testutil.NewSink(t)
			down.Stop()
			dests := []string{up.Addr() + ":a", down.Addr() + ":b"}
			r := startPolymur(t, "-distribution", "hash-route", "-destinations", strings.Join(dests, ","),
				"-spool-dir", t.TempDir(), "-spool-mode", mode, "-dead-after", "100")
			const n = 50_000
			input := spoolInput("crash."+mode, n)
			testutil.SendTCP(t, r.listen, input)
			var names []string
			for l := range strings.SplitSeq(strings.TrimSpace(string(input)), "\n") {
				name, _, _ := strings.Cut(l, " ")
				names = append(names, name)
			}
			upShare := 0
			for _, d := range placement(t, strings.Join(dests, ","), names) {
				if d == dests[0] {
					upShare++
				}
			}
			testutil.WaitFor(t, "every line received", limit, func() bool { return r.stat("received") == n })
			// The up node must have its whole share first: what only the
			// down node held is what the case is about.
			testutil.WaitFor(t, "the up node has its share", limit, func() bool { return up.Count() >= upShare })
			kill9(t, r.Proc)
			down.Start()
			r.start(t)
			if mode == "overflow" {
				// What the spool held arrives; the memory queue (4096
				// points and at most one batch more) is gone.
				const queue = 4096 + 250
				testutil.WaitFor(t, "the spool replayed", limit, func() bool { a, _ := uniq(up); b, _ := uniq(down); return a+b >= n-queue })
				time.Sleep(300 * time.Millisecond)
				d, _ := uniq(down)
				u, _ := uniq(up)
				t.Logf("overflow: kill -9 lost %d of %d lines (the down node's memory queue)", n-d-u, n)
				if n-d-u > queue {
					t.Fatalf("overflow lost %d lines, more than the memory queue", n-d-u)
				}
				r.Stop(t)
				return
			}
			testutil.WaitFor(t, "every line delivered", limit, func() bool { a, _ := uniq(up); b, _ := uniq(down); return a+b == n })
			time.Sleep(300 * time.Millisecond)
			_, dupA := uniq(up)
			_, dupB := uniq(down)
			t.Logf("always: kill -9 lost 0 of %d lines, %d delivered twice", n, dupA+dupB)
			want := placement(t, strings.Join(dests, ","), names)
			for i, s := range []*testutil.Sink{up, down} {
				for _, l := range s.Lines() {
					name, _, _ := strings.Cut(l, " ")
					if want[name] != dests[i] {
						t.Fatalf("%s at %s, carbon_ch puts it on %s", name, dests[i], want[name])
					}
				}
			}
			r.Stop(t)
		})
	}
}

// polymur-proxy with the gateway down: with -spool-mode always, kill -9
// loses none of the lines it accepted; they reach the gateway's
// destination after the restart.
func TestKill9ProxyWriteAhead(t *testing.T) {
	s := testutil.NewCountingSink(t)
	gwAddr := testutil.FreeAddr(t)
	listen := testutil.FreeAddr(t)
	dir := t.TempDir()
	api := testutil.FreeAddr(t)
	args := []string{"-listen-addr", listen, "-stat-addr", "", "-api-addr", api, "-gateway", "http://" + gwAddr, "-api-key", "123",
		"-spool-dir", dir, "-spool-mode", "always", "-flush-interval", "50ms"}
	px := testutil.StartProc(t, bin("polymur-proxy"), nil, args...)
	testutil.WaitFor(t, "proxy API", limit, func() bool { return testutil.Ask(api, "ping") == "pong" })
	const n = 100_000
	testutil.SendTCP(t, listen, spoolInput("proxycrash", n))
	// Write-ahead: a line counts as received once it is in the spool.
	testutil.WaitFor(t, "every line received", limit, func() bool { return testutil.JSONInt(testutil.Ask(api, "stats"), "received") == n })
	kill9(t, px)
	_, port, _ := net.SplitHostPort(gwAddr)
	gw := testutil.StartProc(t, bin("polymur-gateway"), nil, "-dev-mode", "-listen-addr", "127.0.0.1",
		"-listen-http-port", port, "-api-addr", "", "-stat-addr", "", "-destinations", s.Addr())
	px = testutil.StartProc(t, bin("polymur-proxy"), nil, args...)
	testutil.WaitFor(t, "every accepted line at the destination", limit, func() bool { return s.Count() >= n })
	time.Sleep(300 * time.Millisecond)
	t.Logf("proxy kill -9 with the gateway down: %d of %d lines delivered after the restart", s.Count(), n)
	if s.Count() < n {
		t.Fatalf("lost %d lines", n-s.Count())
	}
	px.Stop(t)
	gw.Stop(t)
}

// SIGTERM on a proxy whose gateway is down, with a spool: what it holds goes
// to the spool at once — it does not retry until its (here 10-minute) drain
// deadline — and the next start sends it.
func TestProxyStopWithGatewayDownSpoolsAtOnce(t *testing.T) {
	s := testutil.NewCountingSink(t)
	gwAddr, listen, api := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	args := []string{"-listen-addr", listen, "-stat-addr", "", "-api-addr", api, "-gateway", "http://" + gwAddr, "-api-key", "123",
		"-spool-dir", t.TempDir(), "-drain-timeout", "10m", "-flush-interval", "50ms"}
	px := testutil.StartProc(t, bin("polymur-proxy"), nil, args...)
	testutil.WaitFor(t, "proxy API", limit, func() bool { return testutil.Ask(api, "ping") == "pong" })
	const n = 20_000
	testutil.SendTCP(t, listen, spoolInput("proxystop", n))
	testutil.WaitFor(t, "every line received", limit, func() bool { return testutil.JSONInt(testutil.Ask(api, "stats"), "received") == n })
	px.Stop(t) // fails the test if it waited out the 10-minute drain
	_, port, _ := net.SplitHostPort(gwAddr)
	gw := testutil.StartProc(t, bin("polymur-gateway"), nil, "-dev-mode", "-listen-addr", "127.0.0.1",
		"-listen-http-port", port, "-api-addr", "", "-stat-addr", "", "-destinations", s.Addr())
	px = testutil.StartProc(t, bin("polymur-proxy"), nil, args...)
	testutil.WaitFor(t, "the spooled lines delivered", limit, func() bool { return s.Count() >= n })
	px.Stop(t)
	gw.Stop(t)
}

// The gateway with -spool-mode always answers 200 only once a request's
// lines are on disk: killed (-9, the OOM killer) with its destination down
// and restarted, it delivers every line the proxy was told was accepted;
// the proxy resends what was not.
func TestKill9GatewayWriteAhead(t *testing.T) {
	s := testutil.NewCountingSink(t)
	s.Stop()
	gw := startDevGateway(t, s.Addr(), "-spool-dir", t.TempDir(), "-spool-mode", "always")
	listen, api := testutil.FreeAddr(t), testutil.FreeAddr(t)
	px := testutil.StartProc(t, bin("polymur-proxy"), nil, "-listen-addr", listen, "-stat-addr", "", "-api-addr", api,
		"-gateway", "http://"+gw.addr, "-api-key", "123", "-flush-interval", "50ms")
	testutil.WaitFor(t, "proxy API", limit, func() bool { return testutil.Ask(api, "ping") == "pong" })
	const n = 200_000
	testutil.SendTCP(t, listen, spoolInput("gwcrash", n))
	testutil.WaitFor(t, "the gateway acknowledged every line", limit, func() bool {
		return testutil.JSONInt(testutil.Ask(api, "stats"), "sent") == n
	})
	kill9(t, gw.Proc)
	s.Start()
	gw.start(t)
	testutil.WaitFor(t, "every acknowledged line delivered", limit, func() bool { return s.Count() >= n })
	time.Sleep(300 * time.Millisecond)
	t.Logf("gateway kill -9 after acknowledging %d lines: %d delivered after the restart", n, s.Count())
	px.Stop(t)
	gw.Stop(t)
}

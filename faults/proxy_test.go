package faults

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// Front modes.
const (
	pass  int32 = iota // forward to the gateway
	busy               // answer 503 without forwarding
	stall              // hold the request past the proxy's timeout, forward nothing
)

// front sits between polymur-proxy and polymur-gateway (as a load balancer
// would) and misbehaves on demand.
type front struct {
	gateway string
	mode    atomic.Int32
	hold    time.Duration
	seen    [3]atomic.Int64
	client  http.Client
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	m := f.mode.Load()
	f.seen[m].Add(1)
	switch m {
	case busy:
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	case stall:
		select {
		case <-r.Context().Done(): // the proxy gave up
		case <-time.After(f.hold):
		}
		http.Error(w, "stalled", http.StatusGatewayTimeout)
		return
	}
	req, _ := http.NewRequest(r.Method, "http://"+f.gateway+r.URL.Path, bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := f.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// Case 4: polymur-proxy under steady load while what is in front of the
// gateway answers 503, then stalls past the proxy's -http-timeout, and while
// the gateway itself is restarted: every line arrives once.
func TestProxyThroughGatewayTrouble(t *testing.T) {
	sinks := []*testutil.Sink{testutil.NewCountingSink(t), testutil.NewCountingSink(t)}
	gwAddr, gwAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
	_, gwPort, _ := net.SplitHostPort(gwAddr)
	gwArgs := []string{"-dev-mode", "-listen-addr", "127.0.0.1", "-listen-http-port", gwPort, "-api-addr", gwAPI,
		"-stat-addr", "", "-distribution", "hash-route", "-destinations", sinks[0].Addr() + ":a," + sinks[1].Addr() + ":b"}
	startGW := func() *testutil.Proc {
		p := testutil.StartProc(t, bin("polymur-gateway"), nil, gwArgs...)
		testutil.WaitFor(t, "gateway", limit, func() bool { return testutil.Ask(gwAPI, "ping") == "pong" })
		return p
	}
	gw := startGW()

	const timeout = 2 * time.Second
	f := &front{gateway: gwAddr, hold: 3 * timeout}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)

	pxListen, pxAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
	px := testutil.StartProc(t, bin("polymur-proxy"), nil, "-gateway", srv.URL, "-api-key", "123",
		"-listen-addr", pxListen, "-api-addr", pxAPI, "-stat-addr", "", "-flush-interval", "100ms",
		"-http-timeout", timeout.String())
	testutil.WaitFor(t, "proxy", limit, func() bool { return testutil.Ask(pxAPI, "ping") == "pong" })

	ld := startLoad(t, pxListen, "gwtrouble", 20_000, false)
	phase := func(name string, mode int32, d time.Duration) {
		f.mode.Store(mode)
		t.Logf("%s for %v", name, d)
		time.Sleep(d)
	}
	phase("gateway answering", pass, 3*time.Second)
	phase("front answering 503", busy, 3*time.Second)
	phase("front stalling", stall, 2*timeout+time.Second)
	f.mode.Store(pass)
	t.Log("gateway restarted")
	gw.Stop(t)
	time.Sleep(time.Second) // nobody listening for a moment
	gw = startGW()
	time.Sleep(3 * time.Second)
	n, sum := ld.Stop(t)

	waitExact(t, "proxy → gateway → sinks", n, sum, sinks...)
	stats := testutil.Ask(pxAPI, "stats")
	t.Logf("%d lines, each delivered once; front saw %d forwarded, %d answered 503, %d stalled; proxy retries %d, dropped %s",
		n, f.seen[pass].Load(), f.seen[busy].Load(), f.seen[stall].Load(), testutil.JSONInt(stats, "retries"), droppedOf(stats))
	if f.seen[busy].Load() == 0 || f.seen[stall].Load() == 0 {
		t.Fatal("the proxy sent nothing during the 503 or the stall phase: the case tests nothing")
	}
	if d := droppedOf(stats); d != "{}" {
		t.Fatalf("proxy dropped %s", d)
	}
	px.Stop(t)
	gw.Stop(t)
}

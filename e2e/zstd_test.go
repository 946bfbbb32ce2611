package e2e

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/polymur/polymur/internal/testutil"
)

// polymur-proxy -compression zstd → polymur-gateway (dev mode) → a sink:
// every line arrives once, and the proxy counts what went on the wire.
func TestProxyGatewayZstd(t *testing.T) {
	sink := testutil.NewSink(t)
	gwAddr, gwAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
	host, port, _ := net.SplitHostPort(gwAddr)
	startProc(t, nil, "polymur-gateway", "-dev-mode", "-listen-addr", host, "-listen-http-port", port,
		"-api-addr", gwAPI, "-stat-addr", "", "-destinations", sink.Addr())
	waitFor(t, "gateway", func() bool { return ask(gwAPI, "ping") == "pong" })
	pxListen, pxAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
	startProc(t, nil, "polymur-proxy", "-gateway", "http://"+gwAddr, "-api-key", "123", "-compression", "zstd",
		"-listen-addr", pxListen, "-api-addr", pxAPI, "-stat-addr", "", "-flush-interval", "50ms")
	waitFor(t, "proxy", func() bool { return ask(pxAPI, "ping") == "pong" })

	const n = 200_000
	var input bytes.Buffer
	for i := range n {
		fmt.Fprintf(&input, "zstd.host%03d.app%d.requests.count %d 1700000000\n", i%500, i, i%1000)
	}
	testutil.SendTCP(t, pxListen, input.Bytes())
	waitFor(t, "200,000 lines at the sink", func() bool { return sink.Count() >= n })
	seen := map[string]bool{}
	for _, l := range sink.Lines() {
		if seen[l] {
			t.Fatalf("%q delivered twice", l)
		}
		seen[l] = true
	}
	if len(seen) != n {
		t.Fatalf("sink got %d distinct lines, want %d", len(seen), n)
	}
	stats := ask(pxAPI, "stats")
	raw, wire := testutil.JSONInt(stats, "raw_bytes"), testutil.JSONInt(stats, "gzip_bytes")
	t.Logf("zstd: wire %d bytes for %d raw (1/%.1f)", wire, raw, float64(raw)/float64(wire))
	if wire == 0 || wire*5 > raw {
		t.Fatalf("wire bytes %d vs raw %d: want at most 1/5", wire, raw)
	}
}

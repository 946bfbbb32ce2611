package faults

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

const storm = 10_000

// openAll opens n connections to addr, all held open at once, then runs use
// on each concurrently (which must close it). It returns how many uses
// reported success.
func openAll(t *testing.T, addr string, n int, use func(i int, c net.Conn) bool) int {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 256)
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				failed.Add(1)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d connections to %s failed", f, n, addr)
	}
	var ok atomic.Int64
	for i, c := range conns {
		wg.Go(func() {
			if use(i, c) {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return int(ok.Load())
}

// fdsBack waits until p has no more descriptors open than it had at base
// (a few for the runtime's own come and go).
func fdsBack(t *testing.T, p *testutil.Proc, base int) {
	t.Helper()
	var now int
	testutil.WaitFor(t, fmt.Sprintf("%s's descriptors back to %d", p.Name(), base), limit, func() bool {
		n, err := p.OpenFDs()
		if err != nil {
			t.Fatalf("%s: %v (did it crash?)\n%s", p.Name(), err, p.Logs)
		}
		now = n
		return n <= base+4
	})
	t.Logf("%s: %d descriptors before, %d after %d connections", p.Name(), base, now, storm)
}

func baseFDs(t *testing.T, p *testutil.Proc) int {
	t.Helper()
	n, err := p.OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Case 6: 10,000 concurrent connections that open and close — half send a
// line (or a batch) first, half send nothing, as health checks do — on
// every port of polymur, polymur-gateway and polymur-proxy: no crash, no
// descriptor leak, every line sent delivered.
func TestTenThousandConnections(t *testing.T) {
	sink := testutil.NewCountingSink(t)
	line := func(i int) string { return fmt.Sprintf("storm.m%d %d 1700000000\n", i, i) }
	lines := func(c net.Conn, i int) bool {
		defer c.Close()
		if i%2 == 1 {
			return false // connect and close
		}
		_, err := c.Write([]byte(line(i)))
		return err == nil
	}
	delivered := 0

	t.Run("polymur", func(t *testing.T) {
		r := startPolymur(t, "-destinations", sink.Addr())
		base := baseFDs(t, r.Proc)
		delivered += openAll(t, r.listen, storm, func(i int, c net.Conn) bool { return lines(c, i) })
		fdsBack(t, r.Proc, base)
		base = baseFDs(t, r.Proc)
		// The API serves 512 at once and answers the rest "busy" at once:
		// every ping gets one of the two, nobody waits in the backlog.
		var pongs atomic.Int64
		answered := openAll(t, r.api, storm, func(i int, c net.Conn) bool {
			defer c.Close()
			if i%2 == 1 {
				return false
			}
			fmt.Fprintln(c, "ping")
			s, _ := bufio.NewReader(c).ReadString('\n')
			if s == "pong\n" {
				pongs.Add(1)
			}
			return s == "pong\n" || strings.HasPrefix(s, "Error: busy: ")
		})
		t.Logf("API: %d of %d pings answered pong, the rest busy", pongs.Load(), storm/2)
		if answered != storm/2 || pongs.Load() == 0 {
			t.Fatalf("%d of %d pings answered (%d pong)", answered, storm/2, pongs.Load())
		}
		fdsBack(t, r.Proc, base)
		if !sink.WaitCount(delivered, limit) || sink.Count() != delivered {
			t.Fatalf("sink holds %d lines, %d were sent", sink.Count(), delivered)
		}
		r.Stop(t)
	})

	t.Run("gateway and proxy", func(t *testing.T) {
		gw := startDevGateway(t, sink.Addr())
		gwAddr := gw.addr
		base := baseFDs(t, gw.Proc)
		var busy atomic.Int64
		var lastErr atomic.Value
		accepted := openAll(t, gwAddr, storm, func(i int, c net.Conn) bool {
			if i%2 == 1 {
				c.Close()
				return false
			}
			body := gzipped(line(storm + i))
			// A batch answered 503 (too many requests in flight) or 408, or whose
			// connection the gateway closed (held idle past its header
			// timeout while the other connections were being opened), is
			// sent again on a new connection, as polymur-proxy does.
			for attempt := 0; ; attempt++ {
				if attempt > 0 {
					busy.Add(1)
					time.Sleep(50 * time.Millisecond)
					var err error
					if c, err = net.Dial("tcp", gwAddr); err != nil {
						lastErr.Store(err.Error()) // retried, as the proxy does
						if attempt == 600 {
							return false
						}
						continue
					}
				}
				fmt.Fprintf(c, "POST /ingest HTTP/1.1\r\nHost: gw\r\nX-Polymur-Key: 123\r\nContent-Length: %d\r\n\r\n", len(body))
				c.Write(body)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				c.Close()
				if err == nil {
					resp.Body.Close()
					// 503 (too many in flight) and 408 (the body came too
					// slowly on a loaded machine) are retried, as the proxy does.
					if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusRequestTimeout {
						if resp.StatusCode != 200 {
							lastErr.Store(resp.Status)
						}
						return resp.StatusCode == 200
					}
				}
				if attempt == 600 {
					return false
				}
			}
		})
		t.Logf("gateway: %d batches sent again (503, or the connection timed out idle)", busy.Load())
		if accepted != storm/2 {
			t.Fatalf("gateway accepted %d of %d batches (last failure: %v)", accepted, storm/2, lastErr.Load())
		}
		delivered += accepted
		fdsBack(t, gw.Proc, base)

		pxListen, pxAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
		px := testutil.StartProc(t, bin("polymur-proxy"), nil, "-gateway", "http://"+gwAddr, "-api-key", "123",
			"-listen-addr", pxListen, "-api-addr", pxAPI, "-stat-addr", "", "-flush-interval", "100ms")
		testutil.WaitFor(t, "proxy", limit, func() bool { return testutil.Ask(pxAPI, "ping") == "pong" })
		base = baseFDs(t, px)
		delivered += openAll(t, pxListen, storm, func(i int, c net.Conn) bool { return lines(c, 2*storm+i) })
		fdsBack(t, px, base)
		if !sink.WaitCount(delivered, limit) || sink.Count() != delivered {
			t.Fatalf("sink holds %d lines, %d were sent", sink.Count(), delivered)
		}
		px.Stop(t)
		gw.Stop(t)
	})
}

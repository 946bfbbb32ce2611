package faults

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// peakRSS is the process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func gzipLines(prefix string, n, pad int) []byte {
	var raw bytes.Buffer
	padding := strings.Repeat("x", pad)
	for i := range n {
		fmt.Fprintf(&raw, "%s.%s.m%d %d 1700000000\n", prefix, padding, i, i)
	}
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	zw.Write(raw.Bytes())
	zw.Close()
	return z.Bytes()
}

// poster is a proxy stand-in: it POSTs one body until the gateway answers
// 200 (retrying 503 like the proxy) and counts what was acknowledged.
type poster struct {
	url              string
	ok, busy, failed atomic.Int64
}

func (p *poster) post(body []byte, stop <-chan struct{}) bool {
	for {
		select {
		case <-stop:
			return false
		default:
		}
		req, _ := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(body))
		req.Header.Set("X-Polymur-Key", "123")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			p.failed.Add(1)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			p.ok.Add(1)
			return true
		case 503:
			p.busy.Add(1)
			time.Sleep(20 * time.Millisecond)
		default:
			p.failed.Add(1)
			return false
		}
	}
}

// The gateway's memory is bounded in bytes (-max-buffered-bytes, 128 MiB by
// default): with a stalled destination and 8 clients posting proxy-sized
// batches, and with a healthy destination and 8 clients posting ~60 MB
// requests at once, it stays under 512 MiB, the clients see 503 and retry,
// and every line of every acknowledged request is delivered, none twice.
func TestGatewayMemoryIsBounded(t *testing.T) {
	t.Run("stalled destination, proxy-sized batches", func(t *testing.T) {
		s := testutil.NewCountingSink(t)
		s.SetDelay(200 * time.Millisecond) // ~20 KB/s: stalled
		gw := startDevGateway(t, s.Addr())
		p := &poster{url: "http://" + gw.addr + "/ingest"}
		const per = 5000
		body := gzipLines("stall", per, 40)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for p.post(body, stop) {
				}
			})
		}
		time.Sleep(5 * time.Second)
		close(stop)
		wg.Wait()
		rss := peakRSS(t, gw.Pid())
		acked := int(p.ok.Load()) * per
		t.Logf("stalled: %d requests acknowledged (%d lines), %d answered 503, peak RSS %d MiB", p.ok.Load(), acked, p.busy.Load(), rss>>20)
		if rss > 512<<20 {
			t.Fatalf("gateway peak RSS %d MiB, want under 512", rss>>20)
		}
		if p.busy.Load() == 0 {
			t.Fatal("no 503: the bound was never reached")
		}
		s.SetDelay(0)
		testutil.WaitFor(t, "acknowledged lines delivered", limit, func() bool { return s.Count() >= acked })
		time.Sleep(300 * time.Millisecond)
		if s.Count() != acked {
			t.Fatalf("sink has %d lines, %d were acknowledged", s.Count(), acked)
		}
		gw.Stop(t)
	})
	t.Run("healthy destination, 60 MB requests", func(t *testing.T) {
		s := testutil.NewCountingSink(t)
		gw := startDevGateway(t, s.Addr())
		p := &poster{url: "http://" + gw.addr + "/ingest"}
		const per = 250_000
		body := gzipLines("huge", per, 200) // ~60 MB decoded
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { p.post(body, nil) })
		}
		wg.Wait()
		rss := peakRSS(t, gw.Pid())
		t.Logf("60 MB requests: %d of 8 acknowledged after %d 503s, peak RSS %d MiB", p.ok.Load(), p.busy.Load(), rss>>20)
		if rss > 512<<20 {
			t.Fatalf("gateway peak RSS %d MiB, want under 512", rss>>20)
		}
		if p.ok.Load() != 8 {
			t.Fatalf("%d of 8 requests acknowledged (%d failed)", p.ok.Load(), p.failed.Load())
		}
		testutil.WaitFor(t, "every line delivered", limit, func() bool { return s.Count() >= 8*per })
		time.Sleep(300 * time.Millisecond)
		if s.Count() != 8*per {
			t.Fatalf("sink has %d lines, want %d", s.Count(), 8*per)
		}
		gw.Stop(t)
	})
}

// -key-prefix with -spool-dir: a valid ~60 MB request grows past 64 MiB
// once prefixed; it used to exceed the spool's message limit and be dropped
// after the 200. Now it is spooled in bounded records and every line
// arrives, prefixed, once the destination is back.
func TestGatewayKeyPrefixSpoolsLargeRequest(t *testing.T) {
	s := testutil.NewSink(t)
	s.Stop()
	gw := startDevGateway(t, s.Addr(), "-key-prefix", "-spool-dir", t.TempDir(), "-dead-after", "1", "-spool-replay-rate", "2000000")
	addr := gw.addr
	const per = 1_200_000
	body := gzipLines("p", per, 20) // ~60 MB decoded, ~66 MB prefixed
	p := &poster{url: "http://" + addr + "/ingest"}
	if !p.post(body, nil) {
		t.Fatalf("request refused (%d failures)", p.failed.Load())
	}
	s.Start()
	testutil.WaitFor(t, "every line delivered", limit, func() bool { return s.Count() >= per })
	time.Sleep(300 * time.Millisecond)
	if s.Count() != per {
		t.Fatalf("%d lines delivered, want %d", s.Count(), per)
	}
	if l := s.Lines()[0]; !strings.HasPrefix(l, "dev.p.") {
		t.Fatalf("line not prefixed: %q", l)
	}
	gw.Stop(t)
}

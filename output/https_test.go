package output

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/internal/testutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// gateway is a fake /ingest that records lines and answers what plan says.
type gateway struct {
	mu       sync.Mutex
	lines    []string
	requests int
	plan     func(n int) int // status for the n-th /ingest request (1-based)
	headers  http.Header
	empty    int
	maxBody  int64 // bodies larger than this get 413 (0: no limit)
	tooLarge atomic.Int64
	hold     chan struct{} // when set, /ingest answers only once it is closed
}

func (g *gateway) handler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ping" {
		io.WriteString(w, "key is valid\n")
		return
	}
	if g.maxBody > 0 && r.ContentLength > g.maxBody {
		g.tooLarge.Add(1)
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		return
	}
	if g.hold != nil {
		<-g.hold
	}
	g.mu.Lock()
	g.requests++
	n := g.requests
	g.headers = r.Header.Clone()
	g.mu.Unlock()
	status := 200
	if g.plan != nil {
		status = g.plan(n)
	}
	var body []byte
	switch r.Header.Get("Content-Encoding") {
	case "zstd":
		d, err := zstd.NewReader(r.Body, zstd.WithDecoderConcurrency(1))
		if err != nil {
			http.Error(w, "not zstd", 400)
			return
		}
		body, err = io.ReadAll(d)
		d.Close()
		if err != nil {
			http.Error(w, "not zstd", 400)
			return
		}
	default:
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "not gzip", 400)
			return
		}
		body, _ = io.ReadAll(zr)
	}
	if status != 200 {
		http.Error(w, "planned failure", status)
		return
	}
	g.mu.Lock()
	if len(body) == 0 {
		g.empty++
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
		if l != "" {
			g.lines = append(g.lines, l)
		}
	}
	g.mu.Unlock()
	io.WriteString(w, "Batch Received\n")
}

func (g *gateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.lines)
}

func startOutput(t *testing.T, g *gateway, cfg Config) (*Output, *httptest.Server, func()) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(g.handler))
	t.Cleanup(srv.Close)
	cfg.Gateway, cfg.APIKey, cfg.Logger, cfg.InsecureSkipVerify = srv.URL, "k", quiet, true
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = time.Millisecond, 20*time.Millisecond
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 10 * time.Millisecond
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	stop := func() {
		cancel()
		o.CloseInput()
		<-done
	}
	return o, srv, stop
}

func sendLines(t *testing.T, o *Output, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i += 100 {
		b := batch.Get()
		for j := i; j < min(i+100, n); j++ {
			l := fmt.Sprintf("%s.m%d %d 1700000000\n", prefix, j, j)
			b.Append([]byte(l), strings.IndexByte(l, ' '))
		}
		if err := o.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
}

func waitCount(t *testing.T, g *gateway, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for g.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("gateway got %d of %d", g.count(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeliversInBatchesWithHeaders(t *testing.T) {
	g := &gateway{}
	o, _, stop := startOutput(t, g, Config{BatchSize: 1000})
	sendLines(t, o, "ok", 10000)
	waitCount(t, g, 10000)
	stop()
	if g.count() != 10000 || g.empty != 0 {
		t.Fatalf("lines %d, empty batches %d", g.count(), g.empty)
	}
	if g.headers.Get("X-Polymur-Key") != "k" || g.headers.Get("Content-Encoding") != "gzip" {
		t.Fatalf("headers %v", g.headers)
	}
	s := o.Stats()
	if s.Batches < 10 || s.WireBytes*5 > s.RawBytes {
		t.Fatalf("stats %+v: want ≥10 batches and ≥5× compression", s)
	}
}

func TestRetriesUntilAccepted(t *testing.T) {
	for _, status := range []int{500, 502, 503, 401, 429} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			// The first three attempts fail; nothing may be lost or doubled.
			g := &gateway{plan: func(n int) int {
				if n <= 3 {
					return status
				}
				return 200
			}}
			o, _, stop := startOutput(t, g, Config{AuthRetry: 10 * time.Millisecond})
			sendLines(t, o, "retry", 500)
			waitCount(t, g, 500)
			stop()
			if g.count() != 500 {
				t.Fatalf("got %d lines, want 500", g.count())
			}
			if o.Stats().Retries < 3 {
				t.Fatalf("retries %d", o.Stats().Retries)
			}
		})
	}
}

func TestPermanentRejectionIsCounted(t *testing.T) {
	g := &gateway{plan: func(int) int { return 400 }}
	o, _, stop := startOutput(t, g, Config{})
	sendLines(t, o, "bad", 10)
	deadline := time.Now().Add(30 * time.Second)
	for o.Stats().Dropped[DropRejected] != 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if d := o.Stats().Dropped[DropRejected]; d != 10 {
		t.Fatalf("dropped %d, want 10", d)
	}
}

func TestTooLargeIsSplit(t *testing.T) {
	g := &gateway{maxBody: 2500}
	o, _, stop := startOutput(t, g, Config{BatchSize: 1000})
	sendLines(t, o, "split", 1000)
	waitCount(t, g, 1000)
	stop()
	if g.tooLarge.Load() == 0 || g.count() != 1000 {
		t.Fatalf("413s %d, lines %d", g.tooLarge.Load(), g.count())
	}
}

// -compression zstd: every body is zstd, said in Content-Encoding, also
// the halves of a batch the gateway found too large.
func TestZstdBodies(t *testing.T) {
	g := &gateway{maxBody: 2500}
	o, _, stop := startOutput(t, g, Config{BatchSize: 1000, Encoding: "zstd"})
	sendLines(t, o, "z", 3000)
	waitCount(t, g, 3000)
	stop()
	if g.tooLarge.Load() == 0 || g.count() != 3000 {
		t.Fatalf("413s %d, lines %d", g.tooLarge.Load(), g.count())
	}
	if e := g.headers.Get("Content-Encoding"); e != "zstd" {
		t.Fatalf("Content-Encoding %q", e)
	}
	if _, err := New(Config{Gateway: "http://127.0.0.1:1", Encoding: "br"}); err == nil || !strings.Contains(err.Error(), "br") {
		t.Fatalf("encoding br: %v", err)
	}
}

func TestGatewayDownAtStartThenUp(t *testing.T) {
	// Reserve a port, start with nothing listening there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	o, err := New(Config{Gateway: "http://" + addr, APIKey: "k", Logger: quiet, RetryMin: time.Millisecond,
		RetryMax: 50 * time.Millisecond, FlushInterval: 10 * time.Millisecond, QueueCap: 100000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	sendLines(t, o, "early", 2000) // accepted while the gateway is down
	g := &gateway{}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(g.handler)}
	go srv.Serve(ln)
	defer srv.Close()
	waitCount(t, g, 2000)
	cancel()
	o.CloseInput()
	<-done
	if g.count() != 2000 || len(o.Stats().Dropped) != 0 {
		t.Fatalf("lines %d dropped %v", g.count(), o.Stats().Dropped)
	}
}

func TestFullQueueWhileFailingDropsAndCounts(t *testing.T) {
	g := &gateway{plan: func(int) int { return 500 }}
	o, _, stop := startOutput(t, g, Config{QueueCap: 5, Workers: 1, BatchSize: 100})
	// Make the gateway fail once so the output knows it is failing.
	sendLines(t, o, "f", 100)
	deadline := time.Now().Add(30 * time.Second)
	for !o.Stats().GatewayDown && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	sendLines(t, o, "g", 5000) // far more than the queue holds: must not block
	s := o.Stats()
	if s.Dropped[DropQueueFull] == 0 {
		t.Fatalf("no drops counted: %+v", s)
	}
	if s.Received+s.Dropped[DropQueueFull] != 5100 {
		t.Fatalf("received %d + dropped %d != 5100", s.Received, s.Dropped[DropQueueFull])
	}
	stop()
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Gateway: "gw.example.com"},
		{Gateway: "https://x", CAFile: "/nonexistent.pem"},
		{Gateway: "https://x", ClientCert: "/nonexistent.pem", ClientKey: "/nonexistent.pem"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestSpoolKeepsBatchesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	down := &gateway{plan: func(int) int { return 500 }}
	o, _, stop := startOutput(t, down, Config{SpoolDir: dir, QueueCap: 10, Workers: 1, BatchSize: 100, DrainGrace: 200 * time.Millisecond})
	sendLines(t, o, "kept", 5000) // the gateway refuses everything
	stop()
	s := o.Stats()
	if len(s.Dropped) != 0 || s.Spooled == 0 || down.count() != 0 {
		t.Fatalf("stats %+v, gateway got %d", s, down.count())
	}
	up := &gateway{}
	o2, _, stop2 := startOutput(t, up, Config{SpoolDir: dir})
	waitCount(t, up, 5000)
	stop2()
	if up.count() != 5000 || o2.Stats().Replayed != 5000 {
		t.Fatalf("after restart: gateway got %d, replayed %d", up.count(), o2.Stats().Replayed)
	}
	seen := map[string]bool{}
	for _, l := range up.lines {
		if seen[l] {
			t.Fatalf("duplicate %q", l)
		}
		seen[l] = true
	}
}

// TestRedirectsAreNotFollowed: a 307 to another host must not receive the
// API key or the batch, and a 301 must not turn POSTs into GETs that drop
// every batch; a redirect is an error naming Location, retried like a 5xx.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var stolen atomic.Int64
	thief := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Add(1)
		io.WriteString(w, "Batch Received\n")
	}))
	t.Cleanup(thief.Close)
	for _, code := range []int{301, 302, 307, 308} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			var redirects atomic.Int64
			g := &gateway{}
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/ingest" && redirects.Add(1) <= 3 {
					http.Redirect(w, r, thief.URL+"/ingest", code)
					return
				}
				g.handler(w, r)
			}))
			t.Cleanup(srv.Close)
			o, err := New(Config{Gateway: srv.URL, APIKey: "k", Logger: quiet, InsecureSkipVerify: true,
				RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, FlushInterval: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { o.Run(ctx); close(done) }()
			sendLines(t, o, "redir", 300)
			waitCount(t, g, 300)
			cancel()
			o.CloseInput()
			<-done
			if stolen.Load() != 0 {
				t.Fatalf("the redirect target got %d requests", stolen.Load())
			}
			s := o.Stats()
			if g.count() != 300 || s.Dropped[DropRejected] != 0 || s.Retries < 3 {
				t.Fatalf("lines %d, stats %+v: want all 300 after 3 retries, none dropped", g.count(), s)
			}
		})
	}
}

// The queue is bounded in bytes too: behind a healthy but stalled gateway
// the producer blocks (nothing dropped) once QueueBytes are queued, however
// many batches QueueCap would allow, and everything arrives when the
// gateway answers again.
func TestQueueBoundInBytes(t *testing.T) {
	g := &gateway{hold: make(chan struct{})}
	o, _, stop := startOutput(t, g, Config{QueueCap: 1 << 20, QueueBytes: 1 << 20, Workers: 1, BatchSize: 1000})
	defer stop()
	done := make(chan struct{})
	go func() { sendLines(t, o, "q", 200000); close(done) }()
	testutil.WaitFor(t, "the queue filled", 30*time.Second, func() bool { return o.gate.Held() >= 1<<19 })
	// 200,000 lines are several MiB: within 1 MiB the producer cannot have
	// queued them all.
	if s := o.Stats(); s.Received >= 200000 {
		t.Fatalf("200,000 lines queued behind a stalled gateway within 1 MiB: %+v", s)
	}
	if held := o.gate.Held(); held > 1<<20 {
		t.Fatalf("queue holds %d bytes, bound 1 MiB", held)
	}
	s := o.Stats()
	if len(s.Dropped) != 0 || s.QueueDepth > 1000 {
		t.Fatalf("stats behind the stalled gateway: %+v", s)
	}
	close(g.hold)
	<-done
	waitCount(t, g, 200000)
}

package listener

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/internal/testutil"
)

func gz(t testing.TB, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	io.WriteString(w, s)
	w.Close()
	return b.Bytes()
}

func zst(t testing.TB, s string) []byte {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return e.EncodeAll([]byte(s), nil)
}

// bomb is a multi-member gzip body that inflates to n MiB of zeros.
func bomb(t testing.TB, mib int) []byte {
	var member bytes.Buffer
	w, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	w.Write(make([]byte, 64<<20))
	w.Close()
	return bytes.Repeat(member.Bytes(), mib/64)
}

// noise is incompressible text.
func noise(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return string(b)
}

func lookup(key string) (string, bool) {
	if key == "good-key" {
		return "team", true
	}
	return "", false
}

func startIngest(t *testing.T, cfg IngestConfig) (*httptest.Server, *Ingest) {
	t.Helper()
	if cfg.Lookup == nil {
		cfg.Lookup = lookup
	}
	cfg.Logger = quiet
	in, err := NewIngest(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(in.Handler())
	t.Cleanup(srv.Close)
	return srv, in
}

func post(t *testing.T, srv *httptest.Server, path, key string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
	if key != "\x00" {
		req.Header.Set("X-Polymur-Key", key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func TestIngestHostileBodies(t *testing.T) {
	good := gz(t, "a.b 1 1700000000\n")
	truncated := gz(t, strings.Repeat("a.b 1 1700000000\n", 1000))
	truncated = truncated[:len(truncated)/2]
	for _, tc := range []struct {
		name   string
		key    string
		body   []byte
		hdr    map[string]string
		status int
		lines  int
	}{
		{"valid", "good-key", good, nil, 200, 1},
		{"missing key", "\x00", good, nil, 401, 0},
		{"empty key", "", good, nil, 401, 0},
		{"whitespace key", "   ", good, nil, 401, 0},
		{"unknown key", "guess", good, nil, 401, 0},
		{"key with spaces around", " good-key ", good, nil, 200, 1},
		{"not gzip", "good-key", []byte("a.b 1 1700000000\n"), nil, 400, 0},
		{"empty body", "good-key", nil, nil, 400, 0},
		{"truncated gzip", "good-key", truncated, nil, 400, 0},
		{"corrupt checksum", "good-key", append(good[:len(good)-8:len(good)-8], 1, 2, 3, 4, 5, 6, 7, 8), nil, 400, 0},
		{"concatenated members", "good-key", append(gz(t, "a 1 2\n"), gz(t, "b 3 4\n")...), nil, 200, 2},
		{"gzip of nothing", "good-key", gz(t, ""), nil, 200, 0},
		{"only bad lines", "good-key", gz(t, "\n  \nx\n"), nil, 200, 0},
		{"unsupported encoding", "good-key", good, map[string]string{"Content-Encoding": "br"}, 415, 0},
		{"explicit gzip encoding", "good-key", good, map[string]string{"Content-Encoding": "gzip"}, 200, 1},
		{"over compressed limit", "good-key", gz(t, noise(1<<20)), nil, 413, 0},
		{"zstd", "good-key", zst(t, "a.b 1 1700000000\nc.d 2 1700000000\n"), zstdHdr, 200, 2},
		{"zstd, encoding in capitals", "good-key", zst(t, "a.b 1 1700000000\n"), map[string]string{"Content-Encoding": "ZSTD"}, 200, 1},
		{"gzip body sent as zstd", "good-key", good, zstdHdr, 400, 0},
		{"zstd body sent as gzip", "good-key", zst(t, "a.b 1 1700000000\n"), nil, 400, 0},
		{"truncated zstd", "good-key", zst(t, strings.Repeat("a.b 1 1700000000\n", 1000))[:40], zstdHdr, 400, 0},
		{"corrupt zstd", "good-key", func() []byte { b := zst(t, strings.Repeat("a.b 1 1700000000\n", 100)); b[len(b)/2] ^= 0xff; return b }(), zstdHdr, 400, 0},
		{"zstd, empty body", "good-key", nil, zstdHdr, 400, 0},
		{"zstd of nothing", "good-key", zst(t, ""), zstdHdr, 200, 0},
		{"zstd with a 128 MiB window", "good-key", zstdWindow(t, 27), zstdHdr, 413, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			col := newCollector()
			srv, _ := startIngest(t, IngestConfig{Send: col.send, MaxBody: 1 << 16})
			code, _ := post(t, srv, "/ingest", tc.key, tc.body, tc.hdr)
			if code != tc.status {
				t.Fatalf("status %d, want %d", code, tc.status)
			}
			col.mu.Lock()
			n := len(col.lines)
			col.mu.Unlock()
			if n != tc.lines {
				t.Fatalf("%d lines forwarded, want %d", n, tc.lines)
			}
		})
	}
}

func TestIngestGzipBomb(t *testing.T) {
	col := newCollector()
	srv, _ := startIngest(t, IngestConfig{Send: col.send})
	body := bomb(t, 1024) // 1 GiB once inflated
	code, msg := post(t, srv, "/ingest", "good-key", body, nil)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "decompressed") {
		t.Fatalf("gzip bomb: %d %q", code, msg)
	}
}

var zstdHdr = map[string]string{"Content-Encoding": "zstd"}

// zstdWindow is a zstd frame header that asks for a 2^log-byte window.
func zstdWindow(t testing.TB, log int) []byte {
	// magic, frame header descriptor (window descriptor present, no
	// checksum, no content size), window descriptor (exponent log-10).
	return append([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte(log-10) << 3}, 0x01, 0x00, 0x00) // then an empty raw last block
}

func TestIngestZstdBomb(t *testing.T) {
	col := newCollector()
	srv, _ := startIngest(t, IngestConfig{Send: col.send})
	e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	body := e.EncodeAll(make([]byte, 256<<20), nil) // 256 MiB of zeros
	code, msg := post(t, srv, "/ingest", "good-key", body, zstdHdr)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "decompressed") {
		t.Fatalf("zstd bomb: %d %q", code, msg)
	}
}

func TestIngestLinesAndPrefix(t *testing.T) {
	col := newCollector()
	srv, in := startIngest(t, IngestConfig{Send: col.send, KeyPrefix: true})
	// The last line has no newline: it keeps its last character.
	code, _ := post(t, srv, "/ingest", "good-key", gz(t, "a.b 1 1700000000\n\nbad\nc.d 2 1700000000"), nil)
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	got := col.waitFor(t, 2)
	if strings.Join(got, "|") != "team.a.b 1 1700000000|team.c.d 2 1700000000" {
		t.Fatalf("forwarded %q", got)
	}
	st := in.Stats()
	if st.LinesAccepted != 2 || st.LinesRejected["empty"] != 1 || st.LinesRejected["fields"] != 1 || st.BatchesByKey["team"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestIngestPipelineFullIs503(t *testing.T) {
	blocked := func(ctx context.Context, b *batch.Batch) error { <-ctx.Done(); return ctx.Err() }
	srv, _ := startIngest(t, IngestConfig{Send: blocked, QueueWait: 50 * time.Millisecond})
	if code, _ := post(t, srv, "/ingest", "good-key", gz(t, "a 1 2\n"), nil); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
}

func TestIngestPingAndMethods(t *testing.T) {
	col := newCollector()
	srv, _ := startIngest(t, IngestConfig{Send: col.send})
	if code, body := post(t, srv, "/ping", "good-key", nil, nil); code != 200 || body != "key is valid\n" {
		t.Fatalf("ping: %d %q", code, body)
	}
	if code, body := post(t, srv, "/ping", "bad", nil, nil); code != 401 || body != "invalid key" {
		t.Fatalf("ping bad key: %d %q", code, body)
	}
	resp, err := srv.Client().Get(srv.URL + "/ingest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /ingest: %d", resp.StatusCode)
	}
	if code, _ := post(t, srv, "/other", "good-key", nil, nil); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
}

func TestClientLabel(t *testing.T) {
	for _, tc := range []struct{ xff, remote, want string }{
		{"", "10.1.1.1:5000", "10.1.1.1:5000"},
		{"203.0.113.9, 10.0.0.1", "10.0.0.2:1", "203.0.113.9"},
		{"  ", "10.0.0.2:1", "10.0.0.2:1"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/ingest", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := ClientLabel(r); got != tc.want {
			t.Errorf("ClientLabel(%q, %q) = %q", tc.xff, tc.remote, got)
		}
	}
}

func TestHTTPServerTLSAndHugeHeaders(t *testing.T) {
	files := testutil.NewTLSFiles(t)
	col := newCollector()
	in, _ := NewIngest(IngestConfig{Lookup: lookup, Send: col.send, Logger: quiet})
	srv, err := NewHTTPServer("https", "127.0.0.1:0", files.CertFile, files.KeyFile, in.Handler(), time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := "https://" + srv.Addr().String()
	req, _ := http.NewRequest(http.MethodPost, url+"/ping", nil)
	req.Header.Set("X-Polymur-Key", "good-key")
	req.Header.Set("X-Junk", strings.Repeat("j", 200<<10))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("huge header: %d", resp.StatusCode)
	}
	// A plain-text client on the TLS port is refused, and the server goes on.
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	c.Close()
	req, _ = http.NewRequest(http.MethodPost, url+"/ping", nil)
	req.Header.Set("X-Polymur-Key", "good-key")
	if resp, err = client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("ping after junk: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, err := NewHTTPServer("x", "127.0.0.1:0", files.CertFile, "/nonexistent", in.Handler(), time.Second, quiet); err == nil {
		t.Fatal("missing key file accepted")
	}
}

// FuzzIngest posts arbitrary bodies (raw, or gzipped when zip is set) with
// arbitrary keys straight to the handler: it never panics, answers only
// the documented codes, forwards nothing unless it answers 200, and what it
// forwards is whole valid lines.
func FuzzIngest(f *testing.F) {
	f.Add([]byte("a.b 1 1700000000\nc.d 2 1700000000\n"), true, "good-key")
	f.Add([]byte("a.b 1 1700000000"), true, "good-key")
	f.Add([]byte("\n\n \x00\xff bad\n"), true, "good-key")
	f.Add(gz(f, "x 1 2\n")[:12], false, "good-key")
	f.Add(append(gz(f, "m1 1 2\n"), gz(f, "m2 1 2\n")...), false, "good-key")
	f.Add([]byte("plain 1 2\n"), false, "")
	f.Add([]byte("a 1 2\n"), true, " good-key ")
	f.Fuzz(func(t *testing.T, body []byte, zip bool, key string) {
		if zip {
			body = gz(t, string(body))
		}
		checkIngest(t, body, nil, key)
	})
}

// FuzzIngestZstd is FuzzIngest with Content-Encoding: zstd.
func FuzzIngestZstd(f *testing.F) {
	f.Add([]byte("a.b 1 1700000000\nc.d 2 1700000000\n"), true)
	f.Add([]byte("a.b 1 1700000000"), true)
	f.Add(zst(f, "x 1 2\n")[:9], false)
	f.Add(append(zst(f, "m1 1 2\n"), zst(f, "m2 1 2\n")...), false)
	f.Add(zstdWindow(f, 30), false)
	f.Add([]byte("plain 1 2\n"), false)
	f.Fuzz(func(t *testing.T, body []byte, compress bool) {
		if compress {
			body = zst(t, string(body))
		}
		checkIngest(t, body, zstdHdr, "good-key")
	})
}

// checkIngest posts body: a 200 forwards only whole, valid lines, and a
// refusal forwards nothing.
func checkIngest(t *testing.T, body []byte, hdr map[string]string, key string) {
	var sent []*batch.Batch
	in, err := NewIngest(IngestConfig{Lookup: lookup, Logger: quiet, MaxDecoded: 1 << 20, MaxBody: 1 << 20,
		KeyPrefix: len(body)%2 == 0,
		Send: func(_ context.Context, b *batch.Batch) error {
			sent = append(sent, b)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/ingest", bytes.NewReader(body))
	req.Header.Set("X-Polymur-Key", strings.Map(func(r rune) rune {
		if r < ' ' || r >= 0x7f {
			return -1
		}
		return r
	}, key))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	in.Handler().ServeHTTP(rec, req)
	switch rec.Code {
	case 200:
	case 400, 401, 413:
		if len(sent) > 0 {
			t.Fatalf("%d but %d batches forwarded", rec.Code, len(sent))
		}
	default:
		t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body)
	}
	for _, b := range sent {
		for _, line := range bytes.SplitAfter(b.Buf, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if line[len(line)-1] != '\n' {
				t.Fatalf("forwarded an unterminated line %q", line)
			}
			if _, reason := batch.Parse(line[:len(line)-1], batch.LevelCarbon); reason != batch.ReasonOK {
				t.Fatalf("forwarded a rejected line %q (%v)", line, reason)
			}
		}
		b.Release()
	}
}

// The buffered-bytes budget: a request is cut into pipeline batches of at
// most ChunkLines lines, each holding budget until released downstream;
// with the budget used up the next request gets 503 before it is kept, a
// request larger than the whole budget gets 413, and releasing the held
// batches makes room again.
func TestIngestBufferBudget(t *testing.T) {
	var mu sync.Mutex
	var held []*batch.Batch
	keep := func(_ context.Context, b *batch.Batch) error {
		mu.Lock()
		held = append(held, b)
		mu.Unlock()
		return nil
	}
	srv, in := startIngest(t, IngestConfig{Send: keep, MaxBuffered: 2 << 20, ChunkLines: 1000, QueueWait: 50 * time.Millisecond})
	var sb strings.Builder
	for i := range 45000 { // ~1.6 MB decoded
		fmt.Fprintf(&sb, "budget.metric.m%d %d 1700000000\n", i, i)
	}
	body := gz(t, sb.String())
	if code, _ := post(t, srv, "/ingest", "good-key", body, nil); code != 200 {
		t.Fatalf("first request: %d", code)
	}
	mu.Lock()
	n := len(held)
	for _, b := range held {
		if b.Len() > 1000 {
			t.Fatalf("pipeline batch of %d lines, ChunkLines is 1000", b.Len())
		}
	}
	mu.Unlock()
	if n != 45 {
		t.Fatalf("%d pipeline batches, want 45", n)
	}
	if code, msg := post(t, srv, "/ingest", "good-key", body, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("with the budget held: %d %q, want 503", code, msg)
	}
	if st := in.Stats(); st.Buffered == 0 || st.BusyRefusals != 1 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	for _, b := range held {
		b.Release() // delivered downstream
	}
	held = nil
	mu.Unlock()
	if used, _ := in.Buffered(); used != 0 {
		t.Fatalf("%d bytes still held after release", used)
	}
	if code, _ := post(t, srv, "/ingest", "good-key", body, nil); code != 200 {
		t.Fatalf("after release: %d", code)
	}
	mu.Lock()
	for _, b := range held {
		b.Release()
	}
	held = nil
	mu.Unlock()
	big := strings.Repeat(sb.String(), 2) // larger than the whole budget
	if code, msg := post(t, srv, "/ingest", "good-key", gz(t, big), nil); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("over the whole budget: %d %q, want 413", code, msg)
	}
}

// One tenant's slow uploads cannot take every slot: with 64 uploads of one
// key trickling, the key holds all but a share's worth of slots, another
// key's request still gets 200; the first key's requests over that are
// refused (503) and counted; a trickle slower than MinRate is cut (408).
func TestIngestPerKeyFairShare(t *testing.T) {
	col := newCollector()
	keys := func(k string) (string, bool) {
		switch k {
		case "key-a":
			return "a", true
		case "key-b":
			return "b", true
		}
		return "", false
	}
	srv, in := startIngest(t, IngestConfig{Send: col.send, Lookup: keys, MinRate: 1 << 20})
	addr := strings.TrimPrefix(srv.URL, "https://")
	body := gz(t, "slow.metric 1 1700000000\n")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 64 {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /ingest HTTP/1.1\r\nHost: x\r\nX-Polymur-Key: key-a\r\nContent-Length: %d\r\n\r\n", len(body))
		c.Write(body[:3]) // and then nothing: a trickle
	}
	testutil.WaitFor(t, "key a's share taken", 30*time.Second, func() bool {
		in.keyMu.Lock()
		defer in.keyMu.Unlock()
		return in.perKey["a"] == in.cfg.MaxInFlight-in.cfg.MaxInFlightPerKey // alone it may use all but a share
	})
	if code, msg := post(t, srv, "/ingest", "key-b", gz(t, "fair.metric 1 1700000000\n"), nil); code != 200 {
		t.Fatalf("another key while key a trickles 64 uploads: %d %q", code, msg)
	}
	if st := in.Stats(); st.RefusedByKey["a"] == 0 {
		t.Fatalf("key a's requests over its share not counted: %+v", st)
	}
	// The trickles are cut once their grace and MinRate pace run out.
	buf := make([]byte, 512)
	conns[0].SetReadDeadline(time.Now().Add(30 * time.Second))
	n, _ := conns[0].Read(buf)
	if !strings.Contains(string(buf[:n]), "408") && !strings.Contains(string(buf[:n]), "503") {
		t.Fatalf("a trickling upload got %q, want 408 (or 503 over the share)", buf[:n])
	}
}

// A renewed certificate is served without a restart: Reload (the gateway's
// SIGHUP) and Watch (the files changed) both pick it up; a broken pair
// keeps the old one.
func TestCertificateReload(t *testing.T) {
	files := testutil.NewTLSFiles(t)
	certs, err := NewCerts(files.CertFile, files.KeyFile, quiet)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		c, _ := certs.Get(nil)
		return c.Leaf.SerialNumber.String()
	}
	first := serial()
	renew := func() {
		next := testutil.NewTLSFiles(t)
		for _, p := range [][2]string{{next.CertFile, files.CertFile}, {next.KeyFile, files.KeyFile}} {
			b, _ := os.ReadFile(p[0])
			os.WriteFile(p[1], b, 0o600)
		}
	}
	renew()
	if err := certs.Reload(); err != nil || serial() == first {
		t.Fatalf("Reload: %v, serial %s (was %s)", err, serial(), first)
	}
	second := serial()
	os.WriteFile(files.KeyFile, []byte("garbage"), 0o600)
	if err := certs.Reload(); err == nil || serial() != second {
		t.Fatalf("a broken pair replaced the certificate: %v", err)
	}
	renew()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { certs.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	testutil.WaitFor(t, "the watcher reloads the changed files", 30*time.Second, func() bool { return serial() != second })
	cfg := ServerTLS(certs)
	for _, s := range cfg.CipherSuites {
		if !strings.Contains(tls.CipherSuiteName(s), "GCM") && !strings.Contains(tls.CipherSuiteName(s), "CHACHA20_POLY1305") {
			t.Fatalf("non-AEAD suite %s", tls.CipherSuiteName(s))
		}
	}
}

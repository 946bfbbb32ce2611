package main

import (
	"compress/gzip"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// fakeGateway records what /ingest receives; /ping checks the key.
type fakeGateway struct {
	mu    sync.Mutex
	lines []string
	posts int
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Polymur-Key") != "secret" {
		http.Error(w, "invalid key", http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/ping" {
		io.WriteString(w, "key is valid\n")
		return
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, "Batch Malformed", 400)
		return
	}
	body, _ := io.ReadAll(zr)
	g.mu.Lock()
	g.posts++
	g.lines = append(g.lines, strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")...)
	g.mu.Unlock()
	io.WriteString(w, "Batch Received\n")
}

func (g *fakeGateway) snapshot() ([]string, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.lines...), g.posts
}

// caFile writes the test server's certificate as a PEM file for -cert.
func caFile(t *testing.T, srv *httptest.Server) string {
	path := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProxyToGatewayOverHTTPS(t *testing.T) {
	g := &fakeGateway{}
	srv := httptest.NewTLSServer(g)
	defer srv.Close()
	d := testutil.StartDaemon(t, run, "-gateway", srv.URL, "-api-key", "secret", "-cert", caFile(t, srv),
		"-listen-addr", "127.0.0.1:0", "-stat-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0", "-flush-interval", "20ms")
	var sb strings.Builder
	for i := range 12000 {
		fmt.Fprintf(&sb, "proxy.m%d %d 1700000000\n", i, i)
	}
	sb.WriteString("\n\nnot valid\n")
	d.Send(t, "listen", sb.String())
	deadline := time.Now().Add(60 * time.Second)
	for {
		lines, _ := g.snapshot()
		if len(lines) >= 12000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	lines, posts := g.snapshot()
	if len(lines) != 12000 {
		t.Fatalf("gateway got %d lines", len(lines))
	}
	seen := map[string]bool{} // three workers: batches may arrive in any order
	for _, l := range lines {
		seen[l] = true
	}
	for _, i := range []int{0, 4999, 5000, 11999} {
		if l := fmt.Sprintf("proxy.m%d %d 1700000000", i, i); !seen[l] {
			t.Fatalf("%q missing", l)
		}
	}
	if len(seen) != 12000 {
		t.Fatalf("%d distinct lines of 12000", len(seen))
	}
	if posts < 3 {
		t.Fatalf("%d POSTs for 12000 lines with -batch-size 5000", posts)
	}
	stats := d.Ask(t, "api", "stats")
	if !strings.Contains(stats, `"sent": 12000`) || !strings.Contains(stats, `"gzip_bytes"`) {
		t.Fatalf("stats:\n%s", stats)
	}
	if got := d.Ask(t, "stat", "stats"); !strings.Contains(got, "runtime-meminfo") {
		t.Fatalf("runstats: %s", got)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Stderr.String(), "connection to gateway successful") {
		t.Fatalf("no ping log:\n%s", d.Stderr)
	}
}

func TestConsoleOutOnly(t *testing.T) {
	d := testutil.StartDaemon(t, run, "-console-out", "-listen-addr", "127.0.0.1:0", "-stat-addr", "")
	d.Send(t, "listen", "a 1 2\nb 3 4\n")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.Stdout.String(), "b 3 4\n") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if d.Stdout.String() != "a 1 2\nb 3 4\n" {
		t.Fatalf("stdout %q", d.Stdout.String())
	}
}

func TestBadConfigurationFailsAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no gateway", nil, nil, "-gateway"},
		{"no key", []string{"-gateway", "https://127.0.0.1:1"}, nil, "-api-key"},
		{"not a URL", []string{"-gateway", "127.0.0.1:1", "-api-key", "k"}, nil, "http"},
		{"bad workers env", []string{"-gateway", "https://127.0.0.1:1", "-api-key", "k"}, map[string]string{"POLYMUR_PROXY_WORKERS": "many"}, "POLYMUR_PROXY_WORKERS"},
		{"zero workers", []string{"-gateway", "https://127.0.0.1:1", "-api-key", "k", "-workers", "0"}, nil, "-workers"},
		{"missing CA file", []string{"-gateway", "https://127.0.0.1:1", "-api-key", "k", "-cert", "/nonexistent.pem"}, nil, "-cert"},
		{"bad validation", []string{"-console-out", "-validation", "sloppy"}, nil, "-validation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"-listen-addr", "127.0.0.1:0", "-stat-addr", ""}, tc.args...)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := run(ctx, args, io.Discard, io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

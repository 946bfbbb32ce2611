package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

const limit = 60 * time.Second // only keeps a broken test from hanging

// runNoStdin adapts run to testutil.RunFunc.
func runNoStdin(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(map[string]string)) error {
	return run(ctx, args, strings.NewReader(""), stdout, stderr, ready)
}

func start(t *testing.T, args ...string) *testutil.Daemon {
	t.Helper()
	base := []string{"-listen-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0", "-stat-addr", "127.0.0.1:0"}
	return testutil.StartDaemon(t, runNoStdin, append(base, args...)...)
}

func TestEndToEndHashRoute(t *testing.T) {
	a, b, c := testutil.NewSink(t), testutil.NewSink(t), testutil.NewSink(t)
	dests := a.Addr() + ":a," + b.Addr() + ":b"
	d := start(t, "-distribution", "hash-route", "-destinations", dests)

	var sb strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&sb, "e2e.metric%d %d 1700000000\n", i, i)
	}
	sb.WriteString("\nbad line\n") // counted, not forwarded
	d.Send(t, "listen", sb.String())
	if !testutil.WaitTotal(3000, limit, a, b) {
		t.Fatalf("delivered %d of 3000", a.Count()+b.Count())
	}
	// Every line sits where `route` says.
	for _, s := range []*testutil.Sink{a, b} {
		for _, l := range s.Lines()[:20] {
			name := strings.Fields(l)[0]
			want := strings.TrimSpace(d.Ask(t, "api", "route "+name))
			if (s == a) != strings.HasPrefix(want, a.Addr()) {
				t.Fatalf("%s at the wrong sink (route says %s)", name, want)
			}
		}
	}
	if got := d.Ask(t, "api", "putdest "+c.Addr()+":c"); got != "Registered destination: "+c.Addr()+":c\n" {
		t.Fatalf("putdest: %q", got)
	}
	if got := d.Ask(t, "api", "putdest "+c.Addr()+":c"); !strings.HasPrefix(got, "Error: ") {
		t.Fatalf("duplicate putdest: %q", got)
	}
	if got := d.Ask(t, "api", "getdest"); !strings.Contains(got, `"registered": {`) || !strings.Contains(got, c.Addr()+":c") {
		t.Fatalf("getdest: %q", got)
	}
	if got := d.Ask(t, "api", "ping"); got != "pong\n" {
		t.Fatalf("ping: %q", got)
	}
	if got := d.Ask(t, "api", "stats"); !strings.Contains(got, `"fields": 1`) || !strings.Contains(got, `"empty": 1`) {
		t.Fatalf("stats do not count the bad lines: %s", got)
	}
	if got := d.Ask(t, "stat", "stats"); !strings.Contains(got, `"runtime-meminfo"`) || !strings.Contains(got, `"uptime-seconds"`) {
		t.Fatalf("runstats: %s", got)
	}
	if got := d.Ask(t, "api", ""); got != "Error: empty command (try help)\n" {
		t.Fatalf("empty API line: %q", got)
	}
}

// TestBurstArrivesWhole: a 1,000,000-line burst on one connection reaches
// every destination at the default settings (the original kept 2–3%).
func TestBurstArrivesWhole(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 200_000
	}
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, "burst.host%d.cpu%d %d 1700000000\n", i%1000, i, i)
	}
	for _, tc := range []struct {
		mode  string
		sinks int
		want  int
	}{{"broadcast", 2, 2 * n}, {"hash-route", 3, n}} {
		t.Run(tc.mode, func(t *testing.T) {
			var sinks []*testutil.Sink
			var dests []string
			for i := range tc.sinks {
				s := testutil.NewCountingSink(t)
				sinks = append(sinks, s)
				dests = append(dests, fmt.Sprintf("%s:%d", s.Addr(), i))
			}
			d := start(t, "-distribution", tc.mode, "-destinations", strings.Join(dests, ","))
			d.Send(t, "listen", buf.String())
			if !testutil.WaitTotal(tc.want, limit, sinks...) {
				total := 0
				for _, s := range sinks {
					total += s.Count()
				}
				t.Fatalf("delivered %d of %d\n%s", total, tc.want, d.Ask(t, "api", "stats"))
			}
		})
	}
}

// TestShutdownDeliversWhatWasReceived: cancel right after sending; run
// returns only after every line reached the destination.
func TestShutdownDeliversWhatWasReceived(t *testing.T) {
	s := testutil.NewCountingSink(t)
	d := start(t, "-destinations", s.Addr())
	c, err := net.Dial("tcp", d.Addrs["listen"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := bufio.NewWriter(c)
	for i := range 50000 {
		fmt.Fprintf(w, "drain.m%d 1 1700000000\n", i)
	}
	w.Flush()
	// Wait until the daemon has read something, then stop it with the
	// client still connected.
	for s.Count() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := s.Count(); got != 50000 {
		t.Fatalf("delivered %d of 50000 by the end of run\n%s", got, d.Stderr)
	}
	if !strings.Contains(d.Stderr.String(), "shutting down") {
		t.Fatalf("no shutdown log:\n%s", d.Stderr)
	}
}

func TestConsoleOutAndSelfMetrics(t *testing.T) {
	s := testutil.NewSink(t)
	d := start(t, "-console-out", "-metrics-flush", "1", "-destinations", s.Addr())
	d.Send(t, "listen", "console.a 1 1700000000\n")
	d.Send(t, "listen", "console.b 2 1700000000\n")
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && !(strings.Contains(d.Stdout.String(), "console.b") && hasSelfMetric(s)) {
		time.Sleep(10 * time.Millisecond)
	}
	out := d.Stdout.String()
	if !strings.Contains(out, "console.a 1 1700000000\n") || !strings.Contains(out, "console.b 2 1700000000\n") {
		t.Fatalf("console output: %q", out)
	}
	if !hasSelfMetric(s) {
		t.Fatalf("no self-metrics at the destination: %q", s.Lines())
	}
	for _, l := range s.Lines() {
		name := strings.Fields(l)[0]
		if strings.Contains(name, ":") {
			t.Fatalf("self-metric name with ':' %q", name)
		}
		if strings.Contains(name, ".polymur.") && strings.Count(name[:strings.Index(name, ".polymur.")], ".") > 0 {
			t.Fatalf("hostname adds levels: %q", name)
		}
	}
}

func hasSelfMetric(s *testutil.Sink) bool {
	for _, l := range s.Lines() {
		if strings.Contains(l, ".polymur.runtime.HeapAlloc ") {
			return true
		}
	}
	return false
}

func TestTestModeConnectsNowhere(t *testing.T) {
	// A listen address that is in use proves test mode binds nothing.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		args []string
		in   string
		want string
	}{
		{[]string{"-distribution", "hash-route", "-destinations", "10.0.0.1:2004:a,10.0.0.2:2004:b,10.0.0.3:2004:c"},
			"servers.web01.cpu.user\nstats.counters.requests.count 1 2\n\n  collectd.db01.load.load.shortterm\n",
			"servers.web01.cpu.user\t10.0.0.2:2004:b\nstats.counters.requests.count\t10.0.0.3:2004:c\ncollectd.db01.load.load.shortterm\t10.0.0.2:2004:b\n"},
		{[]string{"-destinations", "10.0.0.1:2004,[2001:db8::1]:2004"}, "a.b\n", "a.b\t10.0.0.1:2004,[2001:db8::1]:2004\n"},
	} {
		var out bytes.Buffer
		args := append([]string{"-test", "-listen-addr", busy.Addr().String()}, tc.args...)
		if err := run(context.Background(), args, strings.NewReader(tc.in), &out, io.Discard, nil); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Fatalf("test mode:\n%s\nwant:\n%s", out.String(), tc.want)
		}
	}
}

func TestBadConfigurationFailsAtStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad distribution", []string{"-distribution", "foo"}, nil, "-distribution"},
		{"bad distribution env", nil, map[string]string{"POLYMUR_DISTRIBUTION": "round-robin"}, "-distribution"},
		{"bad int env", nil, map[string]string{"POLYMUR_OUTGOING_QUEUE_CAP": "abc"}, "POLYMUR_OUTGOING_QUEUE_CAP"},
		{"bad bool env", nil, map[string]string{"POLYMUR_CONSOLE_OUT": "yes please"}, "POLYMUR_CONSOLE_OUT"},
		{"bad int flag", []string{"-incoming-queue-cap", "x"}, nil, "incoming-queue-cap"},
		{"zero queue", []string{"-outgoing-queue-cap", "0"}, nil, "-outgoing-queue-cap"},
		{"negative flush", []string{"-metrics-flush", "-1"}, nil, "-metrics-flush"},
		{"bad destination", []string{"-destinations", "nohost"}, nil, "-destinations"},
		{"duplicate node in hash-route", []string{"-distribution", "hash-route", "-destinations", "h:1,h:2"}, nil, "-destinations"},
		{"bad validation", []string{"-validation", "lax"}, nil, "-validation"},
		{"bad log level", []string{"-log-level", "loud"}, nil, "-log-level"},
		{"port in use", []string{"-listen-addr", busy.Addr().String()}, nil, "-listen-addr"},
		{"api port in use", []string{"-listen-addr", "127.0.0.1:0", "-api-addr", busy.Addr().String()}, nil, "-api-addr"},
		{"stray argument", []string{"extra"}, nil, "unexpected argument"},
		{"admin write without token", []string{"-admin-addr", "127.0.0.1:0", "-admin-write"}, nil, "POLYMUR_ADMIN_TOKEN"},
		{"admin pprof short token", []string{"-admin-addr", "127.0.0.1:0", "-admin-pprof"}, map[string]string{"POLYMUR_ADMIN_TOKEN": "short"}, "POLYMUR_ADMIN_TOKEN"},
		{"admin token file missing", []string{"-admin-addr", "127.0.0.1:0", "-admin-write", "-admin-token-file", "/nonexistent/token"}, nil, "-admin-token-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"-listen-addr", "127.0.0.1:0", "-api-addr", "", "-stat-addr", ""}, tc.args...)
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // if it starts anyway, it stops at once
			err := run(ctx, args, strings.NewReader(""), io.Discard, io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

func TestEnvConfiguresAndFlagsWin(t *testing.T) {
	s1, s2 := testutil.NewSink(t), testutil.NewSink(t)
	t.Setenv("POLYMUR_DESTINATIONS", s1.Addr())
	t.Setenv("POLYMUR_API_ADDR", "127.0.0.1:1") // overridden by start's flag
	d := start(t)
	if !strings.Contains(d.Ask(t, "api", "getdest"), s1.Addr()) {
		t.Fatal("POLYMUR_DESTINATIONS ignored")
	}
	d2 := start(t, "-destinations", s2.Addr())
	if got := d2.Ask(t, "api", "getdest"); strings.Contains(got, s1.Addr()) || !strings.Contains(got, s2.Addr()) {
		t.Fatalf("flag did not win over env: %s", got)
	}
}

func TestHelp(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-h"}, nil, io.Discard, &stderr, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"-listen-addr", "[POLYMUR_LISTEN_ADDR]", "-distribution", "hash-route", "-drain-timeout", "-test"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// A state file that lists nothing ({} or an emptied list) must not silently
// replace -destinations: refused at start unless -allow-empty-state.
func TestEmptyStateFileRefused(t *testing.T) {
	a := testutil.NewSink(t)
	for _, content := range []string{"{}", `{"destinations": []}`} {
		state := filepath.Join(t.TempDir(), "state.json")
		os.WriteFile(state, []byte(content), 0o600)
		args := []string{"-listen-addr", "127.0.0.1:0", "-api-addr", "", "-stat-addr", "", "-destinations", a.Addr(), "-state-file", state}
		err := run(context.Background(), args, strings.NewReader(""), io.Discard, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), "-allow-empty-state") {
			t.Fatalf("state file %s: err %v", content, err)
		}
	}
}

func TestStateFileKeepsRuntimeDestinations(t *testing.T) {
	a, b := testutil.NewSink(t), testutil.NewSink(t)
	state := t.TempDir() + "/state.json"
	d := start(t, "-destinations", a.Addr()+":a", "-state-file", state)
	if got := d.Ask(t, "api", "putdest "+b.Addr()+":b"); !strings.HasPrefix(got, "Registered") {
		t.Fatalf("putdest: %q", got)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d2 := start(t, "-destinations", a.Addr()+":a", "-state-file", state)
	if got := d2.Ask(t, "api", "getdest"); !strings.Contains(got, b.Addr()) || !strings.Contains(got, a.Addr()) {
		t.Fatalf("runtime destination lost across restart: %s", got)
	}
}

func TestSpoolAcrossRestart(t *testing.T) {
	s := testutil.NewCountingSink(t)
	s.Stop()
	dir := t.TempDir()
	d := start(t, "-destinations", s.Addr(), "-spool-dir", dir)
	var sb strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&sb, "spooled.m%d 1 1700000000\n", i)
	}
	d.Send(t, "listen", sb.String())
	time.Sleep(200 * time.Millisecond)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	s.Start()
	start(t, "-destinations", s.Addr(), "-spool-dir", dir)
	if !s.WaitCount(2000, limit) || s.Count() != 2000 {
		t.Fatalf("after restart the destination got %d of 2000", s.Count())
	}
}

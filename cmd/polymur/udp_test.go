package main

import (
	"compress/gzip"
	"context"
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

// Graphite plaintext over UDP: a lone datagram, one a second, goes on at once (the
// listener does not wait for company), one datagram may carry many lines,
// bad lines are counted like TCP's, and a burst of 50,000 lines arrives
// whole or shows as kernel drops — never silently short.
func TestUDPPlaintext(t *testing.T) {
	sink := testutil.NewSink(t)
	d := start(t, "-udp-listen-addr", "127.0.0.1:0", "-destinations", sink.Addr(), "-admin-addr", "127.0.0.1:0")
	c, err := net.Dial("udp", d.Addrs["udp"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		c.Write([]byte(fmt.Sprintf("lone.m%d 1 1700000000\n", i)))
		testutil.WaitFor(t, "a lone datagram delivered", limit, func() bool { return sink.Count() == i+1 })
		time.Sleep(time.Second) // one datagram a second: the listener is back in its blocking read
	}
	c.Write([]byte("multi.a 1 1700000000\nmulti.b 2 1700000000\nbad line here x\nmulti.c 3 1700000000"))
	testutil.WaitFor(t, "a datagram of several lines", limit, func() bool { return sink.Count() == 6 })
	const burst = 50_000
	var sb strings.Builder
	for i := range burst {
		fmt.Fprintf(&sb, "burst.host%02d.m%d %d 1700000000\n", i%10, i, i)
		if sb.Len() > 1300 || i == burst-1 {
			c.Write([]byte(sb.String()))
			sb.Reset()
		}
	}
	st := func() string { return d.Ask(t, "api", "stats") }
	testutil.WaitFor(t, "the burst delivered or dropped visibly", limit, func() bool {
		return sink.Count()-6 == burst || testutil.JSONInt(st(), "kernel_drops") > 0
	})
	s := st()
	if testutil.JSONInt(s, "fields")+testutil.JSONInt(s, "value") != 1 {
		t.Fatalf("the bad line was not counted: %s", s)
	}
	drops := testutil.JSONInt(s, "kernel_drops")
	t.Logf("UDP: 3 lone datagrams at once, a 4-line datagram (1 bad, counted), burst of %d: %d delivered, %d datagrams dropped by the kernel (counted)", burst, sink.Count()-6, drops)
	if sink.Count()-6 != burst && drops == 0 {
		t.Fatalf("%d of %d burst lines delivered and no kernel drops counted", sink.Count()-6, burst)
	}
	_, m := testutil.Get(t, "http://"+d.Addrs["admin"]+"/metrics")
	if !strings.Contains(m, "polymur_udp_kernel_drops_total") {
		t.Fatal("kernel drops not on /metrics")
	}
}

// A unix socket listener: the socket file has the mode asked for, lines
// arrive like TCP's, a stale socket file is replaced, and a path that is
// not a socket stops the start naming the flag.
func TestUnixSocketListener(t *testing.T) {
	sink := testutil.NewSink(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "carbon.sock")
	// A socket file left behind by a process that is gone.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	d := start(t, "-unix-listen-path", path, "-unix-socket-mode", "0600", "-destinations", sink.Addr())
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file %v %v", fi, err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("unix.a 1 1700000000\nunix.b 2 1700000000\n"))
	c.Close()
	testutil.WaitFor(t, "lines over the unix socket", limit, func() bool { return sink.Count() == 2 })
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the socket file stays after shutdown: %v", err)
	}
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, nil, 0o600)
	for _, tc := range []struct{ args []string }{
		{[]string{"-unix-listen-path", plain}},
		{[]string{"-unix-listen-path", filepath.Join(dir, "s"), "-unix-socket-mode", "rw"}},
	} {
		err := run(context.Background(), append([]string{"-listen-addr", "127.0.0.1:0", "-api-addr", "", "-stat-addr", "", "-destinations", sink.Addr()}, tc.args...), strings.NewReader(""), io.Discard, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), "-unix-") {
			t.Errorf("%v: %v", tc.args, err)
		}
	}
}

// -tag-normalize: every spelling of a tagged series is sent (and hashed) as
// one, the name carbon's TaggedSeries makes; without it names go as read.
func TestTagNormalize(t *testing.T) {
	a, b := testutil.NewSink(t), testutil.NewSink(t)
	dests := a.Addr() + ":a," + b.Addr() + ":b"
	spellings := []string{"disk.used;host=web1;dc=x", "disk.used;dc=x;host=web1", `disk.used{host="web1",dc="x"}`, "disk.used;dc=x;host=old;host=web1"}
	var in strings.Builder
	for i := range 200 {
		fmt.Fprintf(&in, "%s %d 1700000000\n", strings.Replace(spellings[i%4], "disk.used", fmt.Sprintf("disk%d.used", i/4), 1), i)
	}
	d := start(t, "-distribution", "hash-route", "-destinations", dests, "-tag-normalize")
	d.Send(t, "listen", in.String())
	testutil.WaitTotal(200, limit, a, b)
	series := map[string]string{} // normalised name → sink
	for _, s := range []*testutil.Sink{a, b} {
		for _, l := range s.Lines() {
			name, _, _ := strings.Cut(l, " ")
			if !strings.HasSuffix(name, ";dc=x;host=web1") {
				t.Fatalf("%q not normalised", name)
			}
			if prev, ok := series[name]; ok && prev != s.Addr() {
				t.Fatalf("%s split over two caches", name)
			}
			series[name] = s.Addr()
		}
	}
	if len(series) != 50 {
		t.Fatalf("%d series, want 50 (4 spellings each)", len(series))
	}
}

// -config's listen statements: polymur listens where they say — TCP, UDP,
// a unix socket, pickle (a polymur extension) and gzip — instead of
// -listen-addr; a -listen-addr given replaces them.
func TestConfigListenStatements(t *testing.T) {
	sink := testutil.NewSink(t)
	dir := t.TempDir()
	tcpA, pickleA, gzipA, udpA := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	sock := filepath.Join(dir, "relay.sock")
	conf := filepath.Join(dir, "relay.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`cluster s forward %s;
listen type linemode %s proto tcp %s proto udp %s proto unix;
listen type pickle %s proto tcp;
listen type linemode transport gzip %s proto tcp;
match * send to s;
`, sink.Addr(), tcpA, udpA, sock, pickleA, gzipA)), 0o600)
	var out strings.Builder
	if err := run(context.Background(), []string{"-config", conf, "-check-config"}, strings.NewReader(""), &out, io.Discard, nil); err != nil || strings.Count(out.String(), "listen\n") != 3 {
		t.Fatalf("-check-config: %v\n%s", err, out.String())
	}
	d := testutil.StartDaemon(t, runNoStdin, "-config", conf, "-api-addr", "127.0.0.1:0", "-stat-addr", "")
	if _, ok := d.Addrs["listen"]; !ok || d.Addrs["listen"] != tcpA {
		t.Fatalf("addresses %v: the first plain TCP listen statement should be the line listener", d.Addrs)
	}
	testutil.SendTCP(t, tcpA, []byte("cfg.tcp 1 1700000000\n"))
	u, _ := net.Dial("udp", udpA)
	u.Write([]byte("cfg.udp 1 1700000000\n"))
	u.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("cfg.unix 1 1700000000\n"))
	c.Close()
	p, _ := os.ReadFile(filepath.Join("..", "..", "decode", "testdata", "lists.pickle"))
	testutil.SendTCP(t, pickleA, append([]byte{0, 0, 0, byte(len(p))}, p...))
	var gz strings.Builder
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("cfg.gzip 1 1700000000\n"))
	zw.Close()
	testutil.SendTCP(t, gzipA, []byte(gz.String()))
	if !sink.WaitCount(6, limit) {
		t.Fatalf("%d of 6 lines through the configured listeners: %q", sink.Count(), sink.Lines())
	}
	// -listen-addr given replaces them.
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d = testutil.StartDaemon(t, runNoStdin, "-config", conf, "-listen-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0", "-stat-addr", "")
	if d.Addrs["listen"] == tcpA || d.Addrs["config1.1"] != "" {
		t.Fatalf("addresses %v", d.Addrs)
	}
}

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

func startStatsdMode(t *testing.T, nodes []*testutil.Statsd, args ...string) *testutil.Daemon {
	t.Helper()
	var specs []string
	for _, n := range nodes {
		_, admin, _ := strings.Cut(n.MgmtAddr, ":")
		specs = append(specs, n.UDPAddr+":"+admin)
	}
	base := []string{"-mode", "statsd", "-statsd-listen", "127.0.0.1:0", "-statsd-mgmt-addr", "127.0.0.1:0", "-stat-addr", "",
		"-statsd-nodes", strings.Join(specs, ","), "-statsd-check-interval", "300ms"}
	return testutil.StartDaemon(t, runNoStdin, append(base, args...)...)
}

func nodeName(n *testutil.Statsd) string {
	_, admin, _ := strings.Cut(n.MgmtAddr, ":")
	return n.UDPAddr + ":" + admin
}

// counters builds datagrams of up to 20 lines: name i is incremented by
// i%7+1 in all, in two lines. It returns the datagrams and the totals.
func counters(prefix string, names int) ([]string, map[string]int) {
	want := map[string]int{}
	var lines []string
	for i := range names {
		name := fmt.Sprintf("%s.svc%d.requests", prefix, i)
		a := i%7 + 1
		lines = append(lines, fmt.Sprintf("%s:%d|c", name, a/2), fmt.Sprintf("%s:%d|c", name, a-a/2))
		want[name] = a
	}
	var dgrams []string
	for i := 0; i < len(lines); i += 20 {
		dgrams = append(dgrams, strings.Join(lines[i:min(i+20, len(lines))], "\n")+"\n")
	}
	return dgrams, want
}

// Every counter sent through polymur is aggregated by exactly one real
// statsd daemon — the one `route` names — with the total that was sent.
func TestStatsdModeWithRealStatsd(t *testing.T) {
	nodes := []*testutil.Statsd{testutil.StartStatsd(t, 200*time.Millisecond), testutil.StartStatsd(t, 200*time.Millisecond),
		testutil.StartStatsd(t, 200*time.Millisecond)}
	d := startStatsdMode(t, nodes)
	dgrams, want := counters("agg", 3000)
	total := 0
	for _, v := range want {
		total += v
	}
	testutil.SendUDP(t, d.Addrs["statsd"], dgrams, 20, time.Millisecond)
	sum := func() (n int) {
		for _, node := range nodes {
			for _, v := range node.Counts("agg.") {
				n += v
			}
		}
		return n
	}
	testutil.WaitFor(t, "every count aggregated", limit, func() bool { return sum() >= total })
	time.Sleep(500 * time.Millisecond) // two more flushes: nothing extra
	if got := sum(); got != total {
		t.Fatalf("statsd daemons counted %d, sent %d", got, total)
	}
	per := make([]int, len(nodes))
	for i, node := range nodes {
		for name, v := range node.Counts("agg.") {
			if v != want[name] {
				t.Fatalf("%s counted %d at %s, sent %d (split across daemons?)", name, v, node.UDPAddr, want[name])
			}
			if route := strings.TrimSpace(d.Ask(t, "api", "route "+name)); route != nodeName(node) {
				t.Fatalf("%s aggregated at %s, route says %s", name, nodeName(node), route)
			}
			per[i]++
		}
	}
	t.Logf("3000 names over 3 statsd daemons: %v names each, every total exact", per)
	stats := d.Ask(t, "api", "stats")
	testutil.HasAll(t, "stats", stats, `"packets_received": 300`, `"datagrams_sent"`, `"healthy": true`)
	if got := d.Ask(t, "api", "ping"); got != "pong\n" {
		t.Fatalf("ping: %q", got)
	}
	if got := d.Ask(t, "api", "health"); got != "health: up\n" {
		t.Fatalf("health: %q", got)
	}
	// The management port has no authentication: destination and health
	// changes are refused unless -statsd-mgmt-write.
	for _, cmd := range []string{"putdest 127.0.0.1:9999", "deldest " + nodeName(nodes[0]), "health down"} {
		if got := d.Ask(t, "api", cmd); !strings.Contains(got, "-statsd-mgmt-write") {
			t.Fatalf("%s on a read-only management port: %q", cmd, got)
		}
	}
	if got := d.Ask(t, "api", "health"); got != "health: up\n" {
		t.Fatalf("health after a refused change: %q", got)
	}
}

// The management port listens on loopback by default, like -api-addr
// (proxy.js binds 0.0.0.0; an explicit mgmt_address still wins).
func TestStatsdManagementDefaults(t *testing.T) {
	c, err := parseConfig([]string{"-mode", "statsd", "-statsd-nodes", "127.0.0.1:8125"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.statsd.MgmtAddr != "localhost:8126" || c.statsd.MgmtWrite {
		t.Fatalf("defaults: mgmt %q write %v", c.statsd.MgmtAddr, c.statsd.MgmtWrite)
	}
	file := filepath.Join(t.TempDir(), "proxyConfig.js")
	os.WriteFile(file, []byte(`{nodes: [{host: '127.0.0.1', port: 8125}], mgmt_port: 8127}`), 0o600)
	if c, err = parseConfig([]string{"-statsd-config", file}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if c.statsd.MgmtAddr != "localhost:8127" {
		t.Fatalf("proxyConfig.js without mgmt_address: %q", c.statsd.MgmtAddr)
	}
}

// A statsd daemon that stops leaves the ring within two check intervals
// and its names go to the others; started again, it gets them back.
func TestStatsdModeHealthChecks(t *testing.T) {
	nodes := []*testutil.Statsd{testutil.StartStatsd(t, 200*time.Millisecond), testutil.StartStatsd(t, 200*time.Millisecond)}
	d := startStatsdMode(t, nodes)
	var names []string
	for i := range 200 {
		names = append(names, fmt.Sprintf("health.svc%d.requests", i))
	}
	owner := func() map[string]string {
		m := map[string]string{}
		for _, n := range names {
			m[n] = strings.TrimSpace(d.Ask(t, "api", "route "+n))
		}
		return m
	}
	before := owner()
	onB := 0
	for _, o := range before {
		if o == nodeName(nodes[1]) {
			onB++
		}
	}
	if onB == 0 || onB == len(names) {
		t.Fatalf("%d of %d names on the second daemon", onB, len(names))
	}
	nodes[1].Stop()
	stopped := time.Now()
	testutil.WaitFor(t, "the stopped daemon out of the ring", limit, func() bool {
		return !strings.Contains(d.Ask(t, "api", "status"), nodeName(nodes[1]))
	})
	t.Logf("stopped daemon left the ring after %v (check interval 300ms)", time.Since(stopped).Round(10*time.Millisecond))
	for n, o := range owner() {
		if o != nodeName(nodes[0]) {
			t.Fatalf("%s still routed to %s", n, o)
		}
	}
	dgrams := []string{}
	for _, n := range names {
		dgrams = append(dgrams, n+":1|c")
	}
	testutil.SendUDP(t, d.Addrs["statsd"], dgrams, 50, time.Millisecond)
	testutil.WaitFor(t, "the survivor aggregating every name", limit, func() bool { return len(nodes[0].Counts("health.")) == len(names) })

	nodes[1].Start()
	testutil.WaitFor(t, "the daemon back in the ring", limit, func() bool {
		return strings.Contains(d.Ask(t, "api", "status"), nodeName(nodes[1]))
	})
	after := owner()
	for n, o := range before {
		if after[n] != o {
			t.Fatalf("%s routed to %s after the return, %s before", n, after[n], o)
		}
	}
	stats := d.Ask(t, "api", "stats")
	testutil.HasAll(t, "stats", stats, `"failed_checks": `, `"holds": 1`)
}

func TestStatsdProxyConfigFile(t *testing.T) {
	// statsd's own exampleProxyConfig.js shape: a JavaScript object with
	// comments, unquoted keys, single quotes and a trailing comma.
	conf := `/* proxy config */
{
nodes: [
{host: '127.0.0.1', port: 8127, adminport: 8128},
{host: '127.0.0.1', port: 8129, adminport: 8130}, // second
],
server: './servers/udp',
host:  '127.0.0.1',
port: 9125,
udp_version:'udp4',
mgmt_port: 9126,
forkCount: 0,
checkInterval: 1000,
cacheSize: 10000
}
`
	path := filepath.Join(t.TempDir(), "proxyConfig.js")
	os.WriteFile(path, []byte(conf), 0o600)
	c, err := parseConfig([]string{"-statsd-config", path, "-statsd-mgmt-addr", "127.0.0.1:7000"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	s := c.statsd
	if c.mode != "statsd" || s.Nodes != "127.0.0.1:8127:8128,127.0.0.1:8129:8130" || s.Listen != "127.0.0.1:9125" ||
		s.MgmtAddr != "127.0.0.1:7000" || s.CheckInterval != time.Second || s.TCP || len(c.statsdDests) != 2 {
		t.Fatalf("parsed %+v", s)
	}
	for _, bad := range []string{`{nodes: []}`, `{nodes: [{host: 'h', port: 'x'}]}`, `not js at all`} {
		os.WriteFile(path, []byte(bad), 0o600)
		if _, err := parseConfig([]string{"-statsd-config", path}, os.Stderr); err == nil || !strings.Contains(err.Error(), "-statsd-config") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for _, args := range [][]string{
		{"-mode", "statsd"},
		{"-mode", "statsd", "-statsd-nodes", "127.0.0.1:8125:notaport"},
		{"-mode", "statsd", "-statsd-nodes", "127.0.0.1:8125", "-statsd-max-datagram", "10"},
		{"-mode", "carbon"},
	} {
		if _, err := parseConfig(args, os.Stderr); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

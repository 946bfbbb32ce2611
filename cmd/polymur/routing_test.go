package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// expected asks polymur -config FILE -test where each line goes: sink
// address → the lines it must receive (as sent), and the count of lines
// that go nowhere.
func expected(t *testing.T, conf string, lines []string) (map[string][]string, int) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), []string{"-config", conf, "-test"}, strings.NewReader(strings.Join(lines, "\n")+"\n"), &out, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	rest := map[string]string{}
	for _, l := range lines {
		name, r, _ := strings.Cut(l, " ")
		rest[name] = r
	}
	want := map[string][]string{}
	nowhere := 0
	for _, row := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Split(row, "\t")
		if f[2] != "send" {
			nowhere++
			continue
		}
		want[f[4]] = append(want[f[4]], f[1]+" "+rest[f[0]])
	}
	return want, nowhere
}

func routedLines(prefixes []string, n int, tag string) []string {
	var ls []string
	for i := range n {
		p := prefixes[i%len(prefixes)]
		ls = append(ls, fmt.Sprintf("%s.%s.host%02d.m%d %d 1700000000", p, tag, i%17, i, i))
	}
	return ls
}

// waitSinks waits until every sink holds what want says (as a multiset)
// and nothing more.
func waitSinks(t *testing.T, sinks map[string]*testutil.Sink, want map[string][]string, seen map[string]int) {
	t.Helper()
	for addr, s := range sinks {
		n := seen[addr] + len(want[addr])
		testutil.WaitFor(t, "lines at "+addr, limit, func() bool { return s.Count() >= n })
	}
	time.Sleep(200 * time.Millisecond) // a stray or doubled line would show now
	for addr, s := range sinks {
		got := s.Lines()[seen[addr]:]
		w := slices.Clone(want[addr])
		slices.Sort(got)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Fatalf("%s got %d lines, the configuration in force puts %d there\n got %.300q\nwant %.300q", addr, len(got), len(w), got, w)
		}
		seen[addr] += len(got)
	}
}

// polymur -config delivers every line exactly where the configuration puts
// it (as -test says; -test itself is compared with carbon-c-relay in
// route), and a reload swaps the table: five reloads changing rules and
// members, a broken file between them that changes nothing.
func TestConfigDeliveryAndReload(t *testing.T) {
	sinks := map[string]*testutil.Sink{}
	var addrs []string
	for range 6 {
		s := testutil.NewSink(t)
		sinks[s.Addr()] = s
		addrs = append(addrs, s.Addr())
	}
	A, B, C, D, E, F := addrs[0], addrs[1], addrs[2], addrs[3], addrs[4], addrs[5]
	configs := []string{
		fmt.Sprintf(`cluster fw forward %s %s;
cluster ch carbon_ch %s=a %s=b %s=c;
cluster any any_of %s=a %s=b;
rewrite ^old\.(.*) into new.\1;
match ^web\. send to fw stop;
match ^db\. send to ch;
match ^db\.x send to blackhole;
match ^new\. send to any stop;
match * send to ch;
`, A, B, C, D, E, C, D),
		// rules changed: web goes to the hash cluster too
		fmt.Sprintf(`cluster fw forward %s %s;
cluster ch carbon_ch %s=a %s=b %s=c;
match ^web\. send to fw ch stop;
match ^db\. send to blackhole;
match * send to fw;
`, A, B, C, D, E),
		// a member removed, one added
		fmt.Sprintf(`cluster fw forward %s %s;
cluster ch fnv1a_ch %s %s %s;
match ^web\. ^db\. send to ch stop;
match * send to fw;
`, A, F, C, D, E),
		"cluster broken forward;\n", // refused: the running table stays
		fmt.Sprintf(`cluster j jump_fnv1a_ch replication 2 %s=1 %s=2 %s=3;
cluster fo failover %s %s;
rewrite ^(web)\.(.*) into \^1.\2;
match ^WEB send to j;
match * send to fo;
`, B, C, D, E, F),
		fmt.Sprintf(`cluster all forward %s %s %s %s %s %s;
match * send to all;
`, A, B, C, D, E, F),
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "relay.conf")
	os.WriteFile(conf, []byte(configs[0]), 0o600)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("reload-token-0123456789"), 0o600)
	d := start(t, "-config", conf, "-admin-addr", "127.0.0.1:0", "-admin-write", "-admin-token-file", tokenFile)
	reload := func() int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+d.Addrs["admin"]+"/api/v1/reload", nil)
		req.Header.Set("Authorization", "Bearer reload-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	seen := map[string]int{}
	inForce := configs[0]
	prefixes := []string{"web", "db", "db.x", "old", "app", "sys"}
	for phase, next := range append(configs[1:], "") {
		lines := routedLines(prefixes, 3000, fmt.Sprintf("p%d", phase))
		cf := filepath.Join(dir, fmt.Sprintf("expect%d.conf", phase))
		os.WriteFile(cf, []byte(inForce), 0o600)
		want, nowhere := expected(t, cf, lines)
		d.Send(t, "listen", strings.Join(lines, "\n")+"\n")
		waitSinks(t, sinks, want, seen)
		t.Logf("phase %d: 3000 lines, %d went nowhere (blackhole or unrouted), the rest exactly where the configuration put them", phase, nowhere)
		if next == "" {
			break
		}
		os.WriteFile(conf, []byte(next), 0o600)
		code := reload()
		if strings.HasPrefix(next, "cluster broken") {
			if code == 200 {
				t.Fatal("a broken configuration was accepted")
			}
			continue // the running table stays
		}
		if code != 200 {
			t.Fatalf("reload answered %d", code)
		}
		inForce = next
	}
	st := d.Ask(t, "api", "stats")
	if testutil.JSONInt(st, "reloads") != 4 || testutil.JSONInt(st, "reload_failures") != 1 {
		t.Fatalf("reload counters: %s", st)
	}
}

// -distribution takes carbon's and carbon-c-relay's names; the kinds the
// pool has no mode of its own for become a one-cluster configuration.
func TestDistributionNames(t *testing.T) {
	a, b := testutil.NewSink(t), testutil.NewSink(t)
	dests := a.Addr() + ":x," + b.Addr() + ":y"
	for _, tc := range []struct {
		dist, repl, want string
	}{
		{"consistent-hashing", "1", ""},
		{"carbon_ch", "1", ""},
		{"forward", "1", ""},
		{"carbon_ch", "2", "distinct hosts"}, // both sinks are on 127.0.0.1
		{"forward", "2", "every destination"},
		{"any_of", "2", "one destination"},
		{"round_robin", "1", "unknown distribution"},
		{"fnv1a_ch", "3", "exceeds"},
	} {
		args := []string{"-listen-addr", "127.0.0.1:0", "-api-addr", "", "-stat-addr", "", "-distribution", tc.dist, "-replication", tc.repl, "-destinations", dests}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := run(ctx, args, strings.NewReader(""), io.Discard, io.Discard, nil)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("-distribution %s -replication %s: err %v, want %q", tc.dist, tc.repl, err, tc.want)
		}
	}
	// any_of, fnv1a_ch and jump_fnv1a_ch deliver each line to its member.
	for _, dist := range []string{"any_of", "fnv1a_ch", "jump_fnv1a_ch", "failover"} {
		t.Run(dist, func(t *testing.T) {
			a, b := testutil.NewSink(t), testutil.NewSink(t)
			dests := a.Addr() + ":1," + b.Addr() + ":2"
			lines := routedLines([]string{"svc"}, 2000, dist)
			var out bytes.Buffer
			run(context.Background(), []string{"-distribution", dist, "-destinations", dests, "-test"}, strings.NewReader(strings.Join(lines, "\n")), &out, io.Discard, nil)
			want := map[string][]string{}
			for _, row := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				f := strings.Split(row, "\t")
				want[f[4]] = append(want[f[4]], f[1])
			}
			d := start(t, "-distribution", dist, "-destinations", dests)
			d.Send(t, "listen", strings.Join(lines, "\n")+"\n")
			for _, s := range []*testutil.Sink{a, b} {
				testutil.WaitFor(t, "lines", limit, func() bool { return s.Count() >= len(want[s.Addr()]) })
			}
			time.Sleep(100 * time.Millisecond)
			if a.Count()+b.Count() != 2000 || a.Count() != len(want[a.Addr()]) {
				t.Fatalf("%s: %d + %d lines, -test says %d + %d", dist, a.Count(), b.Count(), len(want[a.Addr()]), len(want[b.Addr()]))
			}
		})
	}
}

// putdest and deldest under -config change a cluster's members; the state
// file keeps the changes, and they are applied over the file again after a
// reload and a restart.
func TestRuntimeClusterEdits(t *testing.T) {
	s1, s2, s3, s4 := testutil.NewSink(t), testutil.NewSink(t), testutil.NewSink(t), testutil.NewSink(t)
	dir := t.TempDir()
	conf, state := filepath.Join(dir, "relay.conf"), filepath.Join(dir, "state.json")
	file := fmt.Sprintf(`cluster a forward %s;
cluster b carbon_ch %s=x;
match ^a\. send to a stop;
match * send to b;
`, s1.Addr(), s2.Addr())
	os.WriteFile(conf, []byte(file), 0o600)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("reload-token-0123456789"), 0o600)
	args := []string{"-config", conf, "-state-file", state, "-admin-addr", "127.0.0.1:0", "-admin-write", "-admin-token-file", tokenFile}
	d := start(t, args...)
	for _, tc := range []struct{ cmd, want string }{
		{"putdest " + s3.Addr(), "name the cluster"},
		{"putdest " + s3.Addr() + " nosuch", "name the cluster"},
		{"putdest " + s3.Addr() + "=y b", "Registered"},
		{"putdest " + s3.Addr() + "=y b", "already a member"},
		{"putdest " + s4.Addr() + "=x b", "same host and instance"},
		{"putdest " + s4.Addr() + " a", "Registered"},
		{"deldest " + s1.Addr() + " a", "Unregistered"},
		{"deldest " + s4.Addr() + " a", "last member"},
		{"deldest 127.0.0.1:1", "in no cluster"},
		{"putdest " + s1.Addr() + " proto udp a", "not supported yet"},
	} {
		if got := d.Ask(t, "api", tc.cmd); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.cmd, got, tc.want)
		}
	}
	// In force: a → s4; b → carbon_ch over s2=x, s3=y.
	edited := fmt.Sprintf(`cluster a forward %s;
cluster b carbon_ch %s=x %s=y;
match ^a\. send to a stop;
match * send to b;
`, s4.Addr(), s2.Addr(), s3.Addr())
	cf := filepath.Join(dir, "edited.conf")
	os.WriteFile(cf, []byte(edited), 0o600)
	sinks := map[string]*testutil.Sink{s1.Addr(): s1, s2.Addr(): s2, s3.Addr(): s3, s4.Addr(): s4}
	seen := map[string]int{}
	check := func(tag string, d *testutil.Daemon) {
		t.Helper()
		lines := routedLines([]string{"a", "b", "c"}, 900, tag)
		want, _ := expected(t, cf, lines)
		d.Send(t, "listen", strings.Join(lines, "\n")+"\n")
		waitSinks(t, sinks, want, seen)
	}
	check("edited", d)
	if b, _ := os.ReadFile(state); !strings.Contains(string(b), `"config_edits"`) || strings.Count(string(b), `"op"`) != 3 {
		t.Fatalf("state file:\n%s", b)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d = start(t, args...)
	check("restarted", d)
	// A reload re-reads the file and applies the changes over it again.
	os.WriteFile(conf, []byte(file+"match ^zzz send to blackhole;\n"), 0o600)
	if got := strings.TrimSpace(d.Ask(t, "api", "route a.x")); got != s4.Addr() {
		t.Fatalf("route a.x = %q before reload", got)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+d.Addrs["admin"]+"/api/v1/reload", nil)
	req.Header.Set("Authorization", "Bearer reload-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", resp, err)
	}
	resp.Body.Close()
	check("reloaded", d)
	if got := testutil.JSONInt(d.Ask(t, "api", "stats"), "reloads"); got != 1 {
		t.Fatalf("reloads %d", got)
	}
	// The admin port takes the cluster too.
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{http.MethodPost, "/api/v1/destinations", `{"destination": "` + s1.Addr() + `", "cluster": "a"}`, 201},
		{http.MethodDelete, "/api/v1/destinations/" + s3.Addr() + "?cluster=b", "", 200},
		{http.MethodDelete, "/api/v1/destinations/" + s3.Addr() + "?cluster=b", "", 404},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+d.Addrs["admin"]+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer reload-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
		}
	}
	for i := range 50 {
		if got := d.Ask(t, "api", fmt.Sprintf("route b.x.m%d", i)); strings.Contains(got, s3.Addr()) {
			t.Fatalf("b.x.m%d still routed to the removed member: %s", i, got)
		}
	}
	if got := d.Ask(t, "api", "route a.x"); !strings.Contains(got, s1.Addr()) || !strings.Contains(got, s4.Addr()) {
		t.Fatalf("route a.x = %q after adding %s to a", got, s1.Addr())
	}
}

// File clusters write what the real carbon-c-relay daemon writes: the same
// lines in the same order, "file ip" with the client's address before each.
func TestFileClustersSameAsCarbonCRelay(t *testing.T) {
	crelay := testutil.CarbonCRelay(t)
	dir := t.TempDir()
	port := testutil.FreeAddr(t)
	conf := func(who string) string {
		return fmt.Sprintf(`cluster flat file %[1]s/%[2]s.plain;
cluster withip file ip %[1]s/%[2]s.ip %[1]s/%[2]s.ip2;
listen type linemode %[3]s proto tcp;
rewrite ^old\.(.*) into new.\1;
match ^skip\. send to blackhole stop;
match ^new\. send to withip stop;
match * send to flat withip;
`, dir, who, port)
	}
	theirs, ours := filepath.Join(dir, "c-relay.conf"), filepath.Join(dir, "polymur.conf")
	os.WriteFile(theirs, []byte(conf("c-relay")), 0o600)
	os.WriteFile(ours, []byte(conf("polymur")), 0o600)
	defer startCRelay(t, crelay, theirs).Stop(t)
	d := start(t, "-config", ours)
	var lines []string
	for i := range 600 {
		lines = append(lines, fmt.Sprintf("%s.h%d.m%d %d 170000%04d", []string{"sys", "old", "skip", "app"}[i%4], i%7, i, i, i))
	}
	sendBoth(t, d, port, strings.Join(lines, "\n")+"\n")
	want := map[string]int{"plain": 300, "ip": 450, "ip2": 450}
	for ext, n := range want {
		for _, who := range []string{"c-relay", "polymur"} {
			path := filepath.Join(dir, who+"."+ext)
			testutil.WaitFor(t, path, limit, func() bool {
				b, _ := os.ReadFile(path)
				return bytes.Count(b, []byte("\n")) >= n
			})
		}
		a, _ := os.ReadFile(filepath.Join(dir, "c-relay."+ext))
		b, _ := os.ReadFile(filepath.Join(dir, "polymur."+ext))
		if !bytes.Equal(a, b) {
			t.Fatalf("%s files differ: carbon-c-relay wrote %d bytes, polymur %d\ncarbon-c-relay: %.200q\npolymur:        %.200q", ext, len(a), len(b), a, b)
		}
		t.Logf("%s: %d lines, byte for byte as carbon-c-relay wrote them", ext, bytes.Count(a, []byte("\n")))
	}
}

// startCRelay starts carbon-c-relay (bin) as a daemon on conf and waits for
// its log to say it started — not by connecting: a connect-and-close probe
// can crash carbon-c-relay 3.7.3.
func startCRelay(t *testing.T, bin, conf string) *testutil.Proc {
	t.Helper()
	logFile := conf + ".log"
	peer := testutil.StartProc(t, bin, nil, "-f", conf, "-l", logFile)
	testutil.WaitFor(t, "carbon-c-relay started", limit, func() bool {
		b, _ := os.ReadFile(logFile)
		if peer.Exited() {
			t.Fatalf("carbon-c-relay exited:\n%s", b)
		}
		return strings.Contains(string(b), "startup sequence complete")
	})
	return peer
}

// sendBoth sends payload to polymur (d) and to the carbon-c-relay
// listening on peer.
func sendBoth(t *testing.T, d *testutil.Daemon, peer, payload string) {
	t.Helper()
	d.Send(t, "listen", payload)
	c, err := net.Dial("tcp", peer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(payload)); err != nil {
		t.Fatal(err)
	}
}

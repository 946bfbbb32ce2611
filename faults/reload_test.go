package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/polymur/polymur/internal/testutil"
)

// SIGHUP re-reads -config under steady load: three clusters, five reloads
// changing rules, rewrites, cluster kinds and members, and a broken file in
// between. Every line must arrive exactly where one configuration puts it
// (the same sinks under the same names, as that configuration's -test
// says), the configuration a line was routed by never goes back in send
// order, a line sent after a reload was logged is routed by that one or a
// later one, and nothing is dropped but what a configuration blackholes.
func TestFiveReloadsUnderLoad(t *testing.T) {
	var sinks []*testutil.Sink
	var addr []any
	for range 6 {
		s := testutil.NewSink(t)
		sinks = append(sinks, s)
		addr = append(addr, fmt.Sprintf("%s=i%d", s.Addr(), len(addr))) // one instance per server, in every cluster
	}
	configs := []string{
		`cluster fw forward %[1]s %[2]s;
cluster ch carbon_ch %[3]s %[4]s %[5]s;
cluster any any_of %[4]s %[5]s %[6]s;
rewrite ^load\.old\.(.*) into load.new.\1;
match ^load\.web\. send to fw stop;
match ^load\.db\. send to ch stop;
match ^load\.new\. send to any stop;
match * send to ch;
`,
		// rules changed
		`cluster fw forward %[1]s %[2]s;
cluster ch carbon_ch %[3]s %[4]s %[5]s;
cluster any any_of %[4]s %[5]s %[6]s;
match ^load\.web\. send to ch any stop;
match ^load\.db\. send to fw;
match * send to any;
`,
		// members and kinds changed
		`cluster fw forward %[1]s %[6]s;
cluster ch fnv1a_ch replication 2 %[2]s %[3]s %[4]s;
cluster fo failover %[5]s %[4]s;
match ^load\.(web|db)\. send to ch stop;
match * send to fw fo;
`,
		"cluster broken forward;\n",
		`cluster j jump_fnv1a_ch replication 2 %[2]s %[3]s %[4]s;
cluster fo failover %[5]s %[6]s;
cluster fw forward %[1]s;
rewrite ^load\.(web)\.(.*) into LOAD.\^1.\2;
match ^LOAD send to j stop;
match ^load\.app\. send to blackhole stop;
match * send to fo fw;
`,
		`cluster all forward %[1]s %[2]s %[3]s %[4]s %[5]s %[6]s;
cluster ch carbon_ch %[1]s %[2]s;
cluster any any_of %[3]s %[4]s;
match * send to all ch any;
`,
		`cluster x forward %[1]s;
cluster y carbon_ch %[2]s %[3]s %[4]s;
cluster z any_of %[5]s %[6]s;
match ^load\.db send to y;
match * send to x z;
`,
	}
	dir := t.TempDir()
	var files []string
	for k, c := range configs {
		f := filepath.Join(dir, fmt.Sprintf("c%d.conf", k))
		os.WriteFile(f, []byte(fmt.Sprintf(c, addr...)), 0o600)
		files = append(files, f)
	}
	conf := filepath.Join(dir, "relay.conf")
	use := func(k int) {
		b, _ := os.ReadFile(files[k])
		os.WriteFile(conf+".new", b, 0o600)
		os.Rename(conf+".new", conf) // as an editor or config management does
	}
	use(0)
	r := startPolymur(t, "-config", conf)
	groups := []string{"web", "db", "app", "old"}
	l := startLoadOf(t, r.listen, "load", 20_000, false, func(i int) (string, string) {
		name := fmt.Sprintf("load.%s.h%02d.m%d", groups[i%4], i%13, i)
		return name, fmt.Sprintf("%s %d 1700000000\n", name, i)
	})
	// inForce[k] is the configuration number of reload k (0: the first);
	// after[k] the lines sent once that reload was logged.
	inForce, after := []int{0}, []int{0}
	for k := 1; k < len(configs); k++ {
		n := l.Sent()
		testutil.WaitFor(t, "load flowing", limit, func() bool { return l.Sent() > n+10_000 })
		use(k)
		r.Cmd.Process.Signal(syscall.SIGHUP)
		want, count := "configuration reloaded", len(inForce)
		if strings.HasPrefix(configs[k], "cluster broken") {
			want, count = "configuration not reloaded", 1
		}
		testutil.WaitFor(t, want, limit, func() bool { return strings.Count(r.Logs.String(), want) >= count })
		if want == "configuration reloaded" {
			inForce, after = append(inForce, k), append(after, l.Sent())
		}
	}
	n := l.Sent()
	testutil.WaitFor(t, "load under the last configuration", limit, func() bool { return l.Sent() > n+10_000 })
	sent, _ := l.Stop(t)

	// What each configuration in force would do with every line.
	var input strings.Builder
	for i := range sent {
		fmt.Fprintf(&input, "load.%s.h%02d.m%d %d 1700000000\n", groups[i%4], i%13, i, i)
	}
	expect := make([][]string, len(inForce)) // [reload][line] → sorted "sink name" list
	for g, k := range inForce {
		cmd := exec.Command(bin("polymur"), "-config", files[k], "-test")
		cmd.Stdin = strings.NewReader(input.String())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("-test of config %d: %v", k, err)
		}
		per := make([][]string, sent)
		for _, row := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Split(row, "\t")
			if f[2] != "send" {
				continue
			}
			i := lineIndex(f[0])
			per[i] = append(per[i], f[4]+" "+f[1])
		}
		expect[g] = make([]string, sent)
		for i, p := range per {
			slices.Sort(p)
			expect[g][i] = strings.Join(p, ",")
		}
	}
	// What arrived.
	got := make([][]string, sent)
	testutil.WaitFor(t, "the last lines delivered", limit, func() bool {
		last := sent - 1
		for _, s := range sinks {
			for _, ln := range s.Lines() {
				if f := strings.Fields(ln); len(f) == 3 && f[1] == strconv.Itoa(last) {
					return true
				}
			}
		}
		return expect[len(expect)-1][last] == ""
	})
	// Every line polymur wrote has arrived (doubles included) before the
	// sinks are read.
	testutil.WaitFor(t, "the sinks hold all polymur sent", limit, func() bool {
		n := 0
		for _, s := range sinks {
			n += s.Count()
		}
		return n == testutil.JSONInt(testutil.Ask(r.api, "stats"), "sent")
	})
	for _, s := range sinks {
		for _, ln := range s.Lines() {
			f := strings.Fields(ln)
			i, err := strconv.Atoi(f[1])
			if err != nil || i >= sent {
				t.Fatalf("%s got a line nobody sent: %q", s.Addr(), ln)
			}
			got[i] = append(got[i], s.Addr()+" "+f[0])
		}
	}
	gen, routedBy := 0, make([]int, len(inForce))
	for i := range sent {
		slices.Sort(got[i])
		have := strings.Join(got[i], ",")
		for gen < len(after)-1 && i >= after[gen+1] {
			gen++ // sent after reload gen+1 was logged
		}
		g := max(gen, lastGen(routedBy))
		for g < len(expect) && expect[g][i] != have {
			g++
		}
		if g == len(expect) {
			var w []string
			for k := range expect {
				w = append(w, fmt.Sprintf("config %d: %q", inForce[k], expect[k][i]))
			}
			t.Fatalf("line %d arrived as %q; no configuration in force from reload %d on puts it so:\n%s", i, have, max(gen, lastGen(routedBy)), strings.Join(w, "\n"))
		}
		routedBy[g]++
	}
	t.Logf("%d lines at 20,000/s through 5 reloads and a broken file: every line exactly where a configuration in force put it, in order; lines per configuration %v", sent, routedBy)
	st := testutil.Ask(r.api, "stats")
	for _, reason := range []string{"dest_removed", "no_destinations", "unrouted", "shutdown", "dest_down_queue_full"} {
		if n := testutil.JSONInt(st, reason); n != 0 {
			t.Fatalf("%d dropped as %s: %s", n, reason, st)
		}
	}
	r.Stop(t)
}

// lineIndex is i of load.GROUP.hNN.mI.
func lineIndex(name string) int {
	i, _ := strconv.Atoi(name[strings.LastIndex(name, ".m")+2:])
	return i
}

// lastGen is the newest configuration that routed a line so far.
func lastGen(routedBy []int) int {
	g := 0
	for k, n := range routedBy {
		if n > 0 {
			g = k
		}
	}
	return g
}

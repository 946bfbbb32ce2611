package route

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/polymur/polymur/internal/testutil"
	"github.com/polymur/polymur/ring"
)

// delivery is one traced decision, as text: name as sent, outcome,
// cluster, server.
type delivery struct{ name, outcome, cluster, server string }

var clusterLine = regexp.MustCompile(`^    ([a-z0-9_]+)\((.+)\)$`)

// ccrTrace runs carbon-c-relay -t on one line and parses its trace into
// deliveries (the trace after the configuration dump).
func ccrTrace(t *testing.T, bin, conf, line string) ([]delivery, error) {
	cmd := exec.Command(bin, "-t", "-f", conf)
	cmd.Stdin = strings.NewReader(line + "\n")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("carbon-c-relay -t: %v", err)
	}
	lines := strings.Split(string(out), "\n")
	end := -1
	for i, l := range lines {
		if l == "    ;" {
			end = i
		}
	}
	name, _, _ := strings.Cut(line, " ")
	var ds []delivery
	cluster, inValidate, unrouted, inAggr := "", false, false, false
	for _, l := range lines[end+1:] {
		switch {
		case l == "match" || l == "rewrite" || l == "aggregation":
			cluster, inValidate, inAggr = "", false, l == "aggregation"
		case inAggr:
			// "    F(TEMPLATE) -> NAME VALUE TS" or "    F -> NAME" per
			// compute; the clusters listed are where the output goes.
			if i := strings.Index(l, " -> "); i >= 0 && strings.HasPrefix(l, "    ") && !strings.HasPrefix(l, "    -> ") && !strings.HasPrefix(l, "    ^") {
				out, _, _ := strings.Cut(l[i+4:], " ")
				ds = append(ds, delivery{out, Aggregated, "-", "-"})
			}
		case strings.HasPrefix(l, "nothing matched "):
			unrouted = true
		case l == "    validate":
			inValidate = true
		case inValidate && strings.HasPrefix(l, "        fail -> drop"):
			ds = append(ds, delivery{name, Invalid, "-", "-"})
		case inValidate && strings.HasPrefix(l, "        "):
		case l == "    blackholed":
			ds = append(ds, delivery{name, Blackhole, "-", "-"})
		case strings.HasPrefix(l, "    into(") || strings.HasPrefix(l, "    -> ") || (strings.HasPrefix(l, "    ") && !strings.HasPrefix(l, "        ") && strings.Contains(l, " -> ")):
			inValidate = false
			if i := strings.LastIndex(l, " -> "); i >= 0 {
				name = l[i+4:]
			}
		case clusterLine.MatchString(l):
			inValidate = false
			cluster = clusterLine.FindStringSubmatch(l)[2]
		case strings.HasPrefix(l, "        ") && cluster != "":
			ds = append(ds, delivery{name, Send, cluster, strings.TrimSpace(l)})
		}
	}
	if len(ds) == 0 || unrouted {
		ds = append(ds, delivery{name, Unrouted, "-", "-"})
	}
	return ds, nil
}

func cmpDelivery(a, b delivery) int {
	return strings.Compare(a.cluster+" "+a.server, b.cluster+" "+b.server)
}

func ours(tb *Table, line string) []delivery {
	fields := strings.Fields(line)
	var out []delivery
	for _, d := range tb.Route(nil, fields[0], strings.Join(fields[1:], " "), nil) {
		if d.Outcome == InvalidLogged {
			continue
		}
		if d.Outcome == Aggregated {
			for _, n := range d.Aggregate.Names(d.Name) {
				out = append(out, delivery{n, Aggregated, "-", "-"})
			}
			continue
		}
		c, s := "-", "-"
		if d.Cluster != nil {
			c = d.Cluster.Name
		}
		if d.Server != nil {
			s = d.Server.Addr()
		} else if d.File != "" {
			s = d.File
		}
		out = append(out, delivery{d.Name, d.Outcome, c, s})
	}
	return out
}

// bumpAffected reports whether name falls where carbon's +1 collision bump
// and carbon-c-relay's sort rule own a ring position differently in any
// carbon_ch cluster of tb (documented: polymur follows carbon there).
func bumpAffected(tb *Table, name string) bool {
	pos := ring.Position([]byte(name))
	for _, c := range tb.Clusters {
		if c.Kind != CarbonCH {
			continue
		}
		for i, m := range c.Members {
			key := "('" + m.Host + "', None)"
			if m.HasInstance {
				key = "('" + m.Host + "', '" + m.Instance + "')"
			}
			for r := range ring.Replicas {
				orig := ring.Position([]byte(fmt.Sprintf("%s:%d", key, r)))
				for _, e := range c.carbon.Entries() {
					if e.Node == i && e.Pos != orig && e.Pos >= orig-1 && pos >= orig && pos <= e.Pos {
						return true
					}
				}
			}
		}
	}
	return false
}

// names that hit every expression of the differential configurations.
func diffNames() []string {
	var out []string
	for _, p := range []string{"foo", "bar", "baz", "sys", "app", "db", "web", "Stats", "carbon", "x", "q"} {
		for i := range 40 {
			out = append(out, fmt.Sprintf("%s.host%02d.%s.m%d 1 1700000000", p, i%13, []string{"cpu", "mem", "disk.used", "net"}[i%4], i))
		}
	}
	return append(out, "sys.HostA.CPU.user 5 1700000000", "app.web01.requests 12 1700000000", "a.b 1 2", "q.c.d 1 2",
		"v.1 1 2", "v.2 abc 2", "none 1 2", "x.foo.z 1 2", "x.y 1 2")
}

// differential configurations: every statement and option carbon-c-relay
// 3.7.3 can trace.
var diffConfigs = map[string]string{
	"clusters": `
cluster fw forward 127.0.0.1:2003 127.0.0.2:2003;
cluster ch carbon_ch replication 2 127.0.0.1:2004=a 127.0.0.2:2004=b 127.0.0.3:2004=c 127.0.0.4:2004=d;
cluster ch1 carbon_ch 127.0.0.1:2014 127.0.0.2:2014 127.0.0.3:2014;
cluster fnv fnv1a_ch 127.0.0.1:2005 127.0.0.2:2005 127.0.0.3:2005;
cluster fnvi fnv1a_ch replication 2 127.0.0.1:2015=4d79d13554fa1301 127.0.0.2:2015=8b2c2a0f37b8e51d 127.0.0.3:2015=ffe1a2b3c4d5e6f7;
cluster jump jump_fnv1a_ch 127.0.0.1:2006=1 127.0.0.2:2006=2 127.0.0.3:2006=10;
cluster jump2 jump_fnv1a_ch replication 2 127.0.0.1:2016=b 127.0.0.2:2016=a 127.0.0.3:2016 127.0.0.4:2016;
cluster any any_of 127.0.0.1:2007 127.0.0.2:2007 127.0.0.3:2007;
cluster fo failover 127.0.0.1:2008 127.0.0.2:2008;
cluster dyn carbon_ch dynamic 127.0.0.1:2009=a 127.0.0.2:2009=b;
match ^foo\. send to fw;
match ^bar\. send to ch stop;
match ^baz send to blackhole;
match ^db ^web send to fnv fnvi;
match carbon send to jump jump2 ch1;
match * send to any fo dyn;
`,
	"rewrites": `
cluster a forward 127.0.0.1:2003;
cluster b fnv1a_ch 127.0.0.1:2005 127.0.0.2:2005;
rewrite ^sys\.([^.]+)\.(.*) into SYS.\_1.\^2;
rewrite foo into bar;
rewrite ^(x)\.(y) into \.1_\^.2;
rewrite ^app\.([a-z]+)([0-9]+)\.(.*)$ into apps.\1.n\2.\_3;
match ^SYS\. send to a stop;
match ^apps\. send to b;
match a\.b c\.d send to a stop;
match ^Stats send to a;
`,
	"validate and stop": `
cluster a forward 127.0.0.1:2003;
cluster b any_of 127.0.0.1:2004 127.0.0.2:2004;
match ^v validate ^[0-9.]+\ [0-9]+$ else drop send to a;
match ^q validate ^1\ 1700000000$ else drop;
match ^q send to b stop;
match ^x ^db send to a;
match ^x send to b stop;
match * send to a;
`,
	"prefix index": prefixIndexConfig(),
	"files": `
cluster f file /tmp/polymur-route-test-1 /tmp/polymur-route-test-2;
cluster a forward 127.0.0.1:2003;
match ^web send to f;
match ^v validate ^[0-9]+$ else log send to a;
match * send to a;
`,
	// Hostnames expanded to their addresses (the order of several is the
	// resolver's: compared as sets).
	"useall": `
cluster u forward useall localhost:2003 127.0.0.2:2003;
cluster k forward localhost:2004;
match ^foo send to u stop;
match * send to u k;
`,
	// Aggregates as -t traces them: the series name each compute makes
	// (dynamic, with transforms, and static), fall-through and stop.
	"aggregates": `
cluster a forward 127.0.0.1:2003;
cluster b any_of 127.0.0.1:2004 127.0.0.2:2004;
aggregate ^sys\.([^.]+)\.(.*)$ every 10 seconds expire after 20 seconds
    compute sum write to agg.\_1.sum
    compute percentile95 write to agg.\1.\.2.p95
    ;
aggregate ^app\. ^db\. every 60 seconds expire after 75 seconds timestamp at start of bucket
    compute count write to apps.count
    send to b stop;
aggregate ^x\.(foo|y) every 10 seconds expire after 30 seconds
    compute average write to x.\^1.avg
    compute max write to x.all.max
    send to a stop;
match ^sys send to a stop;
match * send to b;
`,
	"includes": `
include DIR/extra.conf;
match ^app send to inc stop;
match * send to inc;
`,
}

var diffIncludes = map[string]string{
	"extra.conf": "cluster inc carbon_ch replication 2 127.0.0.5:2003=e 127.0.0.6:2003=f 127.0.0.7:2003=g;\n",
}

// TestSameAsCarbonCRelay compares every delivery polymur's table decides
// with carbon-c-relay -t's trace on the same configuration and lines. The
// only exemption is carbon_ch's collision rule (carbon's bump, which
// graphite-web follows, against carbon-c-relay 3.7's sort): names there are
// counted and logged.
func TestSameAsCarbonCRelay(t *testing.T) {
	bin := testutil.CarbonCRelay(t)
	dir := t.TempDir()
	for name, src := range diffIncludes {
		os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600)
	}
	names := diffNames()
	for cname, src := range diffConfigs {
		t.Run(cname, func(t *testing.T) {
			conf := filepath.Join(dir, strings.ReplaceAll(cname, " ", "_")+".conf")
			os.WriteFile(conf, []byte(strings.ReplaceAll(src, "DIR/", dir+"/")), 0o600)
			tb, err := ParseFile(conf)
			if err == nil {
				tb, err = tb.Expand(net.LookupHost)
			}
			if err != nil {
				t.Fatal(err)
			}
			theirs := make([][]delivery, len(names))
			errs := make([]error, len(names))
			var wg sync.WaitGroup
			sem := make(chan struct{}, 4)
			for i, l := range names {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					theirs[i], errs[i] = ccrTrace(t, bin, conf, l)
				})
			}
			wg.Wait()
			same, exempt, deliveries := 0, 0, 0
			for i, l := range names {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				mine := ours(tb, l)
				deliveries += len(mine)
				if cname == "useall" {
					slices.SortFunc(mine, cmpDelivery)
					slices.SortFunc(theirs[i], cmpDelivery)
				}
				if slices.Equal(mine, theirs[i]) {
					same++
					continue
				}
				name, _, _ := strings.Cut(l, " ")
				if bumpAffected(tb, name) {
					exempt++
					continue
				}
				t.Errorf("%q:\n polymur:        %v\n carbon-c-relay: %v", l, mine, theirs[i])
			}
			t.Logf("%d lines, %d deliveries: %d identical, %d on carbon_ch collision points (carbon's rule)", len(names), deliveries, same, exempt)
		})
	}
}

// prefixIndexConfig has long runs of literal-prefix rules (what the prefix
// index covers), regexes and stops between them, and a rewrite that splits
// the runs.
func prefixIndexConfig() string {
	var b strings.Builder
	b.WriteString("cluster a forward 127.0.0.1:2003;\ncluster h carbon_ch 127.0.0.1:2004=a 127.0.0.2:2004=b;\ncluster f fnv1a_ch 127.0.0.1:2005 127.0.0.2:2005;\n")
	cl := []string{"a", "h", "f"}
	for i, p := range []string{"foo", "bar", "baz", "sys", "app", "db", "web", "Stats", "carbon", "x", "q"} {
		for h := range 4 {
			stop := ""
			if (i+h)%5 == 0 {
				stop = " stop"
			}
			fmt.Fprintf(&b, "match ^%s\\.host%02d send to %s%s;\n", p, h*3, cl[(i+h)%3], stop)
		}
		if i%3 == 0 {
			fmt.Fprintf(&b, "match ^%s\\.host0[0-9]\\.(cpu|net) send to %s;\n", p, cl[i%3])
		}
		if i == 5 {
			b.WriteString("rewrite ^app\\.(.*) into application.\\1;\n")
		}
	}
	b.WriteString("match ^application\\. ^foo\\. send to h stop;\nmatch * send to f;\n")
	return b.String()
}

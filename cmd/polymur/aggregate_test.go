package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// aggregateConf is the differential configuration: a dynamic aggregate with
// every compute whose output re-enters the rules (no send to), a static one
// with send to and stop, and the raw lines forwarded.
func aggregateConf(sink, listen string) string {
	return fmt.Sprintf(`cluster out forward %s;
listen type linemode %s proto tcp;
aggregate ^sys\.(h[0-9]+)\.(m[0-9]+)$
    every 1 seconds
    expire after 3 seconds
    compute sum write to agg.\1.sum
    compute count write to agg.\1.count
    compute min write to agg.\1.min
    compute max write to agg.\1.max
    compute average write to agg.\1.avg
    compute median write to agg.\1.median
    compute percentile95 write to agg.\1.p95
    compute percentile30 write to agg.\_2.p30
    compute variance write to agg.\1.var
    compute stddev write to agg.\1.sd
    ;
aggregate ^sys\.h[0-9]*0\.
    every 2 seconds
    expire after 4 seconds
    timestamp at start of bucket
    compute max write to tens.max
    compute count write to tens.count
    send to out
    stop
    ;
match ^agg\. send to out stop;
match ^sys\. send to out;
`, sink, listen)
}

// aggregateInput is several thousand series over three seconds (two or
// three buckets), plus points far in the past and the future that both
// relays drop; values are exact in binary so sums do not depend on order.
func aggregateInput(now int64) []string {
	var lines []string
	for h := range 60 {
		for m := range 50 {
			for dt := int64(-1); dt <= 1; dt++ {
				v := float64((h*7+m*3+int(dt)*11)%97) / 4
				lines = append(lines, fmt.Sprintf("sys.h%d.m%d %s %d", h, m, strconv.FormatFloat(v, 'f', -1, 64), now+dt))
			}
		}
		lines = append(lines, fmt.Sprintf("sys.h%d.m999 1 %d", h, now-300), fmt.Sprintf("sys.h%d.m998 1 %d", h, now+300))
	}
	return lines
}

// TestAggregatesSameAsCarbonCRelay runs the same configuration and the same
// timestamped points through carbon-c-relay (Debian's, a daemon on
// loopback) and polymur: the emitted aggregate lines — names, timestamps,
// values — and the forwarded lines must be the same.
func TestAggregatesSameAsCarbonCRelay(t *testing.T) {
	crelay := testutil.CarbonCRelay(t)
	dir := t.TempDir()
	theirSink, ourSink := testutil.NewSink(t), testutil.NewSink(t)
	port := testutil.FreeAddr(t)
	theirs, ours := filepath.Join(dir, "c-relay.conf"), filepath.Join(dir, "polymur.conf")
	os.WriteFile(theirs, []byte(aggregateConf(theirSink.Addr(), port)), 0o600)
	os.WriteFile(ours, []byte(aggregateConf(ourSink.Addr(), port)), 0o600)
	defer startCRelay(t, crelay, theirs).Stop(t)
	d := start(t, "-config", ours)

	// The points sit around the second they are sent in, well inside the
	// window both relays accept (3 s back, the expiry ahead).
	now := time.Now().Unix()
	lines := aggregateInput(now)
	payload := strings.Join(lines, "\n") + "\n"
	sendBoth(t, d, port, payload)

	want := expectedAggregateLines(lines, now)
	for who, s := range map[string]*testutil.Sink{"carbon-c-relay": theirSink, "polymur": ourSink} {
		if !s.WaitCount(want, limit) {
			t.Fatalf("%s: %d lines arrived, want %d", who, s.Count(), want)
		}
	}
	a, b := theirSink.Lines(), ourSink.Lines()
	slices.Sort(a)
	slices.Sort(b)
	if len(a) != len(b) {
		t.Fatalf("carbon-c-relay sent %d lines, polymur %d", len(a), len(b))
	}
	aggregates := 0
	for i := range a {
		if !sameLine(a[i], b[i]) {
			t.Fatalf("line %d differs:\n carbon-c-relay: %q\n polymur:        %q", i, a[i], b[i])
		}
		if !strings.HasPrefix(a[i], "sys.") {
			aggregates++
		}
	}
	t.Logf("%d lines each (%d aggregate lines from %d input points), the same", len(a), aggregates, len(lines))
}

// expectedAggregateLines counts what both relays send for lines: the raw
// sys lines the last match forwards (not the h…0 ones, stopped by the
// static aggregate) and one line per compute series and bucket.
func expectedAggregateLines(lines []string, now int64) int {
	raw := 0
	dyn := map[string]bool{}   // h/bucket (10 computes, but p30 is per m)
	dynM := map[string]bool{}  // m/bucket
	static := map[int64]bool{} // 2 s buckets
	for _, l := range lines {
		f := strings.Fields(l)
		ts, _ := strconv.ParseInt(f[2], 10, 64)
		parts := strings.Split(f[0], ".")
		tens := strings.HasSuffix(parts[1], "0")
		if !tens {
			raw++
		}
		if ts < now-100 || ts > now+100 {
			continue
		}
		dyn[parts[1]+"/"+f[2]] = true
		dynM[parts[2]+"/"+f[2]] = true
		if tens {
			static[ts-ts%2] = true
		}
	}
	return raw + 9*len(dyn) + len(dynM) + 2*len(static)
}

// sameLine compares two lines: names and timestamps exactly, values
// within float rounding.
func sameLine(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	if len(fa) != 3 || len(fb) != 3 || fa[0] != fb[0] || fa[2] != fb[2] {
		return false
	}
	va, err1 := strconv.ParseFloat(fa[1], 64)
	vb, err2 := strconv.ParseFloat(fb[1], 64)
	return err1 == nil && err2 == nil && math.Abs(va-vb) <= 1e-6*max(1, math.Abs(va))
}

// TestAggregatesAcrossReloadAndExit: a reload keeps the buckets of an
// aggregate whose definition did not change, emits those of a removed one
// and starts a new one; at exit every open bucket is emitted (partial),
// after every line received was aggregated.
func TestAggregatesAcrossReloadAndExit(t *testing.T) {
	sink := testutil.NewSink(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "relay.conf")
	keep := `aggregate ^a\.(x|y)$ every 60 seconds expire after 600 seconds
    compute sum write to s.\1
    compute count write to n.\1
    send to out stop;
`
	os.WriteFile(conf, []byte(fmt.Sprintf("cluster out forward %s;\n%saggregate ^b every 60 seconds expire after 600 seconds compute count write to b.n send to out stop;\nmatch * send to out;\n", sink.Addr(), keep)), 0o600)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("reload-token-0123456789"), 0o600)
	d := start(t, "-config", conf, "-admin-addr", "127.0.0.1:0", "-admin-write", "-admin-token-file", tokenFile)
	ts := time.Now().Unix()/60*60 + 1 // one bucket, whenever in the minute the test runs
	bucketEnd := ts - 1 + 60
	d.Send(t, "listen", fmt.Sprintf("a.x 1 %[1]d\na.x 2 %[1]d\na.y 5 %[1]d\nb 1 %[1]d\nmark.1 1 %[1]d\n", ts))
	if !sink.WaitCount(1, limit) {
		t.Fatal("the marker did not arrive")
	}
	os.WriteFile(conf, []byte(fmt.Sprintf("cluster out forward %s;\nmatch ^zzz send to out;\n%saggregate ^c every 60 seconds expire after 600 seconds compute count write to c.n send to out stop;\nmatch * send to out;\n", sink.Addr(), keep)), 0o600)
	code, body := testutil.Request(t, "POST", "http://"+d.Addrs["admin"]+"/api/v1/reload", "", map[string]string{"Authorization": "Bearer reload-token-0123456789"})
	if code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if !sink.WaitCount(2, limit) {
		t.Fatal("the removed aggregate emitted nothing")
	}
	d.Send(t, "listen", fmt.Sprintf("a.x 3 %[1]d\nc 1 %[1]d\nc 1 %[1]d\n", ts))
	testutil.WaitFor(t, "the points aggregated", limit, func() bool {
		return strings.Contains(testutil.Scrape(t, "http://"+d.Addrs["admin"]+"/metrics"), `polymur_aggregate_points_received_total{aggregate="`+conf+`:7:1"} 2`)
	})
	_, stats := testutil.Get(t, "http://"+d.Addrs["admin"]+"/api/v1/stats")
	testutil.HasAll(t, "stats", stats, `"aggregates": {`, `"aggregate": "`+conf+`:7:1"`, `"buckets": 1`, `"emitted":`)
	dom := testutil.RenderPage(t, "http://"+d.Addrs["admin"]+"/", 5*time.Second, "")
	testutil.HasAll(t, "the status page", dom, `data-loaded="yes"`, "<h2>Aggregates</h2>", "<td>"+conf+":7:1</td>",
		// The running configuration after the reload: its file, rules and clusters.
		"config "+conf, "4 rules", "2 aggregates", `data-cluster="out"`, "<td>forward</td>", "<td class=\"members\">"+sink.Addr()+"</td>")
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	got := sink.Lines()
	slices.Sort(got)
	want := []string{
		fmt.Sprintf("b.n 1 %d", bucketEnd), fmt.Sprintf("c.n 2 %d", bucketEnd), fmt.Sprintf("mark.1 1 %d", ts),
		fmt.Sprintf("n.x 3 %d", bucketEnd), fmt.Sprintf("n.y 1 %d", bucketEnd),
		fmt.Sprintf("s.x 6.000000 %d", bucketEnd), fmt.Sprintf("s.y 5.000000 %d", bucketEnd),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("sink got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAggregateTestMode: -test prints the series each compute would feed.
func TestAggregateTestMode(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "relay.conf")
	os.WriteFile(conf, []byte(`cluster out forward 10.0.0.1:2003;
aggregate ^sys\.([^.]+)\.cpu$ every 10 seconds expire after 20 seconds
    compute sum write to agg.\_1.sum
    compute percentile95 write to agg.\1.p95
    ;
match * send to out;
`), 0o600)
	var out strings.Builder
	if err := run(t.Context(), []string{"-config", conf, "-test"}, strings.NewReader("sys.Web01.cpu 1 2\nother 1 2\n"), &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	want := "sys.Web01.cpu\tagg.web01.sum\taggregate\t-\t-\nsys.Web01.cpu\tagg.Web01.p95\taggregate\t-\t-\nsys.Web01.cpu\tsys.Web01.cpu\tsend\tout\t10.0.0.1:2003\nother\tother\tsend\tout\t10.0.0.1:2003\n"
	if out.String() != want {
		t.Fatalf("-test printed\n%s\nwant\n%s", out.String(), want)
	}
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// aggregateSeries and aggregateGroups: 1,000,000 input series feeding
// 10,000 aggregate series per compute.
const aggregateSeries, aggregateGroups = 1_000_000, 10_000

// aggregateConfig has one dynamic aggregate (sum, count and percentile95
// per group) over the sink; everything else (the end markers) is
// forwarded.
func aggregateConfig(sink string) string {
	return fmt.Sprintf(`cluster out forward %s;
aggregate ^bench\.agg\.(g[0-9]+)\.s[0-9]+$
    every 60 seconds
    expire after 600 seconds
    compute sum write to agg.\1.sum
    compute count write to agg.\1.count
    compute percentile95 write to agg.\1.p95
    send to out
    stop
    ;
match * send to out;
`, sink)
}

// markerEvery is how many points a connection sends between two markers.
const markerEvery = 10_000

// aggregateInput is one point per series over conns connections, with a
// marker line every markerEvery points that both relays forward: when a
// marker arrives, every point before it on its connection was aggregated
// (a connection is read in order), so the markers count the progress.
func aggregateInput(conns int) input {
	in := input{lines: aggregateSeries, bufs: make([][]byte, conns)}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	for c := range conns {
		var b bytes.Buffer
		n := 0
		for i := c; i < aggregateSeries; i += conns {
			fmt.Fprintf(&b, "bench.agg.g%d.s%d %d %s\n", i%aggregateGroups, i/aggregateGroups, i%1000, ts)
			if n++; n%markerEvery == 0 {
				fmt.Fprintf(&b, "bench.marker.%d.%d 1 %s\n", c, n, ts)
			}
		}
		if n%markerEvery != 0 {
			fmt.Fprintf(&b, "bench.marker.%d.%d 1 %s\n", c, n, ts)
		}
		in.bufs[c] = b.Bytes()
		in.bytes += b.Len()
	}
	return in
}

// aggregateRun is the aggregation scenario side by side: input lines per
// CPU-second until every point was taken, and peak RSS holding the open
// buckets.
func aggregateRun(bin, peer string, timeout time.Duration) ([]string, error) {
	in := aggregateInput(4)
	runs := configRuns(bin, peer, "-config (1M series into 10k aggregates: sum, count, percentile95)")
	return interleaved("aggregate", 3, runs, len(in.bufs), func(r run) (measured, error) {
		s, err := newSink()
		if err != nil {
			return measured{}, err
		}
		defer s.close()
		dir, err := os.MkdirTemp("", "polymur-bench-aggregate")
		if err != nil {
			return measured{}, err
		}
		defer os.RemoveAll(dir)
		conf := filepath.Join(dir, "relay.conf")
		if err := os.WriteFile(conf, []byte(aggregateConfig(s.addr())), 0o600); err != nil {
			return measured{}, err
		}
		rl := relay{name: r.name, settings: r.settings, start: func(_, listen string, _ []string) (*exec.Cmd, error) { return r.start(conf, listen) }}
		want := int64(0)
		for _, b := range in.bufs {
			want += int64(bytes.Count(b, []byte("bench.marker.")))
		}
		res, err := measure(rl, "aggregate", []*sink{s}, []string{s.addr()}, in, want, timeout)
		// A relay that did not finish in time is rated on the points its
		// markers show it took.
		res.inLines = int(int64(in.lines) * res.delivered / max(want, 1))
		return measured{res, want}, err
	})
}

package aggregate

import (
	"context"
	"fmt"
	"testing"

	"github.com/polymur/polymur/route"
)

// BenchmarkPut: the bench scenario's aggregate (sum, count, percentile95
// per group) on 10,000 groups, routed and fed as the daemon does.
func BenchmarkPut(b *testing.B) {
	tb, err := route.Parse("bench.conf", `cluster out forward 127.0.0.1:2003;
aggregate ^bench\.agg\.(g[0-9]+)\.s[0-9]+$ every 60 seconds expire after 600 seconds
    compute sum write to agg.\1.sum
    compute count write to agg.\1.count
    compute percentile95 write to agg.\1.p95
    send to out stop;`)
	if err != nil {
		b.Fatal(err)
	}
	clk := &clock{now: 1000}
	e := New(Config{Now: clk.Now, Emit: (&sink{}).emit, MaxValues: 1 << 30})
	e.Apply(context.Background(), tb.Aggregates())
	names := make([]string, 100_000)
	for i := range names {
		names[i] = fmt.Sprintf("bench.agg.g%d.s%d", i%10_000, i/10_000)
	}
	rest := []byte("42 1000")
	var ds []route.Delivery
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ds = tb.Route(ds[:0], names[i%len(names)], "", nil)
		for _, d := range ds {
			e.Put(d.Aggregate, d.Name, d.Loc, rest)
		}
		i++
	}
}

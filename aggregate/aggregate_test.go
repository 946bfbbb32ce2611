package aggregate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/route"
)

// TestCompute: every function on small, odd, even and one-point sets. The
// expected values are what carbon-c-relay 3.7.3 emitted for the same
// points (percentile ranks included: n·P+90 over 100, 0 below the first).
func TestCompute(t *testing.T) {
	seq := func(n int) []float64 {
		var v []float64
		for i := 1; i <= n; i++ {
			v = append(v, float64(i))
		}
		return v
	}
	cases := []struct {
		f    route.Func
		pct  int
		vals []float64
		want string
	}{
		{route.Sum, 0, []float64{1, 2, 3, 4}, "10.000000"},
		{route.Count, 0, []float64{1, 2, 3, 4}, "4"},
		{route.Min, 0, []float64{5, 1, 4, 2, 3}, "1.000000"},
		{route.Max, 0, []float64{5, 1, 4, 2, 3}, "5.000000"},
		{route.Average, 0, []float64{1, 2, 3, 4}, "2.500000"},
		{route.Median, 50, []float64{1, 2, 3, 4}, "2.000000"},
		{route.Median, 50, []float64{5, 1, 4, 2, 3}, "3.000000"},
		{route.Median, 50, []float64{7.5}, "7.500000"},
		{route.Median, 50, []float64{1, 3}, "1.000000"},
		{route.Percentile, 95, []float64{1, 2, 3, 4}, "4.000000"},
		{route.Percentile, 95, []float64{1, 3}, "3.000000"},
		{route.Percentile, 10, seq(10), "1.000000"},
		{route.Percentile, 12, seq(10), "2.000000"},
		{route.Percentile, 15, seq(7), "1.000000"},
		{route.Percentile, 75, seq(7), "6.000000"},
		{route.Percentile, 1, seq(7), "0.000000"},
		{route.Percentile, 1, seq(9), "0.000000"},
		{route.Percentile, 1, seq(10), "1.000000"},
		{route.Percentile, 1, seq(86), "1.000000"},
		{route.Percentile, 3, seq(109), "4.000000"},
		{route.Percentile, 7, seq(109), "8.000000"},
		{route.Percentile, 99, seq(3), "3.000000"},
		{route.Percentile, 90, []float64{-1.75, -0.5, 0.75, 2, 3.25, 4.5, 5.75, 7}, "7.000000"},
		{route.Variance, 0, []float64{1, 2, 3, 4}, "1.250000"},
		{route.Variance, 0, []float64{5, 5, 1, 1, 3}, "3.200000"},
		{route.Variance, 0, []float64{7.5}, "0.000000"},
		{route.Stddev, 0, []float64{1, 2, 3, 4}, "1.118034"},
		{route.Stddev, 0, []float64{7.5}, "0.000000"},
		{route.Sum, 0, []float64{1e20}, "100000000000000000000.000000"},
	}
	for _, c := range cases {
		b := bucket{n: len(c.vals), min: c.vals[0], max: c.vals[0], vals: slices.Clone(c.vals)}
		for _, v := range c.vals {
			b.sum += v
			b.min, b.max = min(b.min, v), max(b.max, v)
		}
		got := string(appendValue(nil, route.Compute{Func: c.f, Pct: c.pct}, &b, false))
		if got != c.want {
			t.Errorf("%s%d of %v = %s, want %s", c.f, c.pct, c.vals, got, c.want)
		}
	}
}

// TestCRelayRanks: median and percentile99 of sets whose values are less
// than 1 apart, as carbon-c-relay 3.7.3 emitted them (its comparison keeps
// those in arrival order), and in true order with SortedRanks.
func TestCRelayRanks(t *testing.T) {
	cases := []struct {
		vals              []float64
		med, p99          float64
		sortedMed, sorted float64
	}{
		{[]float64{0.5, 0.25}, 0.5, 0.25, 0.25, 0.5},
		{[]float64{3, 1.5}, 1.5, 3, 1.5, 3},
		{[]float64{0.9, 0.1, 0.5}, 0.1, 0.5, 0.5, 0.9},
		{[]float64{2.5, 1.0, 0.25}, 0.25, 2.5, 1.0, 2.5},
		{[]float64{0.75, 0.5, 0.25}, 0.5, 0.25, 0.5, 0.75},
		{[]float64{-0.5, -0.25}, -0.5, -0.25, -0.5, -0.25},
		{[]float64{10.75, 10.25}, 10.75, 10.25, 10.25, 10.75},
		{[]float64{1.9, 1.0}, 1.9, 1.0, 1.0, 1.9},
		{[]float64{2.0, 1.5, 1.0, 0.5}, 0.5, 1.5, 1.0, 2.0},
	}
	for _, c := range cases {
		for _, sorted := range []bool{false, true} {
			med, p99 := c.med, c.p99
			if sorted {
				med, p99 = c.sortedMed, c.sorted
			}
			if got := percentile(slices.Clone(c.vals), 50, sorted); got != med {
				t.Errorf("median of %v (sorted %v) = %v, want %v", c.vals, sorted, got, med)
			}
			if got := percentile(slices.Clone(c.vals), 99, sorted); got != p99 {
				t.Errorf("percentile99 of %v (sorted %v) = %v, want %v", c.vals, sorted, got, p99)
			}
		}
	}
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now int64
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Unix(c.now, 0) }
func (c *clock) set(s int64)    { c.mu.Lock(); c.now = s; c.mu.Unlock() }

type sink struct {
	mu    sync.Mutex
	lines []string
}

func (s *sink) emit(_ context.Context, _ *route.Aggregate, b *batch.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.Lines {
		s.lines = append(s.lines, strings.TrimSuffix(string(b.Line(i)), "\n"))
	}
	b.Release()
	return nil
}

func (s *sink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.lines
	s.lines = nil
	slices.Sort(out)
	return out
}

func table(t *testing.T, src string) *route.Table {
	t.Helper()
	tb, err := route.Parse("test.conf", "cluster out forward 127.0.0.1:2003;\n"+src)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// feed routes each "name value ts" line through tb into e.
func feed(e *Engine, tb *route.Table, lines ...string) {
	for _, l := range lines {
		name, rest, _ := strings.Cut(l, " ")
		for _, d := range tb.Route(nil, name, rest, nil) {
			if d.Outcome == route.Aggregated {
				e.Put(d.Aggregate, d.Name, d.Loc, []byte(rest))
			}
		}
	}
}

// TestBuckets: points go to the aligned bucket of their timestamp, which is
// emitted once expired with the chosen timestamp; late and future points
// are counted, not kept.
func TestBuckets(t *testing.T) {
	tb := table(t, `aggregate ^a\.([^.]+)$ every 10 seconds expire after 20 seconds
	compute sum write to s.\1
	compute count write to n.\1
	send to out stop;
aggregate ^b every 3 seconds expire after 6 seconds timestamp at middle of bucket compute max write to b.max send to out stop;
aggregate ^c every 3 seconds expire after 6 seconds timestamp at start of bucket compute min write to c.min send to out stop;
`)
	clk := &clock{now: 1000}
	var out sink
	e := New(Config{Now: clk.Now, Emit: out.emit})
	e.Apply(context.Background(), tb.Aggregates())
	feed(e, tb,
		"a.x 1 1000", "a.x 2 1009", "a.x 4 1010", "a.y 5 995",
		"a.x 100 979",  // bucket 970: 970+10+20 ≤ 1000, already emitted
		"a.x 100 1020", // bucket 1020 ≥ 1000+20: future
		"b 3 997", "b 7 1000", "c 3 997", "c -1 1000",
	)
	st := e.Stats()
	if st.Dropped[DropLate] != 2 || st.Dropped[DropFuture] != 2 {
		t.Fatalf("dropped %v, want late 2 and future 2 (one per compute)", st.Dropped)
	}
	steps := []struct {
		at   int64
		want []string
	}{
		{1004, nil},
		{1008, []string{"b.max 3.000000 997", "b.max 7.000000 1000", "c.min -1.000000 999", "c.min 3.000000 996"}},
		{1019, nil},
		{1020, []string{"n.y 1 1000", "s.y 5.000000 1000"}},
		{1030, []string{"n.x 2 1010", "s.x 3.000000 1010"}},
		{1040, []string{"n.x 1 1020", "s.x 4.000000 1020"}},
	}
	for _, s := range steps {
		clk.set(s.at)
		e.Tick(context.Background())
		if got := out.take(); !slices.Equal(got, s.want) {
			t.Fatalf("at %d:\n got  %v\n want %v", s.at, got, s.want)
		}
	}
	if st := e.Stats(); st.Series != 0 || st.Values != 0 {
		t.Fatalf("after all emitted: %d series, %d values", st.Series, st.Values)
	}
}

// TestLimits: series and values beyond the caps are dropped and counted.
func TestLimits(t *testing.T) {
	tb := table(t, `aggregate ^a\.(.*)$ every 10 seconds expire after 20 seconds compute median write to m.\1 send to out stop;`)
	clk := &clock{now: 1000}
	var out sink
	e := New(Config{Now: clk.Now, Emit: out.emit, MaxSeries: 3, MaxValues: 5})
	e.Apply(context.Background(), tb.Aggregates())
	for i := range 5 {
		feed(e, tb, fmt.Sprintf("a.%d 1 1000", i))
	}
	feed(e, tb, "a.0 2 1000", "a.0 3 1000", "a.0 4 1000", "a.0 5 1000")
	st := e.Stats()
	if st.Series != 3 || st.Dropped[DropSeries] != 2 || st.Values != 5 || st.Dropped[DropValues] != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestApplyKeepsState: a reload keeps the buckets of an unchanged aggregate,
// emits those of a removed one, and starts a changed one afresh.
func TestApplyKeepsState(t *testing.T) {
	conf := `aggregate ^a every 10 seconds expire after 20 seconds compute sum write to a.sum send to out stop;
aggregate ^b every 10 seconds expire after 20 seconds compute sum write to b.sum send to out stop;
`
	tb := table(t, conf)
	clk := &clock{now: 1000}
	var out sink
	e := New(Config{Now: clk.Now, Emit: out.emit})
	e.Apply(context.Background(), tb.Aggregates())
	feed(e, tb, "a 1 1000", "b 2 1000")
	tb2 := table(t, `match ^x send to out;
aggregate ^a every 10 seconds expire after 20 seconds compute sum write to a.sum send to out stop;
aggregate ^c every 10 seconds expire after 20 seconds compute sum write to c.sum send to out stop;
`)
	e.Apply(context.Background(), tb2.Aggregates())
	if got, want := out.take(), []string{"b.sum 2.000000 1010"}; !slices.Equal(got, want) {
		t.Fatalf("removed aggregate: got %v, want %v", got, want)
	}
	feed(e, tb2, "a 3 1001", "c 4 1001")
	var final sink
	e.Final(func(b *batch.Batch) {
		if b.Via == nil {
			t.Error("final output without its aggregate")
		}
		final.emit(context.Background(), nil, b)
	})
	if got, want := final.take(), []string{"a.sum 4.000000 1010", "c.sum 4.000000 1010"}; !slices.Equal(got, want) {
		t.Fatalf("final: got %v, want %v", got, want)
	}
}

// TestDropAtExit: with DropAtExit the open buckets are counted, not sent.
func TestDropAtExit(t *testing.T) {
	tb := table(t, `aggregate ^a every 10 seconds expire after 20 seconds compute sum write to a.sum compute count write to a.n send to out stop;`)
	e := New(Config{Now: (&clock{now: 1000}).Now, Emit: (&sink{}).emit, DropAtExit: true})
	e.Apply(context.Background(), tb.Aggregates())
	feed(e, tb, "a 1 1000", "a 2 1000")
	e.Final(func(b *batch.Batch) { t.Errorf("emitted %d lines at exit", b.Len()) })
	if st := e.Stats(); st.Dropped[DropShutdown] != 4 {
		t.Fatalf("dropped %v, want 4 %s", st.Dropped, DropShutdown)
	}
}

// TestParseValue: the value and timestamp of a line.
func TestParseValue(t *testing.T) {
	cases := []struct {
		rest string
		v    float64
		ts   int64
		ok   bool
	}{
		{"1 1000", 1, 1000, true},
		{"-2.5e3 1000", -2500, 1000, true},
		{"1  1000.7", 1, 1000, true},
		{"abc 1000", 0, 0, false},
		{"1 abc", 0, 0, false},
		{"NaN 1000", 0, 0, false},
		{"1", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, c := range cases {
		v, ts, ok := parse([]byte(c.rest))
		if ok != c.ok || ok && (v != c.v || ts != c.ts) {
			t.Errorf("parse(%q) = %v %v %v, want %v %v %v", c.rest, v, ts, ok, c.v, c.ts, c.ok)
		}
	}
}

// FuzzPut: any line fed to an aggregate is kept or counted, never a crash.
func FuzzPut(f *testing.F) {
	f.Add("a.b.c", "1 1000")
	f.Add("a..", "x y")
	f.Add("a.\xff", "1e308 -99999999999")
	tb, err := route.Parse("fuzz.conf", `cluster out forward 127.0.0.1:2003;
aggregate ^a\.([^.]*)\.?(.*)$ every 7 seconds expire after 20 seconds
	compute percentile37 write to p.\_1.\^2
	compute stddev write to s.\.2
	send to out stop;`)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, rest string) {
		var out sink
		e := New(Config{Now: (&clock{now: 1000}).Now, Emit: out.emit, MaxSeries: 10, MaxValues: 10})
		e.Apply(context.Background(), tb.Aggregates())
		feed(e, tb, name+" "+rest)
		e.Final(func(b *batch.Batch) { b.Release() })
		if st := e.Stats(); st.Series != 0 || st.Values != 0 {
			t.Fatalf("left %d series %d values", st.Series, st.Values)
		}
	})
}

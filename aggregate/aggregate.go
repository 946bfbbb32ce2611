// Package aggregate carries out a routing table's aggregate rules:
// carbon-c-relay's "aggregate … every N seconds expire after M seconds
// compute … write to …". Points go to buckets aligned to the interval by
// their own timestamp; a bucket is emitted when it has been closed for the
// expiry time, each compute writing one line per series. Memory is bounded:
// a cap on live series and one on the values kept for median, percentile,
// variance and stddev; beyond them points are dropped and counted.
package aggregate

import (
	"context"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/route"
)

// Reasons a point fed to an aggregate is dropped.
const (
	DropLate        = "aggregate_late"         // its bucket was already emitted
	DropFuture      = "aggregate_future"       // too far ahead of the clock
	DropSeries      = "aggregate_series_limit" // a new series beyond -aggregate-max-series
	DropValues      = "aggregate_values_limit" // values beyond -aggregate-max-values
	DropInvalid     = "aggregate_invalid"      // no number in the value or timestamp
	DropShutdown    = "aggregate_shutdown"     // open buckets at exit or removal, dropped by policy
	DropUnavailable = "aggregate_unavailable"  // the aggregate is not in the table in force (a reload in between)
)

// maxBatch is how many lines one output batch holds.
const maxBatch = 5000

// Config sets an Engine up.
type Config struct {
	// MaxSeries caps the live series of all aggregates (default 1,000,000).
	MaxSeries int
	// MaxValues caps the values kept for median, percentile, variance and
	// stddev (8 bytes each; default 16,777,216: 128 MiB).
	MaxValues int64
	// Tick is how often expired buckets are looked for (default 250ms).
	Tick time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Emit hands an output batch on (it owns b). An error means the batch
	// was not taken: its points are counted as dropped.
	Emit func(ctx context.Context, a *route.Aggregate, b *batch.Batch) error
	// DropAtExit drops (and counts) the open buckets at exit and when an
	// aggregate leaves the configuration, instead of emitting them partial.
	DropAtExit bool
	// SortedRanks ranks median and percentile values in true order; by
	// default they are ranked as carbon-c-relay does (see crelayOrder).
	SortedRanks bool
	Log         *slog.Logger
}

// Engine holds the state of the aggregates in force. Safe for concurrent
// use.
type Engine struct {
	cfg     Config
	mu      sync.Mutex // guards byDef, byKey (replaced whole by Apply)
	byDef   map[*route.Aggregate]*agg
	byKey   map[string]*agg
	series  atomic.Int64
	values  atomic.Int64
	dropped sync.Map // reason → *atomic.Uint64, for aggregates gone
}

// agg is one aggregate's state.
type agg struct {
	def     atomic.Pointer[route.Aggregate]
	every   int64
	expire  int64
	mu      sync.Mutex
	series  []map[string]*series // per compute, by series name
	nseries int
	due     map[int64][]*series // bucket start → the series with a bucket there
	nbuck   int
	buf     []byte // keys and names being built (under mu)
	// inst caches, by AppendKey, the series of each compute a metric
	// feeds (one map lookup per point, not one per compute); an entry
	// with a series since emitted is rebuilt.
	inst map[string][]*series

	received, emitted atomic.Uint64
	dropped           [7]atomic.Uint64 // by dropReasons index
}

var dropReasons = [...]string{DropLate, DropFuture, DropSeries, DropValues, DropInvalid, DropShutdown, DropUnavailable}

type series struct {
	dead    bool   // emitted and removed from the maps
	c       int    // compute
	name    string // series name
	values  bool   // keeps every value (median, percentile, variance, stddev)
	buckets []bucket
}

type bucket struct {
	start         int64
	n             int
	sum, min, max float64
	vals          []float64
}

// New makes an engine; Apply gives it the aggregates.
func New(cfg Config) *Engine {
	if cfg.MaxSeries <= 0 {
		cfg.MaxSeries = 1_000_000
	}
	if cfg.MaxValues <= 0 {
		cfg.MaxValues = 16 << 20
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Engine{cfg: cfg, byDef: map[*route.Aggregate]*agg{}, byKey: map[string]*agg{}}
}

// Apply makes defs the aggregates in force. One whose definition (Key) was
// in force before keeps its state; the others start empty; those no longer
// in defs emit what they hold (or drop it, with DropAtExit).
func (e *Engine) Apply(ctx context.Context, defs []*route.Aggregate) {
	byDef, byKey := map[*route.Aggregate]*agg{}, map[string]*agg{}
	e.mu.Lock()
	old := e.byKey
	for _, d := range defs {
		a := old[d.Key()]
		if a == nil {
			a = byKey[d.Key()]
		}
		if a == nil {
			a = &agg{every: int64(d.Every), expire: int64(d.Expire), due: map[int64][]*series{}, inst: map[string][]*series{}}
			for range d.Computes {
				a.series = append(a.series, map[string]*series{})
			}
		}
		a.def.Store(d)
		byDef[d], byKey[d.Key()] = a, a
	}
	e.byDef, e.byKey = byDef, byKey
	e.mu.Unlock()
	for k, a := range old {
		if byKey[k] == nil {
			e.flush(ctx, a, !e.cfg.DropAtExit)
			e.keepDrops(a)
		}
	}
}

// keepDrops folds a departing aggregate's drop counts into the engine's.
func (e *Engine) keepDrops(a *agg) {
	for i, r := range dropReasons {
		if n := a.dropped[i].Load(); n > 0 {
			c, _ := e.dropped.LoadOrStore(r, new(atomic.Uint64))
			c.(*atomic.Uint64).Add(n)
		}
	}
}

func (e *Engine) lookup(d *route.Aggregate) *agg {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a := e.byDef[d]; a != nil {
		return a
	}
	return e.byKey[d.Key()] // a table edited or reloaded since d was routed
}

// Put feeds one point to every compute of aggregate d, which matched the
// metric name at loc (route.Delivery's Loc); rest is the line after the
// name ("value timestamp").
func (e *Engine) Put(d *route.Aggregate, name string, loc []int, rest []byte) {
	a := e.lookup(d)
	if a == nil {
		e.drop(DropUnavailable, uint64(len(d.Computes)))
		return
	}
	n := uint64(len(d.Computes))
	a.received.Add(n)
	v, ts, ok := parse(rest)
	if !ok {
		a.drop(DropInvalid, n)
		return
	}
	now := e.cfg.Now().Unix()
	start := floor(ts, a.every)
	switch {
	case start+a.every+a.expire <= now:
		a.drop(DropLate, n)
		return
	case start >= floor(now, a.every)+a.expire:
		a.drop(DropFuture, n)
		return
	}
	a.mu.Lock()
	a.buf = d.AppendKey(a.buf[:0], name, loc)
	ss := a.inst[string(a.buf)]
	if !live(ss, len(d.Computes)) {
		if len(a.inst) >= e.cfg.MaxSeries {
			clear(a.inst) // a cache: bounded like the series
		}
		ss = make([]*series, len(d.Computes))
		for c := range d.Computes {
			a.buf = d.AppendName(a.buf[:0], c, name, loc)
			ss[c] = a.series[c][string(a.buf)]
		}
		a.buf = d.AppendKey(a.buf[:0], name, loc)
		a.inst[string(a.buf)] = ss
	}
	for c, s := range ss {
		if s == nil {
			a.buf = d.AppendName(a.buf[:0], c, name, loc)
			if s = e.newSeries(a, d, c, a.buf); s == nil {
				continue
			}
			ss[c] = s
		}
		e.add(a, s, start, v)
	}
	a.mu.Unlock()
}

// live reports whether a cached entry holds a series for every compute,
// none of them emitted away.
func live(ss []*series, n int) bool {
	if len(ss) != n {
		return false
	}
	for _, s := range ss {
		if s == nil || s.dead {
			return false
		}
	}
	return true
}

// newSeries makes compute c's series name (a.mu held), or counts the point
// dropped beyond -aggregate-max-series.
func (e *Engine) newSeries(a *agg, d *route.Aggregate, c int, name []byte) *series {
	if e.series.Add(1) > int64(e.cfg.MaxSeries) {
		e.series.Add(-1)
		a.drop(DropSeries, 1)
		return nil
	}
	s := &series{c: c, name: string(name), values: d.Computes[c].Func.NeedsValues()}
	a.series[c][s.name] = s
	a.nseries++
	return s
}

// add puts v in series s, bucket start (a.mu held).
func (e *Engine) add(a *agg, s *series, start int64, v float64) {
	if s.values && e.values.Add(1) > e.cfg.MaxValues {
		e.values.Add(-1)
		a.drop(DropValues, 1)
		return
	}
	b := s.bucket(start)
	if b == nil {
		s.buckets = append(s.buckets, bucket{start: start, min: v, max: v})
		b = &s.buckets[len(s.buckets)-1]
		a.due[start] = append(a.due[start], s)
		a.nbuck++
	}
	b.n++
	b.sum += v
	b.min, b.max = min(b.min, v), max(b.max, v)
	if s.values {
		b.vals = append(b.vals, v)
	}
}

func (s *series) bucket(start int64) *bucket {
	for i := range s.buckets {
		if s.buckets[i].start == start {
			return &s.buckets[i]
		}
	}
	return nil
}

// floor is the start of the interval-aligned bucket holding ts.
func floor(ts, every int64) int64 {
	q := ts / every
	if ts%every < 0 {
		q--
	}
	return q * every
}

// parse reads "value timestamp" (a fractional timestamp is cut to its
// second, as carbon does).
func parse(rest []byte) (v float64, ts int64, ok bool) {
	i := 0
	for i < len(rest) && rest[i] != ' ' {
		i++
	}
	v, err := strconv.ParseFloat(string(rest[:i]), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, 0, false
	}
	for i < len(rest) && rest[i] == ' ' {
		i++
	}
	j := i
	for j < len(rest) && rest[j] != ' ' {
		j++
	}
	t := rest[i:j]
	if n, err := strconv.ParseInt(string(t), 10, 64); err == nil {
		return v, n, true
	}
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > 1e15 {
		return 0, 0, false
	}
	return v, int64(f), true
}

func (a *agg) drop(reason string, n uint64) {
	for i, r := range dropReasons {
		if r == reason {
			a.dropped[i].Add(n)
		}
	}
}

func (e *Engine) drop(reason string, n uint64) {
	c, _ := e.dropped.LoadOrStore(reason, new(atomic.Uint64))
	c.(*atomic.Uint64).Add(n)
}

// Run emits expired buckets every Tick until ctx ends. What is open then
// stays for Final (the shutdown drain).
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e.Tick(ctx)
		}
	}
}

// Tick emits every bucket that has expired by now.
func (e *Engine) Tick(ctx context.Context) {
	now := e.cfg.Now().Unix()
	for _, a := range e.current() {
		e.emitDue(ctx, a, func(start int64) bool { return start+a.every+a.expire <= now })
	}
}

// Final emits every open bucket (partial ones included), or drops and
// counts them with DropAtExit; place hands the output on. It is the
// shutdown drain's last step (dest.Config.InputEnd).
func (e *Engine) Final(place func(*batch.Batch)) {
	for _, a := range e.current() {
		if e.cfg.DropAtExit {
			e.discard(a)
			continue
		}
		e.emitWith(a, func(int64) bool { return true }, func(d *route.Aggregate, b *batch.Batch) {
			b.Via = d
			place(b)
		})
	}
	if !e.cfg.DropAtExit {
		if n := e.Open(); n > 0 {
			e.cfg.Log.Warn("aggregates left points at exit", "points", n)
		}
	}
}

func (e *Engine) current() []*agg {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := slices.Collect(maps.Values(e.byKey))
	slices.SortFunc(out, func(x, y *agg) int { return cmpPos(x.def.Load(), y.def.Load()) })
	return out
}

func cmpPos(x, y *route.Aggregate) int {
	if x.Pos() < y.Pos() {
		return -1
	}
	if x.Pos() > y.Pos() {
		return 1
	}
	return 0
}

// flush empties a (a departing aggregate): emitted, or dropped by policy.
func (e *Engine) flush(ctx context.Context, a *agg, emit bool) {
	if !emit {
		e.discard(a)
		return
	}
	e.emitDue(ctx, a, func(int64) bool { return true })
}

// discard drops a's open buckets, counted.
func (e *Engine) discard(a *agg) {
	a.mu.Lock()
	var n uint64
	for _, m := range a.series {
		for _, s := range m {
			for _, b := range s.buckets {
				n += uint64(b.n)
				if s.values {
					e.values.Add(-int64(b.n))
				}
			}
		}
		for _, s := range m {
			s.dead = true
		}
		clear(m)
	}
	clear(a.inst)
	e.series.Add(-int64(a.nseries))
	a.nseries = 0
	clear(a.due)
	a.nbuck = 0
	a.mu.Unlock()
	a.drop(DropShutdown, n)
}

// emitDue emits a's buckets whose start due accepts through cfg.Emit.
func (e *Engine) emitDue(ctx context.Context, a *agg, due func(start int64) bool) {
	e.emitWith(a, due, func(d *route.Aggregate, b *batch.Batch) {
		n := b.Len()
		if err := e.cfg.Emit(ctx, d, b); err != nil {
			a.emitted.Add(-uint64(n))
			a.drop(DropShutdown, uint64(n))
			e.cfg.Log.Warn("aggregate output not taken: counted as dropped", "aggregate", d.Pos(), "lines", n, "err", err)
		}
	})
}

// emitWith takes a's due buckets out under its lock, then formats and
// hands them on in batches of at most maxBatch lines.
func (e *Engine) emitWith(a *agg, due func(start int64) bool, out func(*route.Aggregate, *batch.Batch)) {
	type done struct {
		s *series
		b bucket
	}
	d := a.def.Load()
	a.mu.Lock()
	var starts []int64
	for start := range a.due {
		if due(start) {
			starts = append(starts, start)
		}
	}
	slices.Sort(starts)
	var ready []done
	for _, start := range starts {
		for _, s := range a.due[start] {
			for i := range s.buckets {
				if s.buckets[i].start == start {
					ready = append(ready, done{s, s.buckets[i]})
					s.buckets = slices.Delete(s.buckets, i, i+1)
					break
				}
			}
			if len(s.buckets) == 0 {
				delete(a.series[s.c], s.name)
				s.dead = true
				a.nseries--
				e.series.Add(-1)
			}
		}
		a.nbuck -= len(a.due[start])
		delete(a.due, start)
	}
	if a.nseries == 0 {
		clear(a.inst)
	}
	a.mu.Unlock()
	var b *batch.Batch
	var line []byte
	for _, r := range ready {
		if b == nil {
			b = batch.Get()
		}
		c := d.Computes[r.s.c]
		line = append(line[:0], r.s.name...)
		line = append(line, ' ')
		line = appendValue(line, c, &r.b, e.cfg.SortedRanks)
		line = append(line, ' ')
		line = strconv.AppendInt(line, stamp(d, r.b.start), 10)
		line = append(line, '\n')
		b.Append(line, len(r.s.name))
		if r.s.values {
			e.values.Add(-int64(len(r.b.vals)))
		}
		a.emitted.Add(1)
		if b.Len() == maxBatch {
			out(d, b)
			b = nil
		}
	}
	if b != nil {
		out(d, b)
	}
}

// stamp is the timestamp an output line of the bucket at start carries.
func stamp(d *route.Aggregate, start int64) int64 {
	switch d.Timestamp {
	case route.AtStart:
		return start
	case route.AtMiddle:
		return start + int64(d.Every)/2
	}
	return start + int64(d.Every)
}

// Open is the points held in open buckets.
func (e *Engine) Open() int {
	n := 0
	for _, a := range e.current() {
		a.mu.Lock()
		for _, m := range a.series {
			for _, s := range m {
				for _, b := range s.buckets {
					n += b.n
				}
			}
		}
		a.mu.Unlock()
	}
	return n
}

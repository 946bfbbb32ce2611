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
	"slices"
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

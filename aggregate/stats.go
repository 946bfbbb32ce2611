package aggregate

import "sync/atomic"

// Stats is a snapshot of the engine's state and counters.
type Stats struct {
	Aggregates []AggStats
	Series     int64 // live series, all aggregates
	Values     int64 // values kept for median, percentile, variance, stddev
	MaxSeries  int
	MaxValues  int64
	Dropped    map[string]uint64 // points dropped by reason, all aggregates (gone ones too)
}

// AggStats is one aggregate's.
type AggStats struct {
	Pos      string // where it is defined (file:line:col)
	Series   int
	Buckets  int
	Received uint64 // points fed to it
	Emitted  uint64 // lines it wrote
	Dropped  map[string]uint64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{Series: e.series.Load(), Values: e.values.Load(), MaxSeries: e.cfg.MaxSeries, MaxValues: e.cfg.MaxValues, Dropped: map[string]uint64{}}
	e.dropped.Range(func(k, v any) bool {
		s.Dropped[k.(string)] += v.(*atomic.Uint64).Load()
		return true
	})
	for _, a := range e.current() {
		as := AggStats{Pos: a.def.Load().Pos(), Received: a.received.Load(), Emitted: a.emitted.Load(), Dropped: map[string]uint64{}}
		a.mu.Lock()
		as.Series, as.Buckets = a.nseries, a.nbuck
		a.mu.Unlock()
		for i, r := range dropReasons {
			if n := a.dropped[i].Load(); n > 0 {
				as.Dropped[r] = n
				s.Dropped[r] += n
			}
		}
		s.Aggregates = append(s.Aggregates, as)
	}
	return s
}

package aggregate

import "sync/atomic"

// Stats is a snapshot of the engine's state and counters.
type Stats struct {
	Aggregates []AggStats        `json:"aggregates"`
	Series     int64             `json:"series"`     // live series, all aggregates
	Values     int64             `json:"values"`     // values kept for median, percentile, variance, stddev
	MaxSeries  int               `json:"max_series"` // -aggregate-max-series
	MaxValues  int64             `json:"max_values"` // -aggregate-max-values
	Dropped    map[string]uint64 `json:"dropped"`    // points dropped by reason, all aggregates (gone ones too)
}

// AggStats is one aggregate's.
type AggStats struct {
	Pos      string            `json:"aggregate"` // where it is defined (file:line:col)
	Series   int               `json:"series"`
	Buckets  int               `json:"buckets"`
	Received uint64            `json:"received"` // points fed to it (one per compute)
	Emitted  uint64            `json:"emitted"`  // lines it wrote
	Dropped  map[string]uint64 `json:"dropped"`
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

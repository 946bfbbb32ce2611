package aggregate

import (
	"math"
	"strconv"

	"github.com/polymur/polymur/route"
)

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

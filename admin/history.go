package admin

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Sample is one reading of a daemon's counters for the status page's
// charts: totals since start, and what each destination holds now.
type Sample struct {
	Received, Sent, Dropped uint64
	// Queued is, per destination, the points waiting for it (memory queue,
	// in flight and spooled).
	Queued map[string]int64
}

// HistoryEvery and HistoryLen: the page's charts cover the last ten
// minutes, one point every five seconds.
const (
	HistoryEvery = 5 * time.Second
	HistoryLen   = 120
)

// Point is one chart point: rates per second over the interval that ends
// at T, and the queues at T.
type Point struct {
	T        int64            `json:"t"` // Unix milliseconds
	Received float64          `json:"received_per_second"`
	Sent     float64          `json:"sent_per_second"`
	Dropped  float64          `json:"dropped_per_second"`
	Queued   map[string]int64 `json:"queued"`
}

// history keeps the last HistoryLen points, computed from samples.
type history struct {
	mu     sync.Mutex
	last   Sample
	lastAt time.Time
	points []Point // oldest first
}

func rate(now, prev uint64, dt float64) float64 {
	if now < prev || dt <= 0 {
		return 0 // a counter reset (never, but not a negative rate)
	}
	return float64(now-prev) / dt
}

// point is the interval from the last sample to s at now.
func (h *history) point(now time.Time, s Sample) Point {
	dt := now.Sub(h.lastAt).Seconds()
	return Point{T: now.UnixMilli(), Received: rate(s.Received, h.last.Received, dt), Sent: rate(s.Sent, h.last.Sent, dt),
		Dropped: rate(s.Dropped, h.last.Dropped, dt), Queued: s.Queued}
}

// add records a sample; the first one is only the baseline.
func (h *history) add(now time.Time, s Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.lastAt.IsZero() {
		h.points = append(h.points, h.point(now, s))
		if len(h.points) > HistoryLen {
			h.points = append(h.points[:0], h.points[len(h.points)-HistoryLen:]...)
		}
	}
	h.last, h.lastAt = s, now
}

// snapshot is the kept points plus one for the interval since the last
// sample (so a page opened just after start has something to draw).
func (h *history) snapshot(now time.Time, s Sample) []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]Point(nil), h.points...)
	if !h.lastAt.IsZero() && now.Sub(h.lastAt) >= 500*time.Millisecond {
		out = append(out, h.point(now, s))
	}
	return out
}

// sample runs until ctx ends, reading cfg.Sample every HistoryEvery.
func (s *Server) sample(ctx context.Context) {
	t := time.NewTicker(HistoryEvery)
	defer t.Stop()
	s.hist.add(time.Now(), s.cfg.Sample())
	for {
		select {
		case now := <-t.C:
			s.hist.add(now, s.cfg.Sample())
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) historyJSON(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"interval_seconds": HistoryEvery.Seconds(),
		"points": s.hist.snapshot(time.Now(), s.cfg.Sample())})
}

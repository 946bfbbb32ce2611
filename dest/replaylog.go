package dest

import (
	"log/slog"
	"time"
)

// replayLog tells the operator how a spool replay goes: a line when it
// starts (what the spool holds), one every replayLogEvery with the rate and
// an ETA, and one when the spool is empty again.
type replayLog struct {
	active   bool
	start    time.Time
	last     time.Time // last progress line
	replayed int64     // lines taken from the spool since start
	first    int64     // lines in the spool at start
}

const replayLogEvery = 5 * time.Second

// replayLogMin is how far behind (bytes) a write-ahead spool must be for its
// catching up to be logged as a replay: there every batch passes the spool.
const replayLogMin = 4 * readAhead

// took notes n lines taken from a spool that still holds left lines and
// bytes (taken ones included until they are delivered), and logs the start
// or progress.
func (r *replayLog) took(log *slog.Logger, now time.Time, n, left, bytes int64, always bool) {
	if !r.active {
		if always && bytes < replayLogMin {
			return
		}
		*r = replayLog{active: true, start: now, last: now, first: left}
		log.Info("spool replay started", "lines", left, "bytes", bytes)
	}
	r.replayed += n
	if now.Sub(r.last) < replayLogEvery {
		return
	}
	r.last = now
	elapsed := now.Sub(r.start)
	rate := float64(r.replayed) / elapsed.Seconds()
	attrs := []any{"replayed", r.replayed, "left", left, "lines_per_second", int64(rate), "elapsed", elapsed.Round(time.Millisecond)}
	if rate > 0 {
		attrs = append(attrs, "eta", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
	}
	log.Info("spool replay progress", attrs...)
}

// idle is called when the writer has nothing to write: a replay whose
// spool is empty has ended.
func (r *replayLog) idle(log *slog.Logger, now time.Time, left int64) {
	if !r.active || left > 0 {
		return
	}
	r.active = false
	log.Info("spool replay finished", "replayed", r.replayed, "took", now.Sub(r.start).Round(time.Millisecond))
}

package runstats

import (
	"context"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/polymur/polymur/batch"
)

// Rate turns a monotonically growing counter into a per-interval log line
// and remembers the last rate. Not safe for concurrent use: one goroutine
// runs it.
type Rate struct {
	Count    func() uint64
	last     uint64
	lastTime time.Time
	rate     float64
}

// Tick samples the counter; it returns the points seen since the last tick
// and the per-second average over the elapsed time.
func (r *Rate) Tick(now time.Time) (uint64, float64, time.Duration) {
	c := r.Count()
	if r.lastTime.IsZero() {
		r.last, r.lastTime = c, now
		return 0, 0, 0
	}
	d, el := c-r.last, now.Sub(r.lastTime)
	r.last, r.lastTime = c, now
	r.rate = 0
	if el > 0 {
		r.rate = float64(d) / el.Seconds()
	}
	return d, r.rate, el
}

// Last returns the rate computed at the last tick.
func (r *Rate) Last() float64 { return r.rate }

// LogRates logs a status line every interval while points arrive
// (msg=throughput interval=5s received=N rate=X), and one every
// IdleLogEvery while none do (msg=idle idle_for=…), so that a quiet daemon
// and a stuck one look different; both carry whatever extra attributes
// extra returns (queued, sent, dropped…).
func LogRates(ctx context.Context, log *slog.Logger, r *Rate, every time.Duration, extra func() []any) {
	t := time.NewTicker(every)
	defer t.Stop()
	r.Tick(time.Now())
	lastPoint, lastIdle := time.Now(), time.Now()
	for {
		select {
		case now := <-t.C:
			n, avg, el := r.Tick(now)
			var args []any
			if n == 0 {
				if now.Sub(lastIdle) < IdleLogEvery-every/2 { // ticks jitter
					continue
				}
				lastIdle = now
				args = []any{"idle_for", now.Sub(lastPoint).Round(time.Second)}
			} else {
				lastPoint, lastIdle = now, now
				args = []any{"interval", el.Round(time.Millisecond), "received", n, "rate", math.Round(avg*100) / 100}
			}
			if extra != nil {
				args = append(args, extra()...)
			}
			msg := "throughput"
			if n == 0 {
				msg = "idle: nothing received"
			}
			log.Info(msg, args...)
		case <-ctx.Done():
			return
		}
	}
}

// IdleLogEvery is how often LogRates says a daemon receives nothing.
const IdleLogEvery = time.Minute

// Metric is one self-metric: a name below the daemon's prefix and a value
// already formatted.
type Metric struct {
	Name  string
	Value string
}

// Int formats an integer metric.
func Int(name string, v uint64) Metric { return Metric{name, strconv.FormatUint(v, 10)} }

// Float formats a float metric with two decimals, as the original did.
func Float(name string, v float64) Metric { return Metric{name, strconv.FormatFloat(v, 'f', 2, 64)} }

// Sanitize makes s one Graphite path element: dots, colons, spaces and
// slashes become underscores.
func Sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', ':', ' ', '/', '[', ']', ';', '=':
			return '_'
		}
		return r
	}, s)
}

// Prefix is "<host>.<name>" with the host sanitised (a FQDN's dots would
// otherwise add levels to the tree).
func Prefix(name string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return Sanitize(host) + "." + name
}

// Flush sends gather()'s metrics as Graphite lines through send every
// interval until ctx ends. Metrics travel the daemon's own pipeline, so they
// are routed, queued and counted like any other line.
func Flush(ctx context.Context, log *slog.Logger, every time.Duration, prefix string, gather func() []Metric, send func(context.Context, *batch.Batch) error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			b := Lines(prefix, gather(), now)
			if err := send(ctx, b); err != nil {
				b.Release()
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// Lines renders metrics as a batch of Graphite lines stamped with now.
func Lines(prefix string, ms []Metric, now time.Time) *batch.Batch {
	b := batch.Get()
	ts := []byte(strconv.FormatInt(now.Unix(), 10))
	var name []byte
	for _, m := range ms {
		name = append(append(append(name[:0], prefix...), '.'), m.Name...)
		b.AppendParts(name, []byte(m.Value), ts)
	}
	return b
}

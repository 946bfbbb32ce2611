package statsd

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/polymur/polymur/batch"
)

// RouteLogger logs, at most once a second, where the first line of a batch
// goes (-d). Safe for concurrent use.
type RouteLogger struct {
	Route func(name string) []string
	Log   *slog.Logger
	last  atomic.Int64
}

// Wrap returns send, logging on the way.
func (r *RouteLogger) Wrap(send func(context.Context, *batch.Batch) error) func(context.Context, *batch.Batch) error {
	return func(ctx context.Context, b *batch.Batch) error {
		now := time.Now().UnixNano()
		if last := r.last.Load(); b.Len() > 0 && now-last >= int64(time.Second) && r.last.CompareAndSwap(last, now) {
			name := string(b.Name(0))
			r.Log.Info("route", "name", name, "backend", strings.Join(r.Route(name), ","), "batch_lines", b.Len())
		}
		return send(ctx, b)
	}
}

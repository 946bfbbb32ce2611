package listener

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/polymur/polymur/batch"
)

// rejectSample rate-limits the debug log of rejected lines (process-wide).
var rejectSample = rate.Sometimes{Interval: time.Second}

// onReject is a splitter's OnReject: the line goes to the reject log (when
// there is one) and, at -log-level debug, a sample of them to the log.
func onReject(rl *batch.RejectLog, log *slog.Logger, client string) func(batch.Reason, []byte) {
	debug := log.Enabled(context.Background(), slog.LevelDebug)
	if rl == nil && !debug {
		return nil
	}
	return func(r batch.Reason, line []byte) {
		if rl != nil {
			rl.Add(r.String(), client, line)
		}
		if debug {
			rejectSample.Do(func() {
				log.Debug("line rejected (a sample: at most one a second)", "reason", r.String(), "client", client, "line", string(line[:min(len(line), batch.RejectLineMax)]))
			})
		}
	}
}

package daemon

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// MemoryLimit sets the Go runtime's soft memory limit to limit bytes,
// derived from the bound a daemon's flag (from) puts on what it holds,
// unless GOMEMLIMIT is set in the environment. Without a limit the heap
// grows to about twice what is live before the collector runs, so a
// daemon holding its whole bound in a burst would take twice the bound.
func MemoryLimit(limit int64, from string, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(limit)
	log.Info("Go memory limit set from "+from, "limit_bytes", limit)
}

package dest

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// A replay logs its start, progress with a rate and an ETA every five
// seconds, and its end; a write-ahead spool only when far behind.
func TestReplayLog(t *testing.T) {
	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var r replayLog
	r.took(log, t0, 1000, 100000, 5<<20, false)
	r.took(log, t0.Add(time.Second), 9000, 90000, 4<<20, false)
	r.idle(log, t0.Add(2*time.Second), 90000) // not empty yet: nothing
	r.took(log, t0.Add(5*time.Second), 40000, 50000, 2<<20, false)
	r.took(log, t0.Add(6*time.Second), 10000, 40000, 1<<20, false) // within 5 s of the last line
	r.idle(log, t0.Add(9*time.Second), 0)
	r.idle(log, t0.Add(10*time.Second), 0) // already ended
	want := `level=INFO msg="spool replay started" lines=100000 bytes=5242880
level=INFO msg="spool replay progress" replayed=50000 left=50000 lines_per_second=10000 elapsed=5s eta=5s
level=INFO msg="spool replay finished" replayed=60000 took=9s
`
	if logs.String() != want {
		t.Fatalf("logs:\n%s\nwant:\n%s", logs.String(), want)
	}
	// Write-ahead: a spool one write behind is the normal path, not a replay.
	logs = testutil.SyncBuffer{}
	var w replayLog
	w.took(log, t0, 100, 100, readAhead, true)
	w.idle(log, t0, 0)
	if logs.String() != "" {
		t.Fatalf("write-ahead spool logged %q", logs.String())
	}
	w.took(log, t0, 100, 1e6, replayLogMin, true)
	if !strings.Contains(logs.String(), "spool replay started") {
		t.Fatalf("far-behind write-ahead spool: %q", logs.String())
	}
}

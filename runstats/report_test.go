package runstats

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// Every interval with points gets a throughput line with numbers as
// attributes; a quiet daemon gets an idle line a minute, never silence.
func TestLogRates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs testutil.SyncBuffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		var n atomic.Uint64
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			LogRates(ctx, log, &Rate{Count: n.Load}, 5*time.Second, func() []any { return []any{"queued", 0} })
			close(done)
		}()
		synctest.Wait() // started: its first reading is 0
		n.Add(500)
		time.Sleep(5*time.Second + time.Millisecond)
		synctest.Wait()
		time.Sleep(2*time.Minute + 5*time.Second) // quiet
		synctest.Wait()
		cancel()
		<-done
		want := "level=INFO msg=throughput interval=5s received=500 rate=100 queued=0\n" +
			"level=INFO msg=\"idle: nothing received\" idle_for=1m0s queued=0\n" +
			"level=INFO msg=\"idle: nothing received\" idle_for=2m0s queued=0\n"
		if got := logs.String(); got != want {
			t.Fatalf("logs:\n%s\nwant:\n%s", got, want)
		}
	})
}

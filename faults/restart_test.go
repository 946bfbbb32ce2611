package faults

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// Case 3: SIGTERM while one destination is down and the other is slow with
// its queue full. polymur drains what it can within -drain-timeout, spools
// the rest and exits 0; started again on the same spool it delivers the
// rest, each line on its carbon_ch node, none twice.
func TestSigtermWithFullQueuesThenRestart(t *testing.T) {
	up, down := testutil.NewSink(t), testutil.NewSink(t)
	up.SetDelay(20 * time.Millisecond)
	down.Stop()
	dests := []string{up.Addr() + ":a", down.Addr() + ":b"}
	spoolDir := t.TempDir()
	r := startPolymur(t, "-distribution", "hash-route", "-destinations", strings.Join(dests, ","),
		"-spool-dir", spoolDir, "-drain-timeout", "2s", "-outgoing-queue-cap", "4096")

	const n = 200_000
	var input bytes.Buffer
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("restart.host%03d.m%d", i%311, i)
		fmt.Fprintf(&input, "%s %d 1700000000\n", names[i], i)
	}
	testutil.SendTCP(t, r.listen, input.Bytes())
	testutil.WaitFor(t, "every line received", limit, func() bool { return r.stat("received") == n })
	stats := testutil.Ask(r.api, "stats")
	t.Logf("at SIGTERM: %d delivered, %d queued or in flight for the slow destination, %d spooled", up.Count(),
		testutil.JSONInt(stats, "queue_depth")+testutil.JSONInt(stats, "in_flight"), testutil.JSONInt(stats, "spooled"))
	if up.Count() >= n/2 {
		t.Fatalf("the slow destination already has %d lines: the case tests nothing", up.Count())
	}
	r.Stop(t) // exit 0 is checked
	if !strings.Contains(r.Logs.String(), "stopped") {
		t.Fatalf("no stop summary:\n%s", r.Logs)
	}
	atStop := up.Count()

	up.SetDelay(0)
	down.Start()
	r.start(t)
	want := testutil.Checksum(func() []string {
		out := make([]string, n)
		for i := range n {
			out[i] = fmt.Sprintf("%s %d 1700000000", names[i], i)
		}
		return out
	}()...)
	waitExact(t, "after the restart", n, want, up, down)
	t.Logf("%d lines delivered before the stop, the other %d after the restart from the spool", atStop, n-atStop)
	checkPlacement(t, names, dests, []*testutil.Sink{up, down})
	r.Stop(t)
}

package faults

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// outage is how long a destination stays down; POLYMUR_FAULT_OUTAGE shortens
// it for a quick local run.
func outage(t *testing.T) time.Duration {
	if s := os.Getenv("POLYMUR_FAULT_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("POLYMUR_FAULT_OUTAGE: %v", err)
		}
		return d
	}
	return 45 * time.Second
}

// Case 1: one of three destinations down for 45 s under steady load, then
// back: nothing lost, nothing doubled.
//   - hash-route without a spool: after -dead-after failed reconnects its
//     share is re-routed to the other two; it rejoins when back.
//   - hash-route with a spool: its share waits on disk and is replayed to it,
//     so every line still lands where carbon_ch puts it.
//   - broadcast with a spool: it gets every line, late.
func TestDestinationDownUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		spool      bool
	}{
		{"hash-route reroutes", "hash-route", false},
		{"hash-route spools and keeps its share", "hash-route", true},
		{"broadcast spools", "broadcast", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			placement := tc.mode == "hash-route" && tc.spool
			sinks := make([]*testutil.Sink, 3)
			var dests []string
			for i := range sinks {
				if placement {
					sinks[i] = testutil.NewSink(t)
				} else {
					sinks[i] = testutil.NewCountingSink(t)
				}
				dests = append(dests, fmt.Sprintf("%s:%c", sinks[i].Addr(), 'a'+i))
			}
			args := []string{"-distribution", tc.mode, "-destinations", strings.Join(dests, ",")}
			if tc.spool {
				args = append(args, "-spool-dir", t.TempDir())
			}
			r := startPolymur(t, args...)
			ld := startLoad(t, r.listen, "outage", 10_000, placement)
			testutil.WaitFor(t, "load flowing to every destination", limit, func() bool {
				return sinks[0].Count() > 0 && sinks[1].Count() > 0 && sinks[2].Count() > 0
			})
			down := sinks[1]
			down.StopGracefully(10 * time.Second)
			before := ld.Sent()
			time.Sleep(outage(t))
			during := ld.Sent() - before
			c0 := down.Count()
			down.Start()
			t.Logf("%s down for %v while %d lines were sent", dests[1], outage(t), during)
			testutil.WaitFor(t, "the destination to be back", limit, func() bool { return down.Count() > c0 })
			time.Sleep(2 * time.Second) // load keeps flowing after the return
			n, sum := ld.Stop(t)

			if tc.mode == "broadcast" {
				for i, s := range sinks {
					waitExact(t, dests[i], n, sum, s)
				}
			} else {
				waitExact(t, "the three destinations", n, sum, sinks...)
			}
			stats := testutil.Ask(r.api, "stats")
			t.Logf("sent %d lines; destination stats after the outage: retried %d, dropped %s", n,
				testutil.JSONInt(stats, "retried"), droppedOf(stats))
			if placement {
				checkPlacement(t, ld.names, dests, sinks)
			}
			if tc.spool && testutil.JSONInt(stats, "spooled") == 0 {
				t.Fatalf("nothing went through the spool:\n%s", stats)
			}
			if !tc.spool && testutil.JSONInt(stats, "retried") == 0 {
				t.Fatalf("nothing was re-routed:\n%s", stats)
			}
			r.Stop(t)
		})
	}
}

// droppedOf extracts the "dropped" object of a stats reply, for logs.
func droppedOf(stats string) string {
	const key = `"dropped": `
	i := strings.Index(stats, key)
	if i < 0 {
		return "{}"
	}
	j := strings.Index(stats[i:], "}")
	return strings.Join(strings.Fields(stats[i+len(key):i+j+1]), " ")
}

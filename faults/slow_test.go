package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// Case 2: one destination reads at a tenth of the input rate.
//   - with a spool (broadcast): its overflow waits on disk, so the other two
//     get every line while it is still behind; then it gets everything too.
//   - without a spool: backpressure — the input slows to what it takes,
//     nothing is dropped anywhere.
func TestSlowDestination(t *testing.T) {
	const rate = 30_000 // lines/s, ~40 bytes each
	for _, spool := range []bool{true, false} {
		t.Run(fmt.Sprintf("spool=%v", spool), func(t *testing.T) {
			t.Parallel()
			sinks := []*testutil.Sink{testutil.NewCountingSink(t), testutil.NewCountingSink(t), testutil.NewCountingSink(t)}
			slow := sinks[2]
			// 4 KiB per read every 34 ms ≈ 120 KB/s ≈ 10% of the input.
			slow.SetDelay(34 * time.Millisecond)
			var dests []string
			for _, s := range sinks {
				dests = append(dests, s.Addr())
			}
			args := []string{"-distribution", "broadcast", "-destinations", strings.Join(dests, ",")}
			if spool {
				args = append(args, "-spool-dir", t.TempDir())
			} else {
				// Small queues, so the backpressure reaches the sender
				// within the 10 s instead of being absorbed.
				args = append(args, "-incoming-queue-cap", "16", "-outgoing-queue-cap", "1024")
			}
			r := startPolymur(t, args...)
			ld := startLoad(t, r.listen, "slow", rate, false)
			time.Sleep(10 * time.Second)
			n, sum := ld.Stop(t)
			t.Logf("sent %d lines in 10 s (%d/s asked)", n, rate)
			if spool {
				waitExact(t, "fast destinations", n, sum, sinks[0])
				waitExact(t, "fast destinations", n, sum, sinks[1])
				behind := slow.Count()
				t.Logf("when the fast destinations had all %d lines the slow one had %d (%.0f%%)", n, behind, 100*float64(behind)/float64(n))
				if behind >= n {
					t.Fatalf("the slow destination was never behind (%d of %d): the case tests nothing", behind, n)
				}
			} else if n >= rate*10*9/10 {
				t.Fatalf("the sender wrote %d lines unhindered: no backpressure", n)
			}
			slow.SetDelay(0)
			for i, s := range sinks {
				waitExact(t, dests[i], n, sum, s)
			}
			stats := testutil.Ask(r.api, "stats")
			if d := droppedOf(stats); d != "{}" {
				t.Fatalf("dropped %s", d)
			}
			r.Stop(t)
		})
	}
}

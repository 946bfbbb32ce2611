package dest

import (
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
	"github.com/polymur/polymur/spool"
)

func TestSpoolKeepsAnOutageAndReplaysIt(t *testing.T) {
	for _, mode := range []Mode{Broadcast, HashRoute} {
		t.Run(mode.String(), func(t *testing.T) {
			up, down := testutil.NewSink(t), testutil.NewSink(t)
			ds := dests(t, up, down)
			down.Stop()
			var logs testutil.SyncBuffer
			h := startSet(t, Config{Mode: mode, Destinations: ds, QueueCap: 100, DeadAfter: 1,
				SpoolDir: t.TempDir(), SpoolReplayRate: 20000, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			ls := lines("spool", 5000)
			send(t, h.p, ls)
			settle(t, h.p)
			st := h.p.Stats()
			if st.Destinations[1].Spooled == 0 || len(st.Dropped) != 0 {
				t.Fatalf("nothing spooled or something dropped: %+v", st)
			}
			wantDown := 5000
			if mode == HashRoute {
				wantDown = 0
				for _, l := range ls {
					if h.p.Route(l[:strings.IndexByte(l, ' ')])[0] == ds[1].Name {
						wantDown++
					}
				}
				// A spooled destination keeps its ring share: nothing moved.
				if up.WaitCount(5000-wantDown, wait); up.Count() != 5000-wantDown {
					t.Fatalf("up node got %d, want exactly its share %d", up.Count(), 5000-wantDown)
				}
			}
			down.Start()
			if !down.WaitCount(wantDown, wait) {
				t.Fatalf("recovered node got %d of %d", down.Count(), wantDown)
			}
			// The replay's start and end are logged, with numbers as attributes.
			testutil.WaitFor(t, "replay finished log", wait, func() bool { return strings.Contains(logs.String(), "spool replay finished") })
			if !regexp.MustCompile(`msg="spool replay started" dest=\S+ lines=\d+ bytes=\d+`).MatchString(logs.String()) ||
				!regexp.MustCompile(`msg="spool replay finished" dest=\S+ replayed=\d+ took=\d`).MatchString(logs.String()) {
				t.Errorf("replay logs:\n%s", logs.String())
			}
			h.shutdown()
			if down.Count() != wantDown || down.Sum() != sumOf(ls, func(l string) bool {
				return mode == Broadcast || h.p.Route(l[:strings.IndexByte(l, ' ')])[0] == ds[1].Name
			}) {
				t.Fatalf("replay delivered %d lines (want %d) or wrong lines", down.Count(), wantDown)
			}
		})
	}
}

// settle waits until the distributor has placed everything sent so far.
func settle(t *testing.T, p *Set) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st := p.Stats()
		placed := uint64(0)
		for _, d := range st.Destinations {
			placed += uint64(d.QueueDepth) + uint64(d.InFlight) + d.Spooled + d.Sent + d.Dropped
		}
		if st.IncomingDepth == 0 && placed >= st.Received*uint64(len(st.Destinations)) && st.Distribution == "broadcast" ||
			st.IncomingDepth == 0 && placed >= st.Received && st.Distribution == "hash-route" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipeline did not settle: %+v", st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func sumOf(ls []string, keep func(string) bool) uint64 {
	var kept []string
	for _, l := range ls {
		if keep(l) {
			kept = append(kept, l)
		}
	}
	return testutil.Checksum(kept...)
}

func TestSpoolSurvivesRestart(t *testing.T) {
	s := testutil.NewSink(t)
	ds := dests(t, s)
	s.Stop()
	dir := t.TempDir()
	h := startSet(t, Config{Mode: Broadcast, Destinations: ds, SpoolDir: dir, DrainTimeout: time.Minute})
	ls := lines("restart", 3000)
	send(t, h.p, ls)
	start := time.Now()
	h.shutdown() // the destination is down: everything goes to disk, no waiting
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("shutdown waited %v for a down destination", took)
	}
	if d := h.p.Stats().Dropped; len(d) != 0 {
		t.Fatalf("dropped at shutdown: %v", d)
	}
	s.Start()
	h2 := startSet(t, Config{Mode: Broadcast, Destinations: ds, SpoolDir: dir})
	if !s.WaitCount(3000, wait) {
		t.Fatalf("after restart got %d of 3000", s.Count())
	}
	h2.shutdown()
	if s.Count() != 3000 || s.Sum() != testutil.Checksum(ls...) {
		t.Fatalf("got %d lines, checksum ok %v", s.Count(), s.Sum() == testutil.Checksum(ls...))
	}
}

func TestSpoolFullDropsAndCounts(t *testing.T) {
	s := testutil.NewSink(t)
	ds := dests(t, s)
	s.Stop()
	h := startSet(t, Config{Mode: Broadcast, Destinations: ds, QueueCap: 100, SpoolDir: t.TempDir(), SpoolMaxBytes: 20000})
	send(t, h.p, lines("full", 3000))
	settle(t, h.p)
	st := h.p.Stats()
	d := st.Destinations[0]
	kept := d.QueueDepth + int(d.InFlight) + int(d.Spooled)
	if st.Dropped[DropSpoolFull] == 0 || kept+int(st.Dropped[DropSpoolFull]) != 3000 {
		t.Fatalf("kept %d + dropped %v != 3000", kept, st.Dropped)
	}
}

func TestSpoolSlowDestinationDoesNotHoldOthersBack(t *testing.T) {
	fast, slow := testutil.NewCountingSink(t), testutil.NewCountingSink(t)
	slow.SetDelay(5 * time.Millisecond)
	h := startSet(t, Config{Mode: Broadcast, Destinations: dests(t, fast, slow), QueueCap: 200,
		SpoolDir: t.TempDir(), SpoolReplayRate: 1 << 30})
	n := 30000
	send(t, h.p, lines("slowspool", n))
	if !fast.WaitCount(n, wait) {
		t.Fatalf("fast destination got %d of %d", fast.Count(), n)
	}
	if slow.Count() >= n {
		t.Skip("the slow destination kept up; nothing to show")
	}
	if h.p.Stats().Destinations[1].Spooled == 0 {
		t.Fatal("slow destination's overflow not spooled")
	}
	if !slow.WaitCount(n, 2*wait) {
		t.Fatalf("slow destination got %d of %d", slow.Count(), n)
	}
	if d := h.p.Stats().Dropped; len(d) != 0 {
		t.Fatalf("dropped %v", d)
	}
}

// deldest of a destination whose spool holds points: in hash-route they go
// to the remaining ring, in broadcast they are counted as dest_removed; the
// spool's files are deleted once it is empty. Nothing is stranded.
func TestDelDestDrainsItsSpool(t *testing.T) {
	for _, mode := range []Mode{HashRoute, Broadcast} {
		t.Run(mode.String(), func(t *testing.T) {
			up, down := testutil.NewSink(t), testutil.NewSink(t)
			ds := dests(t, up, down)
			down.Stop()
			dir := t.TempDir()
			h := startSet(t, Config{Mode: mode, Destinations: ds, QueueCap: 100, SpoolDir: dir, SpoolReplayRate: 1 << 20})
			ls := lines("del", 5000)
			send(t, h.p, ls)
			settle(t, h.p)
			spooled := h.p.Stats().Destinations[1].Spooled
			if spooled == 0 {
				t.Fatal("nothing spooled for the down destination")
			}
			if err := h.p.DelDest(ds[1].Name); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, spool.FileName(ds[1].Name))); err == nil {
				testutil.WaitFor(t, "the removed destination's spool deleted", wait, func() bool {
					_, err := os.Stat(filepath.Join(dir, spool.FileName(ds[1].Name)))
					return os.IsNotExist(err)
				})
			}
			if mode == HashRoute {
				if !up.WaitCount(5000, wait) {
					t.Fatalf("remaining destination got %d of 5000", up.Count())
				}
				h.shutdown()
				if up.Count() != 5000 || up.Sum() != testutil.Checksum(ls...) {
					t.Fatalf("got %d lines, want each of the 5000 once", up.Count())
				}
				return
			}
			testutil.WaitFor(t, "removed points counted", wait, func() bool {
				st := h.p.Stats()
				return up.Count() == 5000 && st.Dropped[DropRemoved] == 5000
			})
			h.shutdown()
		})
	}
}

// A spool whose disk refuses writes: the drops say spool_write_error (not
// spool_full), and the failures are logged a few times, not per batch.
func TestSpoolWriteErrorsAreNamed(t *testing.T) {
	s := testutil.NewSink(t)
	ds := dests(t, s)
	s.Stop()
	dir := t.TempDir()
	var logs testutil.SyncBuffer
	h := startSet(t, Config{Mode: Broadcast, Destinations: ds, QueueCap: 100, DeadAfter: 1, SpoolDir: dir,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	testutil.WaitFor(t, "declared down", wait, func() bool { return h.p.Stats().Destinations[0].State != "up" })
	// The destination's spool directory loses its write segment: every
	// write fails from now on, as on a broken disk.
	sp := h.p.view.Load().dests[0].sp
	sp.BreakForTest()
	send(t, h.p, lines("werr", 3000))
	settle(t, h.p)
	st := h.p.Stats()
	if st.Dropped[DropSpoolError] == 0 || st.Dropped[DropSpoolFull] != 0 {
		t.Fatalf("drops %v: want spool_write_error only", st.Dropped)
	}
	if n := strings.Count(logs.String(), "spool write failed"); n < 1 || n > 2 {
		t.Fatalf("%d 'spool write failed' log lines for %d failures", n, st.Destinations[0].SpoolErrors)
	}
	h.shutdown()
}

// Write-ahead (-spool-mode always): every line goes through the spool,
// delivery from it is exact, and a stop leaves nothing undelivered when the
// destination is up.
func TestSpoolAlwaysDeliversThroughTheSpool(t *testing.T) {
	for _, mode := range []Mode{Broadcast, HashRoute} {
		t.Run(mode.String(), func(t *testing.T) {
			a, b := testutil.NewSink(t), testutil.NewSink(t)
			ds := dests(t, a, b)
			h := startSet(t, Config{Mode: mode, Destinations: ds, SpoolDir: t.TempDir(), SpoolAlways: true, SpoolFsync: -1})
			ls := lines("wal", 20000)
			send(t, h.p, ls) // returns once every batch is on disk
			st := h.p.Stats()
			spooled := st.Destinations[0].Spooled + st.Destinations[1].Spooled
			want := uint64(20000)
			if mode == Broadcast {
				want = 40000
			}
			if st.Received != 20000 || spooled != want {
				t.Fatalf("received %d, spooled %d (want %d): not write-ahead", st.Received, spooled, want)
			}
			total := 20000
			if mode == Broadcast {
				total = 40000
			}
			if !testutil.WaitTotal(total, wait, a, b) {
				t.Fatalf("delivered %d of %d", a.Count()+b.Count(), total)
			}
			h.shutdown()
			if mode == Broadcast && (a.Sum() != testutil.Checksum(ls...) || b.Sum() != a.Sum()) {
				t.Fatal("broadcast: wrong lines")
			}
			if mode == HashRoute && a.Count()+b.Count() != 20000 {
				t.Fatalf("hash-route delivered %d", a.Count()+b.Count())
			}
		})
	}
}

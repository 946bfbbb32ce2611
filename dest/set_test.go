package dest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/internal/testutil"
)

const wait = 30 * time.Second // only keeps a broken test from hanging

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type harness struct {
	t    *testing.T
	p    *Set
	stop context.CancelFunc
	done chan struct{}
}

func startSet(t *testing.T, cfg Config) *harness {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.ReconnectMin == 0 {
		cfg.ReconnectMin = 10 * time.Millisecond
		cfg.ReconnectMax = 50 * time.Millisecond
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, p: p, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		p.Run(ctx)
	}()
	t.Cleanup(h.shutdown)
	return h
}

// shutdown stops the pool the way a daemon does: cancel, close input, wait.
func (h *harness) shutdown() {
	h.stop()
	h.p.CloseInput()
	select {
	case <-h.done:
	case <-time.After(wait):
		h.t.Fatal("pool did not stop")
	}
}

func dests(t *testing.T, sinks ...*testutil.Sink) []Destination {
	var specs []string
	for i, s := range sinks {
		specs = append(specs, fmt.Sprintf("%s:%c", s.Addr(), 'a'+i))
	}
	ds, err := ParseDestinations(strings.Join(specs, ","))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func lines(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s.metric%d %d 1700000000", prefix, i, i)
	}
	return out
}

// send hands lines to the pool in batches of 100.
func send(t *testing.T, p *Set, ls []string) {
	t.Helper()
	for i := 0; i < len(ls); i += 100 {
		b := batch.Get()
		for _, l := range ls[i:min(i+100, len(ls))] {
			b.Append([]byte(l+"\n"), strings.IndexByte(l, ' '))
		}
		if err := p.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
}

func waitState(t *testing.T, p *Set, name, state string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		for _, d := range p.Stats().Destinations {
			if d.Name == name && d.State == state {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never reached state %s: %+v", name, state, p.Stats().Destinations)
}

func TestBroadcastDeliversEverythingInOrder(t *testing.T) {
	a, b := testutil.NewSink(t), testutil.NewSink(t)
	h := startSet(t, Config{Mode: Broadcast, Destinations: dests(t, a, b)})
	want := lines("bc", 20000)
	send(t, h.p, want)
	for _, s := range []*testutil.Sink{a, b} {
		if !s.WaitCount(len(want), wait) {
			t.Fatalf("sink got %d of %d", s.Count(), len(want))
		}
		if got := s.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatal("lines differ or out of order")
		}
	}
	h.shutdown()
	if s := h.p.Stats(); s.Sent != 2*uint64(len(want)) || len(s.Dropped) != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestHashRoutePlacesEachLineOnItsRingNode(t *testing.T) {
	sinks := []*testutil.Sink{testutil.NewSink(t), testutil.NewSink(t), testutil.NewSink(t)}
	h := startSet(t, Config{Mode: HashRoute, Destinations: dests(t, sinks...)})
	want := lines("hr", 6000)
	send(t, h.p, want)
	h.shutdown()
	byDest := map[string]*testutil.Sink{}
	for i, s := range sinks {
		byDest[h.p.view.Load().dests[i].Name] = s
	}
	total := 0
	for name, s := range byDest {
		got := s.Lines()
		total += len(got)
		for _, l := range got {
			metric := l[:strings.IndexByte(l, ' ')]
			if r := h.p.Route(metric); r[0] != name {
				t.Fatalf("%s arrived at %s, ring says %s", metric, name, r[0])
			}
		}
		if len(got) == 0 {
			t.Fatalf("%s got nothing", name)
		}
	}
	if total != len(want) {
		t.Fatalf("delivered %d of %d", total, len(want))
	}
}

func TestOutageKeepsQueuedPoints(t *testing.T) {
	for _, mode := range []Mode{Broadcast, HashRoute} {
		t.Run(mode.String(), func(t *testing.T) {
			s := testutil.NewSink(t)
			h := startSet(t, Config{Mode: mode, Destinations: dests(t, s), DeadAfter: 1000})
			name := h.p.view.Load().dests[0].Name
			send(t, h.p, lines("before", 10))
			s.WaitCount(10, wait)
			s.Stop()
			waitState(t, h.p, name, "connecting")
			send(t, h.p, lines("during", 500))
			s.Start()
			if !s.WaitCount(510, wait) {
				t.Fatalf("got %d of 510 after the outage", s.Count())
			}
			if d := h.p.Stats().Dropped; len(d) != 0 {
				t.Fatalf("dropped %v", d)
			}
		})
	}
}

// TestFirstWriteAfterPeerCloseIsNotLost: the peer closes while the writer is
// idle; the next line must not vanish into the dead socket.
func TestFirstWriteAfterPeerCloseIsNotLost(t *testing.T) {
	s := testutil.NewSink(t)
	h := startSet(t, Config{Mode: Broadcast, Destinations: dests(t, s)})
	send(t, h.p, lines("warm", 1))
	s.WaitCount(1, wait)
	for i := range 20 {
		s.Stop() // closes the connection; no waiting for the pool to notice
		send(t, h.p, []string{fmt.Sprintf("after.close%d 1 1700000000", i)})
		s.Start()
		if !s.WaitCount(2+i, wait) {
			t.Fatalf("round %d: line written after the peer closed was lost (%d lines)", i, s.Count())
		}
	}
}

func TestBroadcastDownDestinationDropsAndCounts(t *testing.T) {
	up, down := testutil.NewSink(t), testutil.NewSink(t)
	ds := dests(t, up, down)
	down.Stop()
	h := startSet(t, Config{Mode: Broadcast, Destinations: ds, QueueCap: 200})
	send(t, h.p, lines("x", 1000))
	if !up.WaitCount(1000, wait) {
		t.Fatalf("healthy destination got %d of 1000", up.Count())
	}
	st := h.p.Stats()
	kept := st.Destinations[1].QueueDepth + int(st.Destinations[1].InFlight)
	if dropped := int(st.Dropped[DropDestDown]); dropped+kept != 1000 || dropped == 0 {
		t.Fatalf("down destination: dropped %d + kept %d != 1000 (%+v)", dropped, kept, st)
	}
	down.Start()
	if !down.WaitCount(kept, wait) {
		t.Fatalf("kept points not delivered after recovery: %d of %d", down.Count(), kept)
	}
}

func TestHashRouteDeadDestinationIsReroutedAndRejoins(t *testing.T) {
	sinks := []*testutil.Sink{testutil.NewSink(t), testutil.NewSink(t), testutil.NewSink(t)}
	h := startSet(t, Config{Mode: HashRoute, Destinations: dests(t, sinks...), DeadAfter: 3})
	deadName := h.p.view.Load().dests[1].Name
	sinks[1].Stop()
	waitState(t, h.p, deadName, "connecting")
	// Points for the down node queue up, then move to the others once it is
	// declared dead; none are lost.
	first := lines("outage", 3000)
	send(t, h.p, first)
	waitState(t, h.p, deadName, "dead")
	total := func() int { return sinks[0].Count() + sinks[1].Count() + sinks[2].Count() }
	deadline := time.Now().Add(wait)
	for total() < len(first) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if total() != len(first) {
		t.Fatalf("delivered %d of %d while a node was dead", total(), len(first))
	}
	if h.p.Stats().Retried == 0 {
		t.Fatal("nothing went through the retry queue")
	}
	for _, name := range h.p.Route("outage.metric1") {
		if name == deadName {
			t.Fatal("dead node still routed")
		}
	}
	// Back: it rejoins the ring and gets its share again.
	sinks[1].Start()
	waitState(t, h.p, deadName, "up")
	before := sinks[1].Count()
	second := lines("back", 3000)
	send(t, h.p, second)
	h.shutdown()
	if total() != len(first)+len(second) || sinks[1].Count() == before {
		t.Fatalf("after rejoin: total %d, rejoined node got %d", total(), sinks[1].Count()-before)
	}
	if d := h.p.Stats().Dropped; len(d) != 0 {
		t.Fatalf("dropped %v", d)
	}
}

func TestSlowDestinationGetsBackpressureNotDrops(t *testing.T) {
	fast, slow := testutil.NewCountingSink(t), testutil.NewCountingSink(t)
	slow.SetDelay(2 * time.Millisecond)
	h := startSet(t, Config{Mode: Broadcast, Destinations: dests(t, fast, slow), QueueCap: 100, IncomingCap: 2})
	n := 20000
	send(t, h.p, lines("slow", n)) // blocks as needed
	for _, s := range []*testutil.Sink{fast, slow} {
		if !s.WaitCount(n, wait) {
			t.Fatalf("got %d of %d", s.Count(), n)
		}
	}
	if d := h.p.Stats().Dropped; len(d) != 0 {
		t.Fatalf("dropped %v", d)
	}
}

func TestShutdownDrainsAndCountsTheUndeliverable(t *testing.T) {
	up, down := testutil.NewSink(t), testutil.NewSink(t)
	ds := dests(t, up, down)
	down.Stop()
	h := startSet(t, Config{Mode: Broadcast, Destinations: ds, DrainTimeout: 300 * time.Millisecond})
	send(t, h.p, lines("drain", 1000))
	h.shutdown()
	if up.Count() != 1000 {
		t.Fatalf("reachable destination got %d of 1000 by shutdown", up.Count())
	}
	if st := h.p.Stats(); st.Dropped[DropShutdown] != 1000 {
		t.Fatalf("undeliverable points not counted: %+v", st.Dropped)
	}
}

func TestPutDelDest(t *testing.T) {
	a, b := testutil.NewSink(t), testutil.NewSink(t)
	h := startSet(t, Config{Mode: HashRoute, Destinations: dests(t, a)})
	p := h.p
	for _, bad := range []string{"garbage", "h:0", a.Addr() + ":a", "[::1"} {
		if err := p.PutDest(bad); err == nil {
			t.Errorf("PutDest(%q) accepted", bad)
		}
	}
	if err := p.PutDest(b.Addr() + ":b"); err != nil {
		t.Fatal(err)
	}
	if got := len(p.Destinations().Registered); got != 2 {
		t.Fatalf("registered %d", got)
	}
	waitState(t, p, b.Addr()+":b", "up")
	send(t, p, lines("pd", 1000))
	a.WaitCount(1, wait)
	if err := p.DelDest("127.0.0.1:1"); err == nil {
		t.Error("DelDest of unknown accepted")
	}
	if err := p.DelDest(b.Addr() + ":b"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"x", "y", "z"} {
		if r := p.Route(m); len(r) != 1 || r[0] != a.Addr()+":a" {
			t.Fatalf("route after deldest: %v", r)
		}
	}
	h.shutdown()
	if a.Count()+b.Count() != 1000 {
		t.Fatalf("delivered %d of 1000 across a deldest", a.Count()+b.Count())
	}
}

func TestNoDestinationsCountsDrops(t *testing.T) {
	h := startSet(t, Config{Mode: Broadcast})
	send(t, h.p, lines("none", 10))
	h.shutdown()
	if d := h.p.Stats().Dropped[DropNoDestination]; d != 10 {
		t.Fatalf("dropped %d, want 10", d)
	}
}

func TestConsoleOut(t *testing.T) {
	var mu sync.Mutex
	var out strings.Builder
	w := writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(b) })
	h := startSet(t, Config{Mode: Broadcast, Console: w})
	for i := range 5 { // several partial batches: the original stopped after the first
		send(t, h.p, lines(fmt.Sprint("c", i), 3))
	}
	h.shutdown()
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(out.String(), "\n"); n != 15 {
		t.Fatalf("console printed %d lines, want 15", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestStartStopLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 3 {
		s := testutil.NewSink(t)
		h := startSet(t, Config{Mode: HashRoute, Destinations: dests(t, s)})
		send(t, h.p, lines("leak", 100))
		s.WaitCount(100, wait)
		h.shutdown()
		s.Stop()
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// BenchmarkWritePath measures Send → distribution → writer → loopback socket
// with a discarding reader on the other side.
func BenchmarkWritePath(b *testing.B) {
	for _, mode := range []Mode{Broadcast, HashRoute} {
		b.Run(mode.String(), func(b *testing.B) {
			var specs []string
			for i := range 3 {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						go io.Copy(io.Discard, c)
					}
				}()
				specs = append(specs, fmt.Sprintf("%s:%d", ln.Addr(), i))
			}
			ds, _ := ParseDestinations(strings.Join(specs, ","))
			p, _ := New(Config{Mode: mode, Destinations: ds, Logger: quiet, IncomingCap: 64})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { p.Run(ctx); close(done) }()
			src := batch.Get()
			for i := range 100 {
				l := fmt.Sprintf("servers.host%d.cpu.user 12.5 1700000000\n", i)
				src.Append([]byte(l), strings.IndexByte(l, ' '))
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(src.Buf)))
			for b.Loop() {
				c := batch.Get()
				c.Buf = append(c.Buf, src.Buf...)
				c.Lines = append(c.Lines, src.Lines...)
				p.Send(ctx, c)
			}
			cancel()
			p.CloseInput()
			<-done
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// TestIncomingBytesBound: Send blocks (backpressure) once the batches in
// the incoming queue hold IncomingBytes, and goes on when the distributor
// takes one.
func TestIncomingBytesBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mk := func() *batch.Batch {
			b := batch.Get()
			b.Append([]byte("a.b 1 2\n"), 3)
			return b
		}
		one := mk().Footprint()
		p, err := New(Config{Mode: Broadcast, Logger: quiet, IncomingBytes: 2 * one})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := p.Send(t.Context(), mk()); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { done <- p.Send(t.Context(), mk()) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("a third batch beyond the budget was taken (err %v)", err)
		default:
		}
		if got := p.Stats().IncomingBytes; got != 2*one {
			t.Fatalf("incoming bytes %d, want %d", got, 2*one)
		}
		p.taken(<-p.in).Release()
		synctest.Wait()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for len(p.in) > 0 {
			p.taken(<-p.in).Release()
		}
		if got := p.Stats().IncomingBytes; got != 0 {
			t.Fatalf("incoming bytes %d after the queue emptied", got)
		}
	})
}

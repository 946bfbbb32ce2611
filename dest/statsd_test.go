package dest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polymur/polymur/batch"
)

// udpSink counts statsd lines arriving on a loopback UDP port.
type udpSink struct {
	conn      *net.UDPConn
	mu        sync.Mutex
	lines     map[string]int
	datagrams int
	maxSize   int
}

func newUDPSink(t *testing.T) *udpSink {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &udpSink{conn: c, lines: map[string]int{}}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.datagrams++
			s.maxSize = max(s.maxSize, n)
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				s.lines[l]++
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *udpSink) addr() string { return s.conn.LocalAddr().String() }

func (s *udpSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.lines {
		n += c
	}
	return n
}

func statsdBatch(names ...string) *batch.Batch {
	b := batch.Get()
	for _, n := range names {
		b.Append([]byte(n+":1|c\n"), len(n))
	}
	return b
}

func TestDatagramsPackLinesUpToTheLimit(t *testing.T) {
	s := newUDPSink(t)
	var st DatagramStats
	ds, _ := ParseDestinations(s.addr())
	h := startSet(t, Config{Mode: Broadcast, Destinations: ds, Dial: DatagramDial(512, &st)})
	var names []string
	for i := range 1000 {
		names = append(names, fmt.Sprintf("app.requests.endpoint%04d", i))
	}
	for i := 0; i < len(names); i += 100 {
		h.p.Send(context.Background(), statsdBatch(names[i:i+100]...))
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.count() < 1000 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if s.lines[n+":1|c"] != 1 {
			t.Fatalf("%s arrived %d times", n, s.lines[n+":1|c"])
		}
	}
	if s.maxSize > 512 {
		t.Fatalf("a datagram of %d bytes, limit 512", s.maxSize)
	}
	// 1000 lines of 32 bytes: 15 per 512-byte datagram, not one per line.
	if s.datagrams > 1000/15+20 || int(st.Datagrams.Load()) != s.datagrams || st.Lines.Load() != 1000 {
		t.Fatalf("%d datagrams (stats %d, %d lines) for 1000 lines", s.datagrams, st.Datagrams.Load(), st.Lines.Load())
	}
}

// A statsd ring keyed on host:port: removing one of N backends moves only
// the names it owned (~1/N), adding one takes ~1/(N+1) from the others.
func TestRingByAddrMovesOnlyTheChangedShare(t *testing.T) {
	const n = 5
	var specs []string
	for i := range n + 1 {
		specs = append(specs, fmt.Sprintf("127.0.0.1:%d", 8125+2*i))
	}
	mk := func(k int) *Set {
		ds, err := ParseDestinations(strings.Join(specs[:k], ","))
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(Config{Mode: HashRoute, Destinations: ds, RingByAddr: true, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	five, six := mk(n), mk(n+1)
	const names = 20000
	moved, owned := 0, 0
	for i := range names {
		name := fmt.Sprintf("svc%d.requests.count", i)
		a, b := five.Route(name)[0], six.Route(name)[0]
		if a != b {
			moved++
			if b != specs[n] {
				t.Fatalf("%s moved from %s to %s, not to the new backend", name, a, b)
			}
		}
		if a == specs[0] {
			owned++
		}
	}
	frac := float64(moved) / names
	t.Logf("adding a 6th backend moved %.1f%% of names (ideal %.1f%%); backend 1 of 5 owned %.1f%%", 100*frac, 100.0/(n+1), 100*float64(owned)/names)
	if frac < 0.5/(n+1) || frac > 2.0/(n+1) {
		t.Fatalf("%.3f of names moved, want about %.3f", frac, 1.0/(n+1))
	}
	// Same backends, no instances: the ring key is host:port, so one host
	// with several statsd ports is fine.
	if _, err := New(Config{Mode: HashRoute, Destinations: five.cfg.Destinations, RingByAddr: true}); err != nil {
		t.Fatal(err)
	}
}

func TestHoldTakesABackendOutAndBack(t *testing.T) {
	a, b := newUDPSink(t), newUDPSink(t)
	var st DatagramStats
	ds, _ := ParseDestinations(a.addr() + "," + b.addr())
	h := startSet(t, Config{Mode: HashRoute, Destinations: ds, RingByAddr: true, Dial: DatagramDial(1432, &st)})
	var names []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("hold.m%d", i))
	}
	onB := 0
	for _, n := range names {
		if h.p.Route(n)[0] == b.addr() {
			onB++
		}
	}
	if err := h.p.Hold(b.addr(), "health check failed"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for h.p.Route(names[0])[0] == b.addr() || len(h.p.Route("x")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("held backend still routed to")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, n := range names {
		if r := h.p.Route(n); r[0] != a.addr() {
			t.Fatalf("%s routed to %v while %s is held", n, r, b.addr())
		}
	}
	h.p.Send(context.Background(), statsdBatch(names...))
	for a.count() < 300 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if a.count() != 300 || b.count() != 0 {
		t.Fatalf("while held: a %d, b %d of 300", a.count(), b.count())
	}
	if err := h.p.Unhold(b.addr()); err != nil {
		t.Fatal(err)
	}
	for h.p.Stats().Destinations[1].State != "up" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	back := 0
	for _, n := range names {
		if h.p.Route(n)[0] == b.addr() {
			back++
		}
	}
	if back != onB {
		t.Fatalf("after Unhold %d names route to b, before Hold %d", back, onB)
	}
	if err := h.p.Hold("127.0.0.1:1", "x"); err == nil {
		t.Fatal("Hold of an unknown destination accepted")
	}
}

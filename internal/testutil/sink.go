// Package testutil holds test-only helpers: a Graphite TCP sink on
// 127.0.0.1:0 that records or counts what arrives, and a real Consul agent
// starter. Only tests import it.
package testutil

import (
	"bufio"
	"hash/fnv"
	"net"
	"sync"
	"testing"
	"time"
)

// Sink is a Graphite destination on loopback. It records lines (or only
// counts and checksums them when Keep is false), can be stopped and started
// again on the same address to simulate an outage, and can read slowly.
type Sink struct {
	t    testing.TB
	addr string
	keep bool

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	lines   []string
	count   int
	sum     uint64
	changed chan struct{}
	delay   time.Duration // per read, to simulate a slow destination
	wg      sync.WaitGroup
}

// NewSink starts a sink that keeps every line.
func NewSink(t testing.TB) *Sink { return newSink(t, true) }

// NewCountingSink starts a sink that only counts and checksums lines.
func NewCountingSink(t testing.TB) *Sink { return newSink(t, false) }

// NewSinkAt starts a keeping sink on addr (a loopback address and port).
func NewSinkAt(t testing.TB, addr string) *Sink { return newSinkAt(t, addr, true) }

func newSink(t testing.TB, keep bool) *Sink { return newSinkAt(t, "127.0.0.1:0", keep) }

func newSinkAt(t testing.TB, addr string, keep bool) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		reserve(ln.Addr().String()) // Stop and Start again: FreeAddr must not hand it out meanwhile
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{t: t, addr: ln.Addr().String(), keep: keep, conns: map[net.Conn]struct{}{}, changed: make(chan struct{})}
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// Addr is the sink's host:port.
func (s *Sink) Addr() string { return s.addr }

// SetDelay makes every read of the sink sleep d first (a slow destination);
// connections accepted while it is set also get a small receive buffer.
func (s *Sink) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

func (s *Sink) serve(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.ln != ln {
				// Stopped between Accept and here: Stop has closed the
				// connections it knew, so this one is closed here (else
				// its reader would keep Stop waiting on a relay that
				// holds it open).
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			if tc, ok := c.(*net.TCPConn); ok && s.delay > 0 {
				tc.SetReadBuffer(32 << 10) // slow: little room in the kernel either
			}
			s.mu.Unlock()
			s.wg.Go(func() { s.read(c) })
		}
	})
}

func (s *Sink) read(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReaderSize(&slowReader{s: s, c: c}, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return // a partial last line is discarded, as carbon does
		}
		h := fnv.New64a()
		h.Write(line)
		s.mu.Lock()
		s.count++
		s.sum += h.Sum64()
		if s.keep {
			s.lines = append(s.lines, string(line[:len(line)-1]))
		}
		if r.Buffered() == 0 || s.count%1024 == 0 {
			close(s.changed)
			s.changed = make(chan struct{})
		}
		s.mu.Unlock()
	}
}

type slowReader struct {
	s *Sink
	c net.Conn
}

func (r *slowReader) Read(p []byte) (int, error) {
	r.s.mu.Lock()
	d := r.s.delay
	r.s.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
		if len(p) > 4096 {
			p = p[:4096]
		}
	}
	return r.c.Read(p)
}

// Stop closes the listener and every connection (a destination outage).
func (s *Sink) Stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// StopGracefully is an outage without data in flight lost by the sink
// itself: it stops accepting, half-closes every connection so the relay sees
// the peer go, and reads on until the relay hangs up (at most limit, then
// Stop). What a relay wrote before it noticed is therefore counted, and an
// exact sent == received check measures the relay alone.
func (s *Sink) StopGracefully(limit time.Duration) {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		s.Stop()
	}
}

// Start listens again on the same address after Stop.
func (s *Sink) Start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly after Stop
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("sink restart on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// Count returns the number of complete lines received.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Sum returns the order-independent checksum of received lines.
func (s *Sink) Sum() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum
}

// Lines returns a copy of the received lines (Keep sinks only).
func (s *Sink) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// WaitCount waits until at least n lines have arrived. limit only keeps a
// broken test from hanging; it asserts nothing about speed.
func (s *Sink) WaitCount(n int, limit time.Duration) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, ch := s.count, s.changed
		s.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// Checksum returns the checksum Sum would have for lines (each without '\n').
func Checksum(lines ...string) uint64 {
	var sum uint64
	for _, l := range lines {
		h := fnv.New64a()
		h.Write([]byte(l + "\n"))
		sum += h.Sum64()
	}
	return sum
}

package dest

import (
	"context"
	"sync"
)

// byteGate bounds the bytes of batches in the incoming queue. Once a
// batch would go past the bound the gate closes, and opens again only when
// the queue has drained to half of it: the blocked readers are woken
// together, once per half a bound, instead of one per batch taken.
type byteGate struct {
	mu     sync.Mutex
	used   int64
	max    int64
	closed bool
	open   chan struct{} // closed when the gate opens; made anew when it closes
}

func newByteGate(max int64) *byteGate { return &byteGate{max: max, open: make(chan struct{})} }

// acquire takes n bytes (at most the bound: a huge batch waits for an
// empty queue), blocking while the gate is closed.
func (g *byteGate) acquire(ctx context.Context, n int64) (int64, error) {
	n = min(n, g.max)
	for {
		g.mu.Lock()
		if g.used == 0 || !g.closed && g.used+n <= g.max {
			g.used += n
			g.mu.Unlock()
			return n, nil
		}
		if !g.closed {
			g.closed = true
			g.open = make(chan struct{})
		}
		wait := g.open
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// release gives n bytes back.
func (g *byteGate) release(n int64) {
	g.mu.Lock()
	g.used -= n
	if g.closed && g.used <= g.max/2 {
		g.closed = false
		close(g.open)
	}
	g.mu.Unlock()
}

// held is the bytes in use.
func (g *byteGate) held() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}

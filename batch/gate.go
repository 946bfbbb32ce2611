package batch

import (
	"context"
	"sync"
)

// Gate bounds the bytes of batches held in a queue: Acquire blocks while
// the bound is spent, and the gate opens again only at half (hysteresis,
// so that a full queue does not wake its producers for every batch taken).
// A batch larger than the whole bound takes the bound and waits for an
// empty queue.
type Gate struct {
	mu     sync.Mutex
	used   int64
	max    int64
	closed bool
	open   chan struct{} // closed when the gate opens; made anew when it closes
}

// NewGate bounds at max bytes.
func NewGate(max int64) *Gate { return &Gate{max: max, open: make(chan struct{})} }

// TryAcquire takes n bytes if the gate is open and they fit; it returns
// what it took (at most the bound) and whether it did.
func (g *Gate) TryAcquire(n int64) (int64, bool) {
	n = min(n, g.max)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.used == 0 || !g.closed && g.used+n <= g.max {
		g.used += n
		return n, true
	}
	if !g.closed {
		g.closed = true
		g.open = make(chan struct{})
	}
	return 0, false
}

// Opened is closed when a closed gate opens again (already closed for an
// open one).
func (g *Gate) Opened() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		return closed
	}
	return g.open
}

// Acquire takes n bytes, blocking while the gate is closed; it returns what
// it took.
func (g *Gate) Acquire(ctx context.Context, n int64) (int64, error) {
	for {
		if w, ok := g.TryAcquire(n); ok {
			return w, nil
		}
		select {
		case <-g.Opened():
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Release gives back what an Acquire took.
func (g *Gate) Release(n int64) {
	g.mu.Lock()
	g.used -= n
	if g.closed && g.used <= g.max/2 {
		g.closed = false
		close(g.open)
	}
	g.mu.Unlock()
}

// Held is the bytes in use.
func (g *Gate) Held() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}

// Max is the bound.
func (g *Gate) Max() int64 { return g.max }

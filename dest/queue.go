package dest

import (
	"context"
	"sync"
	"time"

	"github.com/polymur/polymur/batch"
)

// queue is a destination's bounded FIFO of batches, bounded in points (lines).
// A batch is admitted while the queue holds fewer than capacity points, so
// the bound is exceeded by at most one batch; an empty queue always admits.
// Safe for concurrent use by many producers and one consumer.
type queue struct {
	mu     sync.Mutex
	items  []*batch.Batch
	points int
	cap    int
	closed bool
	space  chan struct{} // closed and replaced whenever points drop, if handed out
	waited bool          // space was handed out since it was made
	ready  chan struct{} // 1-slot: something was added (or the queue closed)
}

func newQueue(capacity int) *queue {
	return &queue{cap: capacity, space: make(chan struct{}), ready: make(chan struct{}, 1)}
}

func (q *queue) kickReady() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// tryPush adds b if there is room. It returns false when full or closed.
func (q *queue) tryPush(b *batch.Batch) bool { return q.add(b, true) }

// pushAnyway adds b past the bound unless the queue is closed: a router
// that placed b on a destination being removed hands it to the writer that
// delivers what the destination holds (at most one batch per router).
func (q *queue) pushAnyway(b *batch.Batch) bool { return q.add(b, false) }

func (q *queue) add(b *batch.Batch, bounded bool) bool {
	q.mu.Lock()
	if q.closed || bounded && q.points >= q.cap && q.points > 0 {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, b)
	q.points += b.Len()
	q.mu.Unlock()
	q.kickReady()
	return true
}

// pushFront puts batches back at the head (a failed write keeps its order).
func (q *queue) pushFront(bs []*batch.Batch) {
	if len(bs) == 0 {
		return
	}
	q.mu.Lock()
	n := 0
	for _, b := range bs {
		n += b.Len()
	}
	q.items = append(append(make([]*batch.Batch, 0, len(bs)+len(q.items)), bs...), q.items...)
	q.points += n
	q.mu.Unlock()
	q.kickReady()
}

// spaceChan returns a channel that is closed the next time room may appear.
func (q *queue) spaceChan() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waited = true
	return q.space
}

// push blocks until b is admitted (true), or until ctx ends or giveUp is
// closed or reports true when re-checked (false). Policy: block — this is
// the backpressure path for healthy destinations.
func (q *queue) push(ctx context.Context, b *batch.Batch, giveUp func() bool, recheck <-chan time.Time) bool {
	if q.tryPush(b) {
		return true
	}
	for {
		wait := q.spaceChan() // taken before the retry: no wake-up is missed
		if q.tryPush(b) {
			return true
		}
		if q.isClosed() || giveUp() {
			return false
		}
		select {
		case <-wait:
		case <-recheck:
		case <-ctx.Done():
			return false
		}
	}
}

func (q *queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// popAll removes and returns every queued batch (nil when empty).
func (q *queue) popAll(into []*batch.Batch) []*batch.Batch {
	q.mu.Lock()
	if len(q.items) == 0 {
		q.mu.Unlock()
		return into
	}
	into = append(into, q.items...)
	clear(q.items)
	q.items = q.items[:0]
	q.points = 0
	q.freed()
	q.mu.Unlock()
	return into
}

// close marks the queue closed: pushes fail, queued items stay poppable.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.kickReady()
	q.mu.Lock()
	q.freed()
	q.mu.Unlock()
}

// freed wakes the pushers waiting for room (q.mu held); with none, the
// channel stays (no channel made per pop on the fast path).
func (q *queue) freed() {
	if q.waited {
		close(q.space)
		q.space = make(chan struct{})
		q.waited = false
	}
}

// depth returns the queued points.
func (q *queue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.points
}

// state returns the queued points and whether the queue is closed.
func (q *queue) state() (int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.points, q.closed
}

package batch

import (
	"sync"
	"time"
)

// Window is a shared flush tick: goroutines that have too little to be
// worth a wake-up (a connection that read a few lines, a writer woken
// after a quiet spell) wait for the next tick together, so one timer wakes
// them all and each hands on or writes what gathered meanwhile. The tick
// runs only while someone waits. A nil Window never waits.
type Window struct {
	d     time.Duration
	mu    sync.Mutex
	ch    chan struct{}
	armed bool
	kt    *kernelTimer // Linux: the tick's timer; nil: the runtime's
}

// NewWindow returns a Window of d; nil when d is 0 (no coalescing).
func NewWindow(d time.Duration) *Window {
	if d <= 0 {
		return nil
	}
	w := newWindow(d)
	w.kt = newKernelTimer()
	return w
}

// newWindow is a Window on the runtime's timers (what tests in a synctest
// bubble need: a timerfd's wait is not durably blocking there).
func newWindow(d time.Duration) *Window { return &Window{d: d} }

// closed is what a nil Window's Wait returns.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Wait returns a channel closed at the next tick (at most the window from
// now).
func (w *Window) Wait() <-chan struct{} {
	if w == nil {
		return closed
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed {
		w.armed, w.ch = true, make(chan struct{})
		if w.kt != nil && w.kt.arm(w.d) {
			go func() { w.kt.wait(); w.fire() }()
		} else {
			time.AfterFunc(w.d, w.fire)
		}
	}
	return w.ch
}

func (w *Window) fire() {
	w.mu.Lock()
	close(w.ch)
	w.armed = false
	w.mu.Unlock()
}

// Trickle is the read size below which a connection is trickling: its
// reader waits for the window before reading again.
const Trickle = smallBuf

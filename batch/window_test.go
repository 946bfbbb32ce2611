package batch

import (
	"testing"
	"testing/synctest"
	"time"
)

// Every waiter of one window is released by the same tick, at most the
// window after the first one began to wait; a nil window never waits.
func TestWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWindow(2 * time.Millisecond)
		start := time.Now()
		a := w.Wait()
		time.Sleep(time.Millisecond)
		b := w.Wait()
		if a != b {
			t.Fatal("two waiters within one window got different ticks")
		}
		<-b
		if d := time.Since(start); d != 2*time.Millisecond {
			t.Fatalf("released after %v", d)
		}
		c := w.Wait() // a new tick, armed by this waiter
		<-c
		if d := time.Since(start); d != 4*time.Millisecond {
			t.Fatalf("second tick after %v", d)
		}
	})
	var none *Window
	select {
	case <-none.Wait():
	default:
		t.Fatal("a nil window waited")
	}
	if NewWindow(0) != nil {
		t.Fatal("a zero window is not nil")
	}
}

// On Linux a window ticks on a timerfd: every waiter of one tick is
// released together, never before the window has passed, and the next
// waiter arms a new tick.
func TestWindowKernelTimer(t *testing.T) {
	w := NewWindow(2 * time.Millisecond)
	if w.kt == nil {
		t.Skip("no kernel timer here: the runtime's timers (TestWindow)")
	}
	for range 50 {
		start := time.Now()
		a, b := w.Wait(), w.Wait()
		if a != b {
			t.Fatal("two waiters within one window got different ticks")
		}
		<-a
		if d := time.Since(start); d < 2*time.Millisecond {
			t.Fatalf("released after %v, before the window", d)
		}
		c := w.Wait()
		if c == a {
			t.Fatal("a waiter after the tick got the tick that had passed")
		}
		<-c // the next round arms its own tick
	}
}

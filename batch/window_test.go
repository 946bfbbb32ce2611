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
		w := NewWindow(2 * time.Millisecond)
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

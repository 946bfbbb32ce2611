package batch

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// The gate closes when the bound would be passed, opens again at half, and
// lets a batch larger than the bound through alone.
func TestGate(t *testing.T) {
	g := NewGate(100)
	a, ok := g.TryAcquire(60)
	if !ok || a != 60 {
		t.Fatal("first 60 refused")
	}
	if _, ok := g.TryAcquire(50); ok {
		t.Fatal("60+50 over 100 taken")
	}
	if _, ok := g.TryAcquire(10); ok {
		t.Fatal("a closed gate took 10 before it opened at half")
	}
	select {
	case <-g.Opened():
		t.Fatal("closed gate reads as open")
	default:
	}
	g.Release(10) // 50: half, opens
	<-g.Opened()
	if w, ok := g.TryAcquire(40); !ok || g.Held() != 90 || w != 40 {
		t.Fatalf("after opening: %v held %d", ok, g.Held())
	}
	g.Release(90)
	if w, ok := g.TryAcquire(500); !ok || w != 100 {
		t.Fatalf("a huge batch on an empty gate: %v %d", ok, w)
	}
	synctest.Test(t, func(t *testing.T) {
		g := NewGate(10)
		g.TryAcquire(10)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		done := make(chan error)
		go func() { _, err := g.Acquire(ctx, 5); done <- err }()
		time.Sleep(100 * time.Millisecond)
		g.Release(10)
		if err := <-done; err != nil {
			t.Fatalf("Acquire after release: %v", err)
		}
		if _, err := g.Acquire(ctx, 8); err == nil {
			t.Fatal("Acquire past the bound returned before ctx ended")
		}
	})
}

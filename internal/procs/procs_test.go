package procs

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestGovernor runs a governor over a load given as cores used per
// 50 ms, on synctest's clock, and checks when it switches.
func TestGovernor(t *testing.T) {
	cases := []struct {
		name string
		load func(at time.Duration) float64 // cores used at that time
		want []int                          // the Set calls, in order
	}{
		{"idle goes to one P after DownOver", func(time.Duration) float64 { return 0.05 }, []int{1}},
		{"busy stays on the default", func(time.Duration) float64 { return 1.5 }, nil},
		{"between the marks on the default stays", func(time.Duration) float64 { return 0.35 }, nil},
		{"between the marks on one P stays", func(at time.Duration) float64 {
			if at < 2500*time.Millisecond {
				return 0
			}
			return 0.35
		}, []int{1}},
		{"a burst after idle goes back at once, then down again", func(at time.Duration) float64 {
			if at >= 3*time.Second && at < 4*time.Second {
				return 1.8
			}
			return 0.02
		}, []int{1, 0, 1}},
		{"short spikes on the default keep it", func(at time.Duration) float64 {
			if at%(500*time.Millisecond) < 100*time.Millisecond {
				return 1.9 // averaged over 2 s: 0.38
			}
			return 0
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var sets []int
				start := time.Now()
				var cpu time.Duration
				var last time.Duration
				g := &Governor{Up: 0.5, Down: 0.25, DownOver: 2 * time.Second, Every: 50 * time.Millisecond,
					Set: func(n int) { mu.Lock(); sets = append(sets, n); mu.Unlock() },
					Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
				g.CPU = func() time.Duration {
					// integrate the load up to now in 50 ms steps
					now := time.Since(start)
					for last+50*time.Millisecond <= now {
						cpu += time.Duration(tc.load(last) * float64(50*time.Millisecond))
						last += 50 * time.Millisecond
					}
					return cpu
				}
				ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second+time.Millisecond)
				defer cancel()
				g.Run(ctx)
				mu.Lock()
				defer mu.Unlock()
				want := tc.want
				if len(want) > 0 && want[len(want)-1] == 1 {
					want = append(slices.Clone(want), 0) // Run leaves the default at its end
				}
				if !slices.Equal(sets, want) {
					t.Fatalf("Set calls %v, want %v", sets, want)
				}
			})
		})
	}
}

func TestNilGovernor(t *testing.T) {
	var g *Governor
	g.Run(context.Background()) // returns at once
	if g.One() {
		t.Fatal("a nil governor runs on one P")
	}
}

func TestProcessCPU(t *testing.T) {
	if processCPU == nil {
		t.Skip("no process CPU time on this platform")
	}
	a := processCPU()
	for x := 0; processCPU() == a; x++ {
		_ = x * x
	}
	if b := processCPU(); b <= a {
		t.Fatalf("process CPU went from %v to %v", a, b)
	}
}

// TestGovernorLooksLessOnOne: on one P the governor looks every EveryOne
// (each look is a wake-up), on all of them every Every, and a burst on one
// P is seen at the next look.
func TestGovernorLooksLessOnOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var looks []time.Duration // when CPU was read
		var sets []int
		busyFrom := 5 * time.Second
		g := &Governor{Up: 0.5, Down: 0.25, DownOver: 2 * time.Second, Every: 50 * time.Millisecond, EveryOne: 200 * time.Millisecond,
			Set: func(n int) { mu.Lock(); sets = append(sets, n); mu.Unlock() },
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		g.CPU = func() time.Duration {
			at := time.Since(start)
			mu.Lock()
			looks = append(looks, at)
			mu.Unlock()
			if at <= busyFrom {
				return 0
			}
			return at - busyFrom // one core from then on
		}
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
		defer cancel()
		g.Run(ctx)
		mu.Lock()
		defer mu.Unlock()
		count := func(from, to time.Duration) int {
			n := 0
			for _, l := range looks {
				if l > from && l <= to {
					n++
				}
			}
			return n
		}
		if n := count(0, 2*time.Second); n != 40 {
			t.Errorf("looks in the first 2s (all Ps, every 50ms) = %d, want 40", n)
		}
		if n := count(3*time.Second, 5*time.Second); n != 10 {
			t.Errorf("looks from 3s to 5s (one P, every 200ms) = %d, want 10", n)
		}
		if !slices.Equal(sets, []int{1, 0}) {
			t.Fatalf("Set calls %v, want [1 0]", sets)
		}
		// Busy from 5s: the look at 5.2s sees it; back to every 50ms.
		if n := count(5200*time.Millisecond, 5600*time.Millisecond); n != 8 {
			t.Errorf("looks from 5.2s to 5.6s (all Ps again) = %d, want 8", n)
		}
	})
}

// Package procs runs a daemon on one thread while it is nearly idle and on
// all of them the moment it is busy. At the rates most relays run (tens of
// thousands of lines a second) the work is a few reads and writes per
// millisecond; with several Ps, every wake-up hands work to another thread
// and the runtime spins and sleeps looking for more, which costs more than
// the work. One P does the same work with no hand-offs.
package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"time"
)

// FlagHelp is the -adaptive-procs flag's help.
const FlagHelp = "Run on one thread (GOMAXPROCS 1) while the daemon uses under a quarter of a core, averaged over 2s, and on all of them the moment it uses 70% of that one (measured every 50ms on one thread, every 10ms on all); at ordinary rates one thread does the same work with fewer hand-offs between threads. Off, or GOMAXPROCS set in the environment: the Go runtime's default throughout"

// Governor switches GOMAXPROCS between 1 and the runtime's default from
// the process's CPU use.
type Governor struct {
	// Up: cores used (measured over one Every) at or above which a single
	// P goes back to the default. A burst that finds one P spends at most
	// one Every on it.
	Up float64
	// Down: cores used, averaged over the last DownOver, below which the
	// default goes down to one P.
	Down     float64
	DownOver time.Duration
	Every    time.Duration
	// EveryOne is how often it looks while on one P (0: Every). Each look
	// wakes the thread; at ordinary rates a look every 10ms was a sixth of
	// the process's wake-ups.
	EveryOne time.Duration
	CPU      func() time.Duration // the process's CPU time so far
	Set      func(n int)          // sets GOMAXPROCS; n == 0: back to the runtime's default
	Log      *slog.Logger

	one     bool // running on one P
	samples []float64
}

// New returns the governor for this process, or nil when there is nothing
// to govern: one CPU, GOMAXPROCS set by the user, or no way to read the
// process's CPU time here.
func New(log *slog.Logger) *Governor {
	if runtime.GOMAXPROCS(0) <= 1 || os.Getenv("GOMAXPROCS") != "" || processCPU == nil {
		return nil
	}
	return &Governor{Up: 0.7, Down: 0.25, DownOver: 2 * time.Second, Every: 10 * time.Millisecond, EveryOne: 50 * time.Millisecond,
		CPU: processCPU, Set: setProcs, Log: log}
}

func setProcs(n int) {
	if n == 0 {
		// The default, and the runtime's own updates of it again (a
		// container's CPU limit changing); GOMAXPROCS(n) turned them off.
		runtime.SetDefaultGOMAXPROCS()
		return
	}
	runtime.GOMAXPROCS(n)
}

// Run starts on the default (a relay starts to take a stream), looks every
// Every until ctx ends, then leaves the default.
func (g *Governor) Run(ctx context.Context) {
	if g == nil {
		return
	}
	t := time.NewTicker(g.Every)
	defer t.Stop()
	defer func() {
		if g.one {
			g.Set(0)
		}
	}()
	last, lastCPU := time.Now(), g.CPU()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := g.CPU()
			if wall := now.Sub(last); wall > 0 {
				every := g.every()
				if g.step(float64(cpu-lastCPU) / float64(wall)); g.every() != every {
					t.Reset(g.every())
				}
			}
			last, lastCPU = now, cpu
		}
	}
}

// every is how often it looks now.
func (g *Governor) every() time.Duration {
	if g.one && g.EveryOne > 0 {
		return g.EveryOne
	}
	return g.Every
}

// step takes one look's cores used and switches when it is time.
func (g *Governor) step(used float64) {
	keep := max(1, int(g.DownOver/g.Every))
	g.samples = append(g.samples, used)
	if len(g.samples) > keep {
		g.samples = g.samples[len(g.samples)-keep:]
	}
	switch {
	case g.one && used >= g.Up:
		g.one, g.samples = false, g.samples[:0]
		g.Set(0)
		g.Log.Debug("procs: busy, all threads", "cores_used", used)
	case !g.one && len(g.samples) == keep && mean(g.samples) < g.Down:
		g.one = true
		g.Set(1)
		g.Log.Debug("procs: nearly idle, one thread", "cores_used", mean(g.samples))
	}
}

// One reports whether the process runs on one P.
func (g *Governor) One() bool { return g != nil && g.one }

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

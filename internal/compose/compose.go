// Package compose is the one composition every daemon runs: producers (the
// listeners and the self-metrics flush) feed a stage (the destination set,
// or the proxy's HTTPS output); servers and side tasks run beside them.
// When ctx ends the producers stop, the stage's input is closed once every
// producer has returned, and the stage drains under its own deadline
// (Config.DrainTimeout of the set or the output) before Run returns.
package compose

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Task runs until ctx ends (or fails).
type Task = func(ctx context.Context) error

// Stage is the downstream end of a pipeline. Run returns once CloseInput
// has been called after ctx ended and what it holds is delivered, kept or
// counted.
type Stage interface {
	Run(ctx context.Context) error
	CloseInput()
}

// Pipeline is a daemon's running parts.
type Pipeline struct {
	Producers []Task // send into Stage; all have returned before its input closes
	Stage     Stage
	Beside    []Task // control and admin servers, key sync, status logs
	// OnShutdown is called once when ctx ends (or a task fails): the
	// "shutting down" log line.
	OnShutdown func()
}

// Run runs every part until ctx ends, then drains in order: producers,
// then the stage. It returns the first error of any part.
func (p Pipeline) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	var prod errgroup.Group
	for _, t := range p.Producers {
		prod.Go(func() error { return t(gctx) })
	}
	g.Go(func() error {
		defer p.Stage.CloseInput() // the single owner of the stage's input closes it
		return prod.Wait()
	})
	g.Go(func() error { return p.Stage.Run(gctx) })
	for _, t := range p.Beside {
		g.Go(func() error { return t(gctx) })
	}
	if p.OnShutdown != nil {
		g.Go(func() error {
			<-gctx.Done()
			p.OnShutdown()
			return nil
		})
	}
	return g.Wait()
}

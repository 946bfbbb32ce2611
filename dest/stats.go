package dest

import (
	"context"
	"maps"
	"sync"
	"time"
)

// dropCounters counts dropped points by reason. Drops are off the hot path,
// so a mutex-guarded map is enough.
type dropCounters struct {
	mu sync.Mutex
	m  map[string]uint64
}

func (c *dropCounters) add(reason string, n uint64) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]uint64{}
	}
	c.m[reason] += n
	c.mu.Unlock()
}

func (c *dropCounters) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.m))
	maps.Copy(out, c.m)
	return out
}

// DestStats is one destination's counters.
type DestStats struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Sent       uint64 `json:"sent"`
	Dropped    uint64 `json:"dropped"`
	Reconnects uint64 `json:"reconnects"`
	QueueDepth int    `json:"queue_depth"`
	QueueCap   int    `json:"queue_cap"`
	InFlight   int64  `json:"in_flight"`
	Spooled    uint64 `json:"spooled,omitempty"`
	Replayed   uint64 `json:"replayed,omitempty"`
	SpoolBytes int64  `json:"spool_bytes,omitempty"`
	SpoolLines int64  `json:"spool_lines,omitempty"`
	// SpoolErrors counts failed spool writes; SpoolCorruptBytes the
	// damaged bytes found in the spool and skipped.
	SpoolErrors uint64 `json:"spool_write_errors,omitempty"`
	// Unacknowledged estimates the lines that were written (so in Sent)
	// but still in the kernel's buffer when a connection was lost: the
	// peer may never have had them.
	Unacknowledged uint64 `json:"unacknowledged,omitempty"`
	// ClosedAfterWrite counts lines written in the second before the peer
	// closed the connection: most likely discarded (a protocol mismatch).
	ClosedAfterWrite uint64 `json:"closed_after_write,omitempty"`
	// Resent counts lines written first after a quiet spell into a
	// connection that was lost before the peer acknowledged them: they
	// went again on the next connection.
	Resent            uint64    `json:"resent,omitempty"`
	SpoolCorruptBytes int64     `json:"spool_corrupt_bytes,omitempty"`
	LastError         string    `json:"last_error,omitempty"`
	Held              bool      `json:"held,omitempty"`  // out of service by a failed health check
	Holds             uint64    `json:"holds,omitempty"` // times taken out of service
	Registered        time.Time `json:"registered"`
}

// RemovedDest is a destination unregistered at runtime (deldest).
type RemovedDest struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

const maxRemembered = 16

// Stats is a snapshot of the set's counters. Points are lines.
type Stats struct {
	Distribution  string            `json:"distribution"`
	Received      uint64            `json:"received"`
	Sent          uint64            `json:"sent"`
	Dropped       map[string]uint64 `json:"dropped"`
	Retried       uint64            `json:"retried"`
	ConsoleOut    uint64            `json:"console_out,omitempty"`
	IncomingDepth int               `json:"incoming_queue_depth"`
	IncomingBytes int64             `json:"incoming_queue_bytes"`
	IncomingCap   int               `json:"incoming_queue_cap"`
	RetryDepth    int               `json:"retry_queue_depth"`
	Destinations  []DestStats       `json:"destinations"`
	Removed       []RemovedDest     `json:"removed,omitempty"` // the last few, newest last
}

// Stats returns a snapshot of the counters.
func (p *Set) Stats() Stats {
	s := Stats{
		Distribution:  p.cfg.Mode.String(),
		Received:      p.received.Load(),
		Dropped:       p.drops.snapshot(),
		Retried:       p.retried.Load(),
		ConsoleOut:    p.consoleN.Load(),
		IncomingDepth: len(p.in),
		IncomingBytes: p.incomingBytes(),
		IncomingCap:   cap(p.in),
		RetryDepth:    len(p.retry),
		Destinations:  []DestStats{},
	}
	p.mu.Lock()
	s.Removed = append([]RemovedDest(nil), p.removed...)
	p.mu.Unlock()
	for _, d := range p.view.Load().dests {
		ds := DestStats{
			Name:           d.Name,
			State:          stateNames[d.state.Load()],
			Sent:           d.sent.Load(),
			Dropped:        d.dropped.Load(),
			Reconnects:     d.reconnects.Load(),
			QueueDepth:     d.q.depth(),
			QueueCap:       p.cfg.QueueCap,
			InFlight:       d.pending.Load(),
			Registered:     d.registered,
			Held:           d.held.Load(),
			Holds:          d.holds.Load(),
			Unacknowledged: d.unacked.Load(), ClosedAfterWrite: d.closedAfterWrite.Load(), Resent: d.resent.Load(),
		}
		if d.sp != nil {
			ds.Spooled, ds.Replayed, ds.SpoolBytes, ds.SpoolLines = d.spooled.Load(), d.replayed.Load(), d.sp.Bytes(), d.sp.Lines()
			ds.SpoolErrors, ds.SpoolCorruptBytes = d.spoolErrors.Load(), d.sp.Corrupt()
		}
		if e := d.lastErr.Load(); e != nil && ds.State != "up" {
			ds.LastError = *e
		}
		s.Sent += ds.Sent
		s.Destinations = append(s.Destinations, ds)
	}
	return s
}

// statusLoop logs, every StatusInterval, destinations with queued points and
// the points dropped since the last report, by reason: drops are summarised,
// never logged one by one.
func (p *Set) statusLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.StatusInterval)
	defer t.Stop()
	last := map[string]uint64{}
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		for _, d := range p.view.Load().dests {
			n := d.q.depth() + int(d.pending.Load())
			switch {
			case n >= p.cfg.QueueCap:
				p.log.Warn("destination queue full", "dest", d.Name, "n", n, "state", stateNames[d.state.Load()])
			case n > 0:
				p.log.Info("destination queue", "dest", d.Name, "n", n, "state", stateNames[d.state.Load()])
			}
		}
		if n := len(p.retry); n > 0 {
			p.log.Info("retry queue", "n", n)
		}
		now := p.drops.snapshot()
		for reason, v := range now {
			if d := v - last[reason]; d > 0 {
				p.log.Warn("points dropped", "reason", reason, "n", d, "interval", p.cfg.StatusInterval)
			}
		}
		last = now
	}
}

func (p *Set) incomingBytes() int64 {
	if p.inBytes == nil {
		return 0
	}
	return p.inBytes.Held()
}

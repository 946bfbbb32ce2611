package listener

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polymur/polymur/batch"
)

// Counters are the listener's line and connection counts. Safe for
// concurrent use.
type Counters struct {
	Accepted atomic.Uint64
	Rejected [batch.NumReasons]atomic.Uint64
	Lost     atomic.Uint64 // read but not handed on before the drain deadline

	mu    sync.Mutex
	proto map[string]uint64 // rejections of a protocol decoder (pickle frames, points)
}

// reject counts n rejections for a decoder's reason.
func (c *Counters) reject(reason string, n uint64) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	if c.proto == nil {
		c.proto = map[string]uint64{}
	}
	c.proto[reason] += n
	c.mu.Unlock()
}

func (c *Counters) fold(o *batch.Counts) {
	if o.Accepted > 0 {
		c.Accepted.Add(o.Accepted)
	}
	for i, v := range o.Rejected {
		if v > 0 {
			c.Rejected[i].Add(v)
		}
	}
	*o = batch.Counts{}
}

// Rejections returns the rejected-line counts by reason.
func (c *Counters) Rejections() map[string]uint64 {
	m := map[string]uint64{}
	for i := range c.Rejected {
		if v := c.Rejected[i].Load(); v > 0 {
			m[batch.Reason(i).String()] = v
		}
	}
	c.mu.Lock()
	for k, v := range c.proto {
		m[k] += v
	}
	c.mu.Unlock()
	return m
}

// summarise logs rejected lines by reason every interval, when there are any.
func summarise(ctx context.Context, log *slog.Logger, c *Counters, every time.Duration) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	var last [batch.NumReasons]uint64
	for {
		select {
		case <-tk.C:
		case <-ctx.Done():
			return
		}
		for i := range c.Rejected {
			v := c.Rejected[i].Load()
			if d := v - last[i]; d > 0 {
				log.Warn("lines rejected", "reason", batch.Reason(i).String(), "n", d, "interval", every)
			}
			last[i] = v
		}
	}
}

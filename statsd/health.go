package statsd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Targets is the destination set a Health checks: the names of its members
// (host:port:adminport; those without an admin port are not checked), and
// taking one out of service and back.
type Targets struct {
	Names  func() []string
	Hold   func(name, reason string) error
	Unhold func(name string) error
}

// Health checks backends on their admin port as statsd's proxy.js does and
// keeps their state. Safe for concurrent use.
type Health struct {
	mu      sync.Mutex
	status  map[string]bool // name → healthy (absent: not checked yet)
	fails   map[string]uint64
	checks  atomic.Uint64
	downFor atomic.Bool // "health down" from an operator: answer down to our own checkers
}

// NewHealth returns a checker with no backend checked yet.
func NewHealth() *Health {
	return &Health{status: map[string]bool{}, fails: map[string]uint64{}}
}

// Checks is the number of checks made.
func (h *Health) Checks() uint64 { return h.checks.Load() }

// Command is the management interface's "health [up|down]": it sets (when
// allowed) and reports what this proxy answers about itself.
func (h *Health) Command(arg string, readOnly bool, hint string) string {
	if arg != "" && readOnly {
		return "Error: health changes are disabled on this port (" + hint + ")"
	}
	switch strings.ToLower(arg) {
	case "up":
		h.downFor.Store(false)
	case "down":
		h.downFor.Store(true)
	}
	if h.downFor.Load() {
		return "health: down"
	}
	return "health: up"
}

// checkBackend asks a statsd admin port "health" and wants "up" back, as
// proxy.js does. The check is bounded by timeout.
func checkBackend(host, adminPort string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, adminPort), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "health\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if n == 0 {
		if err == nil {
			err = io.EOF
		}
		return err
	}
	if !bytes.Contains(buf[:n], []byte("up")) {
		return fmt.Errorf("answered %q", strings.TrimSpace(string(buf[:n])))
	}
	return nil
}

// Loop checks every backend with an admin port each interval (and once at
// once): a failed check takes it out of service (Targets.Hold), a good one
// puts it back. Transitions are logged and counted. It returns nil when ctx
// ends.
func (h *Health) Loop(ctx context.Context, p Targets, interval time.Duration, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, name := range p.Names() {
			host, _, admin, err := SplitNode(name)
			if err != nil || admin == "" {
				continue // no admin port: not checked
			}
			wg.Go(func() {
				err := checkBackend(host, admin, min(interval, 5*time.Second))
				h.checks.Add(1)
				h.mu.Lock()
				was, seen := h.status[name]
				h.status[name] = err == nil
				if err != nil {
					h.fails[name]++
				}
				h.mu.Unlock()
				switch {
				case err != nil && (was || !seen):
					log.Warn("statsd backend unhealthy: out of the ring", "backend", name, "err", err)
					p.Hold(name, "health check: "+err.Error())
				case err == nil && seen && !was:
					log.Info("statsd backend healthy again: back in the ring", "backend", name)
					p.Unhold(name)
				}
			})
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Snapshot is each checked backend's state, for stats.
func (h *Health) Snapshot() map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]any{}
	for name, ok := range h.status {
		out[name] = map[string]any{"healthy": ok, "failed_checks": h.fails[name]}
	}
	return out
}

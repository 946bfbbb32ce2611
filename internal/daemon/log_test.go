package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestCountsAttr: counts by reason are attributes, sorted, never a Go map.
func TestCountsAttr(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("stopped", CountsAttr("dropped", map[string]uint64{"unrouted": 2, "blackhole": 1}))
	log.Info("stopped", CountsAttr("dropped", nil))
	out := b.String()
	if !strings.Contains(out, "dropped.blackhole=1 dropped.unrouted=2") || !strings.Contains(out, "dropped=none") || strings.Contains(out, "map[") {
		t.Fatalf("logged:\n%s", out)
	}
}

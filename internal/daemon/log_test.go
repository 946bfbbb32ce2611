package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
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

// Durations are strings in text logs and seconds in JSON logs.
func TestLogDurations(t *testing.T) {
	for format, want := range map[string]string{"text": "took=1.5s", "json": `"took":1.5`} {
		var b bytes.Buffer
		log, err := NewLogger(&b, "info", format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("done", "took", 1500*time.Millisecond)
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s: %s", format, b.String())
		}
	}
}

package api

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
)

// Control is what the control API needs from the destination set and the daemon.
type Control struct {
	PutDest func(spec string) error
	DelDest func(name string) error
	Route   func(metric string) []string
	GetDest func() any // marshalled as getdest's JSON
	Stats   func() any // marshalled as stats' JSON
	// ReadOnly refuses putdest and deldest (the API has no authentication:
	// anyone who can connect could redirect the stream); ReadOnlyHint names
	// the flag that allows them.
	ReadOnly     bool
	ReadOnlyHint string
}

func (c Control) refused() string {
	return "Error: destination changes are disabled on this port (" + c.ReadOnlyHint + ")"
}

// ControlCommands returns the control API's command set: putdest, deldest,
// getdest, route, ping, stats and memstats.
func ControlCommands(c Control) map[string]Handler {
	return map[string]Handler{
		"putdest": func(arg string) string {
			if c.ReadOnly {
				return c.refused()
			}
			if arg == "" {
				return "Must provide destination"
			}
			if err := c.PutDest(arg); err != nil {
				return "Error: " + err.Error()
			}
			return "Registered destination: " + arg
		},
		"deldest": func(arg string) string {
			if c.ReadOnly {
				return c.refused()
			}
			if arg == "" {
				return "Must provide destination"
			}
			if err := c.DelDest(arg); err != nil {
				return "Error: " + err.Error()
			}
			return "Unregistered destination: " + arg
		},
		"getdest": func(string) string { return marshal(c.GetDest(), " ") },
		"route": func(arg string) string {
			if arg == "" {
				return "Must provide metric"
			}
			name, _, _ := strings.Cut(arg, " ")
			dests := c.Route(name)
			if len(dests) == 0 {
				return "Error: no destinations registered"
			}
			return strings.Join(dests, "\n")
		},
		"ping":     func(string) string { return "pong" },
		"stats":    func(string) string { return marshal(c.Stats(), "  ") },
		"memstats": func(string) string { return MemStats() },
	}
}

// MemStats renders the Go memory statistics as go-statsd-proxy's management
// interface does: one "label: value" per line.
func MemStats() string {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	rows := []struct {
		label string
		v     uint64
	}{
		{"bytes allocated and in use", m.Alloc},
		{"bytes allocated total", m.TotalAlloc},
		{"bytes obtained from system", m.Sys},
		{"number of pointer lookups", m.Lookups},
		{"number of mallocs", m.Mallocs},
		{"number of frees", m.Frees},
		{"heap bytes allocated and still in use", m.HeapAlloc},
		{"heap bytes obtained from system", m.HeapSys},
		{"bytes in idle spans", m.HeapIdle},
		{"bytes in non-idle span", m.HeapInuse},
		{"bytes released to the OS", m.HeapReleased},
		{"total number of allocated objects", m.HeapObjects},
		{"number of goroutines", uint64(runtime.NumGoroutine())},
	}
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s: %d\n", r.label, r.v)
	}
	return b.String()
}

func marshal(v any, indent string) string {
	out, err := json.MarshalIndent(v, "", indent)
	if err != nil {
		return "Error: " + err.Error()
	}
	return string(out)
}

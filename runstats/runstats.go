// Package runstats is polymur's self-observation: runtime snapshots for the
// runstats port, tachymeter latency summaries, the periodic throughput and
// idle log lines, and Graphite self-metrics sent through the daemon's
// own pipeline (-metrics-flush).
package runstats

import (
	"encoding/json"
	"runtime"
	"sync"
	"time"

	"github.com/jamiealquiza/tachymeter"
)

// Report is what the runstats port answers to `stats`: the original's
// runtime-meminfo and service sections.
type Report struct {
	Meminfo map[string]uint64 `json:"runtime-meminfo"`
	Service struct {
		StartTime     string `json:"start-time"`
		UptimeSeconds int64  `json:"uptime-seconds"`
	} `json:"service"`
}

// MemFields returns the 25 runtime.MemStats fields the original exported,
// by their Go names.
func MemFields() map[string]uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return map[string]uint64{
		"Alloc": m.Alloc, "TotalAlloc": m.TotalAlloc, "Sys": m.Sys, "Lookups": m.Lookups,
		"Mallocs": m.Mallocs, "Frees": m.Frees, "HeapAlloc": m.HeapAlloc, "HeapSys": m.HeapSys,
		"HeapIdle": m.HeapIdle, "HeapInuse": m.HeapInuse, "HeapReleased": m.HeapReleased,
		"HeapObjects": m.HeapObjects, "StackInuse": m.StackInuse, "StackSys": m.StackSys,
		"MSpanInuse": m.MSpanInuse, "MSpanSys": m.MSpanSys, "MCacheInuse": m.MCacheInuse,
		"MCacheSys": m.MCacheSys, "BuckHashSys": m.BuckHashSys, "GCSys": m.GCSys,
		"OtherSys": m.OtherSys, "NextGC": m.NextGC, "LastGC": m.LastGC,
		"PauseTotalNs": m.PauseTotalNs, "NumGC": uint64(m.NumGC),
	}
}

// Snapshot returns the runtime report for a process started at start.
func Snapshot(start time.Time) Report {
	var r Report
	r.Meminfo = MemFields()
	r.Service.StartTime = start.Format(time.RFC3339)
	r.Service.UptimeSeconds = int64(time.Since(start).Seconds())
	return r
}

// JSON renders the report as the runstats port does (two-space indent).
func (r Report) JSON() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// Latency collects event durations in a tachymeter window and summarises
// them. tachymeter's AddTime and Calc race with each other, so both are
// guarded here. Safe for concurrent use.
type Latency struct {
	mu sync.Mutex
	t  *tachymeter.Tachymeter
}

// NewLatency keeps the last size samples.
func NewLatency(size int) *Latency {
	return &Latency{t: tachymeter.New(&tachymeter.Config{Size: size})}
}

// Observe records one duration.
func (l *Latency) Observe(d time.Duration) {
	l.mu.Lock()
	l.t.AddTime(d)
	l.mu.Unlock()
}

// Summary is a latency digest, durations as Go duration strings.
type Summary struct {
	Count int    `json:"count"`
	P50   string `json:"p50"`
	P95   string `json:"p95"`
	P99   string `json:"p99"`
	Max   string `json:"max"`
}

// Summary returns percentiles over the window; zero when nothing was seen.
func (l *Latency) Summary() Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.t.Count == 0 {
		return Summary{}
	}
	m := l.t.Calc()
	return Summary{Count: m.Count, P50: m.Time.P50.String(), P95: m.Time.P95.String(), P99: m.Time.P99.String(), Max: m.Time.Max.String()}
}

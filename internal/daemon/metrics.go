package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/ring"
)

// Metric names follow Prometheus conventions: polymur_<what>_<unit>[_total].
// Values are read at scrape time from the counters the daemons keep anyway
// (admin.CollectFunc), so /metrics adds nothing to the data path; only the
// latency histograms are observed as things happen.

// Counter sends one counter sample; kv are label name/value pairs.
func Counter(ch chan<- prometheus.Metric, name, help string, v float64, kv ...string) {
	send(ch, prometheus.CounterValue, name, help, v, kv)
}

// Gauge sends one gauge sample; kv are label name/value pairs.
func Gauge(ch chan<- prometheus.Metric, name, help string, v float64, kv ...string) {
	send(ch, prometheus.GaugeValue, name, help, v, kv)
}

func send(ch chan<- prometheus.Metric, t prometheus.ValueType, name, help string, v float64, kv []string) {
	var names, values []string
	for i := 0; i+1 < len(kv); i += 2 {
		names, values = append(names, kv[i]), append(values, kv[i+1])
	}
	m, err := prometheus.NewConstMetric(prometheus.NewDesc(name, help, names, nil), t, v, values...)
	if err != nil {
		m = prometheus.NewInvalidMetric(prometheus.NewDesc(name, help, names, nil), err)
	}
	ch <- m
}

// LatencyBuckets suit writes to carbon and POSTs to a gateway: 100µs to 30s.
var LatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewRegistry is a registry with the Go runtime and process collectors, the
// build info and cs.
func NewRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(admin.CollectFunc(func(ch chan<- prometheus.Metric) {
		Gauge(ch, "polymur_build_info", "Build of this daemon (value 1).", 1, "version", Version(), "revision", Revision(), "goversion", runtime.Version())
	}))
	for _, c := range cs {
		reg.MustRegister(c)
	}
	return reg
}

// IntakeMetrics exposes a listener's accepted and rejected lines.
func IntakeMetrics(in Intake) admin.CollectFunc {
	return func(ch chan<- prometheus.Metric) {
		Counter(ch, "polymur_lines_accepted_total", "Metric lines accepted by the listener.", float64(in.Accepted()))
		for reason, n := range in.Rejected() {
			Counter(ch, "polymur_lines_rejected_total", "Metric lines rejected by the listener, by reason.", float64(n), "reason", reason)
		}
	}
}

// DestMetrics exposes the set's counters and per-destination state.
func DestMetrics(p *dest.Set) admin.CollectFunc {
	return func(ch chan<- prometheus.Metric) {
		s := p.Stats()
		Counter(ch, "polymur_points_received_total", "Points (lines) handed to distribution.", float64(s.Received))
		Counter(ch, "polymur_points_retried_total", "Points re-routed through the retry queue (dead or removed hash-route destinations).", float64(s.Retried))
		for reason, n := range s.Dropped {
			Counter(ch, "polymur_points_dropped_total", "Points dropped, by reason.", float64(n), "reason", reason)
		}
		Gauge(ch, "polymur_incoming_queue_batches", "Batches waiting in the incoming queue.", float64(s.IncomingDepth))
		Gauge(ch, "polymur_incoming_queue_capacity_batches", "Capacity of the incoming queue.", float64(s.IncomingCap))
		Gauge(ch, "polymur_incoming_queue_bytes", "Memory held by the batches in the incoming queue.", float64(s.IncomingBytes))
		Gauge(ch, "polymur_retry_queue_batches", "Batches waiting in the retry queue.", float64(s.RetryDepth))
		Gauge(ch, "polymur_destinations", "Registered destinations.", float64(len(s.Destinations)))
		if sampled, hits, off := ring.CacheStats(); sampled > 0 {
			Counter(ch, "polymur_position_cache_sampled_lookups_total", "carbon_ch name-position lookups sampled (one name in 64).", float64(sampled))
			Counter(ch, "polymur_position_cache_sampled_hits_total", "Of those, the ones the cache answered (no MD5).", float64(hits))
			Gauge(ch, "polymur_position_cache_off", "1 while the position cache is off (names not repeating within it).", float64(b2i(off)))
		}
		for _, d := range s.Destinations {
			l := []string{"destination", d.Name}
			Counter(ch, "polymur_destination_points_sent_total", "Points written to the destination.", float64(d.Sent), l...)
			Counter(ch, "polymur_destination_points_dropped_total", "Points dropped for the destination.", float64(d.Dropped), l...)
			Counter(ch, "polymur_destination_reconnects_total", "Connections to the destination lost and re-established.", float64(d.Reconnects), l...)
			Gauge(ch, "polymur_destination_queue_points", "Points queued or being written for the destination.", float64(d.QueueDepth)+float64(d.InFlight), l...)
			Gauge(ch, "polymur_destination_queue_capacity_points", "Capacity of the destination's queue.", float64(d.QueueCap), l...)
			up := 0.0
			if d.State == "up" {
				up = 1
			}
			Gauge(ch, "polymur_destination_up", "1 when connected, 0 when connecting or down.", up, l...)
			for _, st := range []string{"connecting", "up", "dead"} {
				v := 0.0
				if d.State == st {
					v = 1
				}
				Gauge(ch, "polymur_destination_state", "The destination's state (1 for the current one).", v, "destination", d.Name, "state", st)
			}
			Gauge(ch, "polymur_destination_spool_bytes", "Bytes held in the destination's disk spool.", float64(d.SpoolBytes), l...)
			Gauge(ch, "polymur_destination_spool_points", "Points held in the destination's disk spool.", float64(d.SpoolLines), l...)
			Counter(ch, "polymur_destination_points_spooled_total", "Points written to the destination's spool.", float64(d.Spooled), l...)
			Counter(ch, "polymur_destination_points_replayed_total", "Points replayed from the destination's spool.", float64(d.Replayed), l...)
			Counter(ch, "polymur_destination_spool_write_errors_total", "Spool writes the disk refused.", float64(d.SpoolErrors), l...)
			Counter(ch, "polymur_destination_spool_corrupt_bytes_total", "Damaged spool bytes found and skipped.", float64(d.SpoolCorruptBytes), l...)
			Counter(ch, "polymur_destination_points_unacknowledged_total", "Points written but still in the kernel's buffer when a connection was lost (estimate).", float64(d.Unacknowledged), l...)
			Counter(ch, "polymur_destination_points_resent_total", "Points sent again: the connection they were first written to was lost before the destination acknowledged them.", float64(d.Resent), l...)
			Counter(ch, "polymur_destination_points_closed_after_write_total", "Points written in the second before the destination closed the connection (most likely discarded: a protocol mismatch?).", float64(d.ClosedAfterWrite), l...)
		}
	}
}

// NotReadyDests gives the destination set's reasons not to take traffic: no
// destinations, or every destination down.
func NotReadyDests(p *dest.Set, console bool) []string {
	s := p.Stats()
	if len(s.Destinations) == 0 {
		if console {
			return nil
		}
		return []string{"no destinations registered"}
	}
	for _, d := range s.Destinations {
		if d.State == "up" {
			return nil
		}
	}
	return []string{fmt.Sprintf("every destination is down (%d registered)", len(s.Destinations))}
}

// AdminServer binds -admin-addr ("" disables it: nil, nil).
func AdminServer(cfg admin.Config) (*admin.Server, error) {
	if cfg.Addr == "" {
		return nil, nil
	}
	s, err := admin.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("-admin-addr: %w", err)
	}
	return s, nil
}

// RunAdmin runs s until ctx ends (nothing when s is nil).
func RunAdmin(ctx context.Context, s *admin.Server, log *slog.Logger) error {
	if s == nil {
		return nil
	}
	if err := s.Run(ctx); err != nil {
		log.Error("admin HTTP failed", "err", err)
		return err
	}
	return nil
}

// SecondsSince is the age of t in seconds (0 for the zero time).
func SecondsSince(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return time.Since(t).Seconds()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

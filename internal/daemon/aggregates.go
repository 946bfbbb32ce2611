package daemon

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/aggregate"
	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/dest"
	"github.com/polymur/polymur/route"
)

// newAggregates is the engine of -config's aggregates: its output goes to
// the destination set (set is called once it exists) marked with its
// aggregate, so that the table routes it by the aggregate's send to.
func newAggregates(f *RelayFlags, log *slog.Logger, set func() *dest.Set) *aggregate.Engine {
	return aggregate.New(aggregate.Config{
		MaxSeries: f.AggMaxSeries, MaxValues: f.AggMaxValues, DropAtExit: f.AggAtExit == "drop", SortedRanks: f.AggRank == "sorted", Log: log,
		Emit: func(ctx context.Context, a *route.Aggregate, b *batch.Batch) error {
			b.Via = a
			err := set().Send(ctx, b)
			if err != nil {
				b.Release()
			}
			return err
		},
	})
}

// AggregateMetrics exposes the aggregates' state and counters.
func AggregateMetrics(e *aggregate.Engine) admin.CollectFunc {
	return func(ch chan<- prometheus.Metric) {
		s := e.Stats()
		Gauge(ch, "polymur_aggregate_series", "Live aggregate series, all aggregates.", float64(s.Series))
		Gauge(ch, "polymur_aggregate_series_limit", "Most live aggregate series (-aggregate-max-series).", float64(s.MaxSeries))
		Gauge(ch, "polymur_aggregate_values", "Values kept for median, percentile, variance and stddev.", float64(s.Values))
		Gauge(ch, "polymur_aggregate_values_limit", "Most values kept (-aggregate-max-values).", float64(s.MaxValues))
		for reason, n := range s.Dropped {
			Counter(ch, "polymur_aggregate_points_dropped_total", "Points fed to aggregates and dropped, by reason.", float64(n), "reason", reason)
		}
		for _, a := range s.Aggregates {
			l := []string{"aggregate", a.Pos}
			Gauge(ch, "polymur_aggregate_live_series", "Live series of the aggregate.", float64(a.Series), l...)
			Gauge(ch, "polymur_aggregate_buckets", "Open buckets of the aggregate.", float64(a.Buckets), l...)
			Counter(ch, "polymur_aggregate_points_received_total", "Points fed to the aggregate (one per compute).", float64(a.Received), l...)
			Counter(ch, "polymur_aggregate_lines_emitted_total", "Lines the aggregate wrote.", float64(a.Emitted), l...)
		}
	}
}

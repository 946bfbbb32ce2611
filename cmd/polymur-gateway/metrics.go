package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/polymur/polymur/admin"
	"github.com/polymur/polymur/consul"
	"github.com/polymur/polymur/internal/daemon"
	"github.com/polymur/polymur/listener"
)

// gatewayMetrics exposes the ingest requests by status and key name and the
// key sync's state.
func gatewayMetrics(keys *consul.Cache, ingest *listener.Ingest) admin.CollectFunc {
	return func(ch chan<- prometheus.Metric) {
		st := ingest.Stats()
		for _, r := range st.ByKey {
			key := r.Key
			if key == "" {
				key = "(none)" // no valid key
			}
			daemon.Counter(ch, "polymur_gateway_requests_total", "Requests to /ingest and /ping, by status and key name.",
				float64(r.Count), "code", strconv.Itoa(r.Code), "key", key)
		}
		daemon.Counter(ch, "polymur_gateway_received_bytes_total", "Compressed bytes of accepted batches.", float64(st.BytesIn))
		daemon.Counter(ch, "polymur_gateway_decoded_bytes_total", "Decompressed bytes of accepted batches.", float64(st.BytesOut))
		k := keys.Stats()
		daemon.Gauge(ch, "polymur_gateway_keys", "API keys in force.", float64(k.Keys))
		loaded := 0.0
		if k.Loaded {
			loaded = 1
		}
		daemon.Gauge(ch, "polymur_gateway_keys_loaded", "1 once API keys have been loaded.", loaded)
		daemon.Gauge(ch, "polymur_gateway_key_sync_age_seconds", "Seconds since the API keys were last read from Consul.", daemon.SecondsSince(k.LastSync))
		daemon.Counter(ch, "polymur_gateway_key_syncs_total", "Successful reads of the API keys from Consul.", float64(k.Syncs))
		daemon.Counter(ch, "polymur_gateway_key_sync_errors_total", "Failed reads of the API keys from Consul.", float64(k.SyncErrors))
	}
}

package output

// Stats is a snapshot of the output's counters.
type Stats struct {
	Received    uint64            `json:"received"`
	Sent        uint64            `json:"sent"`
	Batches     uint64            `json:"batches_sent"`
	Retries     uint64            `json:"retries"`
	Dropped     map[string]uint64 `json:"dropped"`
	QueueDepth  int               `json:"queue_depth"`
	QueueCap    int               `json:"queue_cap"`
	RawBytes    uint64            `json:"raw_bytes"`
	WireBytes   uint64            `json:"gzip_bytes"`
	GatewayDown bool              `json:"gateway_failing"`
	Spooled     uint64            `json:"spooled,omitempty"`
	Replayed    uint64            `json:"replayed,omitempty"`
	SpoolBytes  int64             `json:"spool_bytes,omitempty"`
}

// Stats returns the counters.
func (o *Output) Stats() Stats {
	o.dropMu.Lock()
	d := make(map[string]uint64, len(o.drops))
	for k, v := range o.drops {
		d[k] = v
	}
	o.dropMu.Unlock()
	st := Stats{Received: o.received.Load(), Sent: o.sent.Load(), Batches: o.batches.Load(), Retries: o.retries.Load(),
		Dropped: d, QueueDepth: len(o.in), QueueCap: cap(o.in), RawBytes: o.rawBytes.Load(), WireBytes: o.gzBytes.Load(),
		GatewayDown: o.failing.Load(), Spooled: o.spooled.Load(), Replayed: o.replayed.Load()}
	if o.sp != nil {
		st.SpoolBytes = o.sp.Bytes()
	}
	return st
}

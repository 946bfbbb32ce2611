package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/polymur/polymur/batch"
)

// IngestConfig configures the gateway's HTTP(S) batch ingest. Zero values
// take the defaults.
type IngestConfig struct {
	// Lookup maps an API key to its name; ok is false for unknown keys.
	Lookup func(key string) (name string, ok bool)
	// Send hands an accepted request's lines on, as one batch.
	Send      SendFunc
	Level     batch.Level
	MaxLine   int  // default 16384
	KeyPrefix bool // prepend "<keyname>." to every metric name
	// TagNormalize sends tagged names normalised, as TCPConfig's.
	TagNormalize bool
	// Rejects, when set, keeps the last rejected lines by reason, with the
	// key name and client address (TCPConfig's Rejects).
	Rejects *batch.RejectLog
	// MaxBody caps the compressed request body; default 16 MiB.
	MaxBody int64
	// MaxDecoded caps the decompressed body (gzip bombs); default 64 MiB.
	MaxDecoded int64
	// QueueWait is how long a request may wait for room in the pipeline
	// before it is answered 503 (the proxy then retries); default 2s.
	QueueWait time.Duration
	// MaxInFlight bounds requests being decoded at once; more get 503.
	MaxInFlight int // default 64
	// MaxBuffered bounds, in bytes, the decoded lines the gateway holds:
	// requests being decoded plus batches waiting in the pipeline (until
	// delivered, in broadcast; until placed on the destination queues, in
	// hash-route). A request that cannot get room within QueueWait is
	// answered 503 before more of it is read; one larger than the whole
	// bound gets 413 (the proxy splits it). Default 128 MiB.
	MaxBuffered int64
	// MaxInFlightPerKey bounds one key's requests in flight, so that one
	// tenant's slow uploads cannot take every slot; default MaxInFlight/4
	// (at least 1).
	MaxInFlightPerKey int
	// MinRate is the slowest body upload accepted, in bytes per second
	// after a 5 s grace; slower ones are cut (408). Default 4096.
	MinRate int64
	// ChunkLines is the most lines in one pipeline batch: a request is cut
	// into batches of this size, so no destination queue is exceeded by
	// more than one of them. Default 5000.
	ChunkLines int
	Logger     *slog.Logger
}

// chunkBytes is the largest pipeline batch in bytes (with ChunkLines).
const chunkBytes = 1 << 20

// Ingest serves POST /ingest and /ping. A request's lines are accepted
// whole (200 once all are in the pipeline queue) or refused whole (4xx/5xx,
// nothing forwarded). Safe for concurrent use.
type Ingest struct {
	cfg    IngestConfig
	log    *slog.Logger
	sem    chan struct{}
	budget *semaphore.Weighted
	held   atomic.Int64  // bytes of the budget in use
	multi  chan struct{} // 1-slot: the one request decoding past its first chunk

	Counters                // lines of accepted requests
	bytesIn, bytesOut       atomic.Uint64
	statusMu                sync.Mutex
	status                  map[int]uint64
	byKey                   map[string]uint64
	byKeyStatus             map[keyStatus]uint64
	lastAuthLog, lastBadLog atomic.Int64
	busy                    atomic.Uint64 // requests refused for want of buffer room
	keyMu                   sync.Mutex
	perKey                  map[string]int    // requests in flight by key name
	keyRefused              map[string]uint64 // refused over MaxInFlightPerKey, by key name
}

// NewIngest validates cfg.
func NewIngest(cfg IngestConfig) (*Ingest, error) {
	if cfg.Lookup == nil || cfg.Send == nil {
		return nil, errors.New("listener: Lookup and Send are required")
	}
	if cfg.MaxLine == 0 {
		cfg.MaxLine = 16384
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 16 << 20
	}
	if cfg.MaxDecoded == 0 {
		cfg.MaxDecoded = 64 << 20
	}
	if cfg.QueueWait == 0 {
		cfg.QueueWait = 2 * time.Second
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.MaxBuffered == 0 {
		cfg.MaxBuffered = 128 << 20
	}
	if cfg.ChunkLines == 0 {
		cfg.ChunkLines = 5000
	}
	if cfg.MaxInFlightPerKey == 0 {
		cfg.MaxInFlightPerKey = max(1, cfg.MaxInFlight/4)
	}
	if cfg.MinRate == 0 {
		cfg.MinRate = 4096
	}
	if cfg.MaxBody < 1 || cfg.MaxDecoded < 1 || cfg.MaxLine < 1 || cfg.MaxInFlight < 1 || cfg.ChunkLines < 1 {
		return nil, errors.New("listener: ingest limits must be positive")
	}
	if cfg.MaxBuffered < 2*chunkBytes {
		return nil, fmt.Errorf("listener: the buffered-bytes bound must be at least %d", 2*chunkBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Ingest{cfg: cfg, log: cfg.Logger, sem: make(chan struct{}, cfg.MaxInFlight), budget: semaphore.NewWeighted(cfg.MaxBuffered), multi: make(chan struct{}, 1),
		perKey: map[string]int{}, keyRefused: map[string]uint64{},
		status: map[int]uint64{}, byKey: map[string]uint64{}, byKeyStatus: map[keyStatus]uint64{}}, nil
}

// Handler returns the ingest routes.
func (h *Ingest) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ingest", h.ingest)
	mux.HandleFunc("/ping", h.ping)
	return mux
}

// keyStatus is a request's outcome: its status and the key's name ("" when
// the key was not valid or not looked at).
type keyStatus struct {
	key  string
	code int
}

// KeyRequests counts the requests of one key name with one status.
type KeyRequests struct {
	Key   string `json:"key"`
	Code  int    `json:"code"`
	Count uint64 `json:"count"`
}

// IngestStats is a snapshot of the ingest counters.
type IngestStats struct {
	Requests      map[int]uint64    `json:"requests_by_status"`
	ByKey         []KeyRequests     `json:"requests_by_key"`
	BatchesByKey  map[string]uint64 `json:"batches_by_key"`
	LinesAccepted uint64            `json:"lines_accepted"`
	LinesRejected map[string]uint64 `json:"lines_rejected"`
	BytesIn       uint64            `json:"bytes_compressed"`
	BytesOut      uint64            `json:"bytes_decompressed"`
	// Buffered is the decoded bytes held now (requests being decoded and
	// batches in the pipeline) against BufferedMax; BusyRefusals counts
	// requests answered 503 for want of room.
	// RefusedByKey counts requests refused because the key had
	// MaxInFlightPerKey requests in flight.
	RefusedByKey map[string]uint64 `json:"refused_over_key_share,omitempty"`
	Buffered     int64             `json:"buffered_bytes"`
	BufferedMax  int64             `json:"buffered_bytes_max"`
	BusyRefusals uint64            `json:"busy_refusals"`
}

// Stats returns a snapshot of the counters.
func (h *Ingest) Stats() IngestStats {
	h.statusMu.Lock()
	st := IngestStats{Requests: make(map[int]uint64, len(h.status)), BatchesByKey: make(map[string]uint64, len(h.byKey))}
	for k, v := range h.status {
		st.Requests[k] = v
	}
	for k, v := range h.byKey {
		st.BatchesByKey[k] = v
	}
	for k, v := range h.byKeyStatus {
		st.ByKey = append(st.ByKey, KeyRequests{Key: k.key, Code: k.code, Count: v})
	}
	h.statusMu.Unlock()
	sort.Slice(st.ByKey, func(i, j int) bool {
		a, b := st.ByKey[i], st.ByKey[j]
		return a.Key < b.Key || (a.Key == b.Key && a.Code < b.Code)
	})
	st.LinesAccepted, st.LinesRejected = h.Accepted.Load(), h.Rejections()
	st.BytesIn, st.BytesOut = h.bytesIn.Load(), h.bytesOut.Load()
	st.Buffered, st.BufferedMax, st.BusyRefusals = h.held.Load(), h.cfg.MaxBuffered, h.busy.Load()
	h.keyMu.Lock()
	if len(h.keyRefused) > 0 {
		st.RefusedByKey = maps.Clone(h.keyRefused)
	}
	h.keyMu.Unlock()
	return st
}

func (h *Ingest) reply(w http.ResponseWriter, code int, body string) { h.replyKey(w, code, "", body) }

// replyKey answers and counts the answer under the key's name.
func (h *Ingest) replyKey(w http.ResponseWriter, code int, key, body string) {
	h.statusMu.Lock()
	h.status[code]++
	h.byKeyStatus[keyStatus{key, code}]++
	h.statusMu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// ClientLabel names the client for logs: the first X-Forwarded-For address
// (the gateway usually sits behind a load balancer), else the peer address.
// It is never used for authorisation.
func ClientLabel(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		if first = strings.TrimSpace(first); first != "" {
			return first
		}
	}
	return r.RemoteAddr
}

// every reports whether at least a second passed since *last (and moves it),
// to rate-limit repetitive log lines.
func every(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(time.Second) && last.CompareAndSwap(prev, now)
}

func (h *Ingest) auth(w http.ResponseWriter, r *http.Request) (string, bool) {
	name, ok := h.cfg.Lookup(strings.TrimSpace(r.Header.Get("X-Polymur-Key")))
	if !ok {
		if every(&h.lastAuthLog) {
			h.log.Warn("invalid API key", "client", ClientLabel(r), "path", r.URL.Path)
		}
		h.reply(w, http.StatusUnauthorized, "invalid key")
	}
	return name, ok
}

func (h *Ingest) ping(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodHead:
	default:
		w.Header().Set("Allow", "GET, POST, HEAD")
		h.reply(w, http.StatusMethodNotAllowed, "method not allowed\n")
		return
	}
	if name, ok := h.auth(w, r); ok {
		h.log.Info("key is valid", "client", ClientLabel(r), "key", name)
		h.replyKey(w, http.StatusOK, name, "key is valid\n")
	}
}

func (h *Ingest) ingest(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		h.reply(w, http.StatusMethodNotAllowed, "method not allowed: POST gzip batches\n")
		return
	}
	name, ok := h.auth(w, r)
	if !ok {
		return
	}
	encoding := "gzip"
	switch strings.ToLower(r.Header.Get("Content-Encoding")) {
	case "", "gzip", "x-gzip": // the original proxy sends no Content-Encoding
	case "zstd":
		encoding = "zstd"
	default:
		h.replyKey(w, http.StatusUnsupportedMediaType, name, "body must be gzip or zstd\n")
		return
	}
	if !h.enter(name) {
		h.replyKey(w, http.StatusServiceUnavailable, name, "too many requests in flight for this key, retry\n")
		return
	}
	defer h.leave(name)
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		h.replyKey(w, http.StatusServiceUnavailable, name, "too many requests in flight, retry\n")
		return
	}
	pace := h.minRate(w)
	bs, counts, n, code, msg := h.decode(r.Context(), w, r, name, encoding, pace)
	if code != http.StatusOK {
		if code != http.StatusServiceUnavailable && every(&h.lastBadLog) {
			h.log.Warn("batch refused", "client", ClientLabel(r), "key", name, "status", code, "reason", strings.TrimSpace(msg))
		}
		h.replyKey(w, code, name, msg)
		return
	}
	// The wait for room in the pipeline is QueueWait from here.
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.QueueWait)
	defer cancel()
	for i, b := range bs {
		sctx := ctx
		if i > 0 {
			// Once part of a request is in the pipeline the rest must
			// follow (a 503 now would make the proxy send the part twice).
			sctx = r.Context()
		}
		if err := h.cfg.Send(sctx, b); err != nil { // policy: block up to QueueWait, then 503
			for _, rest := range bs[i:] {
				rest.Release()
			}
			if i > 0 {
				h.log.Error("request cut short by shutdown after part of it was forwarded", "client", ClientLabel(r), "key", name, "batches", i, "of", len(bs))
			}
			h.replyKey(w, http.StatusServiceUnavailable, name, "pipeline full, retry\n")
			return
		}
	}
	accepted := counts.Accepted // fold zeroes counts
	h.fold(counts)
	h.bytesIn.Add(uint64(n.in))
	h.bytesOut.Add(uint64(n.out))
	h.statusMu.Lock()
	h.byKey[name]++
	h.statusMu.Unlock()
	h.log.Debug("batch received", "client", ClientLabel(r), "key", name, "n", accepted, "batches", len(bs))
	h.replyKey(w, http.StatusOK, name, "Batch Received\n")
}

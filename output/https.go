// Package output is polymur-proxy's way out: it gathers the listener's
// batches into larger ones, gzips them and POSTs them to polymur-gateway's
// /ingest with the API key, from several workers over kept-alive
// connections. A batch stays queued until the gateway accepts it: transport
// errors, timeouts, 5xx and 503 are retried with capped exponential backoff
// and jitter, 401 slowly (keys get fixed). Only a full queue while the
// gateway is failing drops points, and counts them.
package output

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"golang.org/x/time/rate"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/spool"
)

// Config configures an Output. Zero values take the defaults.
type Config struct {
	Gateway string // base URL, e.g. https://gw.example.com
	APIKey  string
	Workers int // concurrent POSTs; default 3
	// QueueCap is the number of listener batches (≤100 lines each) held while
	// the gateway is slow or away; default 32768.
	QueueCap int
	// QueueBytes bounds the same queue in bytes (batch.Footprint): the
	// queue is full when either bound is reached. 0: 32 MiB.
	QueueBytes    int64
	BatchSize     int           // lines per POST; default 5000
	FlushInterval time.Duration // a partial batch waits at most this; default 1s

	CAFile             string // PEM CA added to the system roots
	ClientCert         string // optional client certificate (mTLS)
	ClientKey          string
	InsecureSkipVerify bool // tests only; not exposed as a flag

	Timeout    time.Duration // one POST, end to end; default 30s
	RetryMin   time.Duration // first retry delay; default 100ms
	RetryMax   time.Duration // retry backoff cap; default 30s
	AuthRetry  time.Duration // delay after a 401; default 30s
	GzipLevel  int           // default gzip.BestSpeed
	Encoding   string        // gzip (default) or zstd: the bodies' Content-Encoding
	DrainGrace time.Duration // delivery time after shutdown starts; default 10s

	// SpoolDir, when set, keeps batches the gateway has not accepted on disk:
	// what does not fit the queue while the gateway is failing, and what is
	// undelivered at shutdown; they are sent when the gateway answers again,
	// also after a restart.
	SpoolDir      string
	SpoolMaxBytes int64 // default 1 GiB
	// SpoolFsync is how often the spool is fsynced; 0 after every write,
	// <0 never.
	SpoolFsync time.Duration
	// SpoolAlways is the write-ahead mode: Send puts every batch in the
	// spool before it returns and the workers send from there.
	SpoolAlways bool

	// ObservePost, when set, is told how long each successful POST took.
	ObservePost func(time.Duration)
	Logger      *slog.Logger
}

// Drop reasons.
const (
	DropQueueFull  = "queue_full_gateway_failing"
	DropRejected   = "rejected_by_gateway"
	DropShutdown   = "shutdown"
	DropSpoolFull  = "spool_full"
	DropSpoolError = "spool_write_error"
)

// Output sends batches to the gateway. Send is safe for concurrent use.
type Output struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	ingest string
	pingU  string

	in        chan *batch.Batch // listener batches; bounded by QueueCap
	gate      *batch.Gate       // and by QueueBytes
	posts     chan *batch.Batch // gathered batches waiting for a worker
	inClosed  chan struct{}
	closeOnce sync.Once
	draining  chan struct{} // closed when shutdown starts

	sp       *spool.Spool
	lock     *spool.Lock
	spoolLog rate.Sometimes
	spoolErr atomic.Uint64
	spooled  atomic.Uint64
	replayed atomic.Uint64
	failing  atomic.Bool // the last POST attempt failed
	received atomic.Uint64
	sent     atomic.Uint64
	batches  atomic.Uint64
	retries  atomic.Uint64
	rawBytes atomic.Uint64
	gzBytes  atomic.Uint64
	dropMu   sync.Mutex
	drops    map[string]uint64
}

// New validates cfg and builds the HTTP client. It starts nothing.
func New(cfg Config) (*Output, error) {
	if cfg.Gateway == "" {
		return nil, errors.New("gateway URL is required")
	}
	if !strings.HasPrefix(cfg.Gateway, "https://") && !strings.HasPrefix(cfg.Gateway, "http://") {
		return nil, fmt.Errorf("gateway %q: want http:// or https:// URL", cfg.Gateway)
	}
	cfg.Workers = cmp.Or(cfg.Workers, 3)
	cfg.QueueCap = cmp.Or(cfg.QueueCap, 32768)
	cfg.QueueBytes = cmp.Or(cfg.QueueBytes, 32<<20)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 5000)
	cfg.GzipLevel = cmp.Or(cfg.GzipLevel, gzip.BestSpeed)
	cfg.Encoding = cmp.Or(cfg.Encoding, "gzip")
	if err := CheckEncoding(cfg.Encoding); err != nil {
		return nil, err
	}
	cfg.FlushInterval = cmp.Or(cfg.FlushInterval, time.Second)
	cfg.Timeout = cmp.Or(cfg.Timeout, 30*time.Second)
	cfg.RetryMin = cmp.Or(cfg.RetryMin, 100*time.Millisecond)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, 30*time.Second)
	cfg.AuthRetry = cmp.Or(cfg.AuthRetry, 30*time.Second)
	cfg.DrainGrace = cmp.Or(cfg.DrainGrace, 10*time.Second)
	if cfg.SpoolMaxBytes == 0 {
		cfg.SpoolMaxBytes = 1 << 30
	}
	if cfg.SpoolAlways && cfg.SpoolDir == "" {
		return nil, errors.New("the write-ahead spool mode needs a spool directory")
	}
	if cfg.Workers < 1 || cfg.QueueCap < 1 || cfg.BatchSize < 1 || cfg.FlushInterval < 0 {
		return nil, errors.New("workers, queue capacity and batch size must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tlsConf, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   cfg.Workers + 1,
		ForceAttemptHTTP2:     true,
	}
	base := strings.TrimRight(cfg.Gateway, "/")
	var sp *spool.Spool
	var lock *spool.Lock
	if cfg.SpoolDir != "" {
		if lock, err = spool.LockDir(cfg.SpoolDir); err != nil {
			return nil, fmt.Errorf("-spool-dir: %w", err)
		}
		if sp, err = spool.Open(cfg.SpoolDir, "gateway", spool.Options{MaxBytes: cfg.SpoolMaxBytes, Fsync: cfg.SpoolFsync, Logger: cfg.Logger}); err != nil {
			lock.Unlock()
			return nil, fmt.Errorf("-spool-dir: %w", err)
		}
	}
	return &Output{
		sp: sp, lock: lock, spoolLog: rate.Sometimes{Interval: 5 * time.Second},
		cfg: cfg, log: cfg.Logger,
		// Redirects are never followed: a 307 would hand the API key and
		// the batch to another host, a 301 would turn the POST into a GET.
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		ingest:   base + "/ingest",
		pingU:    base + "/ping",
		in:       make(chan *batch.Batch, cfg.QueueCap),
		gate:     batch.NewGate(cfg.QueueBytes),
		posts:    make(chan *batch.Batch, cfg.Workers),
		inClosed: make(chan struct{}),
		draining: make(chan struct{}),
		drops:    map[string]uint64{},
	}, nil
}

// keep spools b (when there is a spool) or counts it as dropped for
// reason. The caller still owns b.
func (o *Output) keep(b *batch.Batch, reason string) {
	if o.sp != nil {
		err := o.sp.Put(b)
		if err == nil {
			o.spooled.Add(uint64(b.Len()))
			return
		}
		if errors.Is(err, spool.ErrFull) {
			reason = DropSpoolFull
		} else {
			reason = DropSpoolError
			n := o.spoolErr.Add(1)
			o.spoolLog.Do(func() { o.log.Error("spool write failed", "err", err, "failures_so_far", n) })
		}
	}
	o.drop(reason, b.Len())
}

func (o *Output) drop(reason string, n int) {
	if n == 0 {
		return
	}
	o.dropMu.Lock()
	o.drops[reason] += uint64(n)
	o.dropMu.Unlock()
}

// Send queues a listener batch and takes ownership of it. While the gateway
// answers, a full queue makes Send wait (policy: block, backpressure); while
// the gateway is failing and the queue is full, the batch is dropped and
// counted (policy: drop-and-count). It fails only when ctx ends.
func (o *Output) Send(ctx context.Context, b *batch.Batch) error {
	n := b.Len()
	if n == 0 {
		b.Release()
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for o.cfg.SpoolAlways {
		// Write-ahead: in the spool before Send returns; the workers send
		// from there.
		err := o.sp.Put(b)
		if err == nil {
			o.spooled.Add(uint64(n))
			o.received.Add(uint64(n))
			b.Release()
			return nil
		}
		if !errors.Is(err, spool.ErrFull) {
			// The disk refused: this batch goes through memory (not durable).
			c := o.spoolErr.Add(1)
			o.spoolLog.Do(func() { o.log.Error("spool write failed; batch kept in memory only", "err", err, "failures_so_far", c) })
			break
		}
		if o.failing.Load() {
			o.drop(DropSpoolFull, n) // policy: drop-and-count (gateway failing, spool full)
			b.Release()
			return nil
		}
		select {
		case <-tick.C: // policy: block (spool full, gateway healthy)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fp, took := b.Footprint(), int64(0)
	for {
		// Room in both bounds: the batch count and the bytes.
		var in chan *batch.Batch
		if took == 0 {
			took, _ = o.gate.TryAcquire(fp)
		}
		if took > 0 {
			in = o.in
			select {
			case o.in <- b:
				o.received.Add(uint64(n))
				return nil
			default:
			}
		}
		if o.failing.Load() {
			o.gate.Release(took)
			o.keep(b, DropQueueFull) // policy: spool, else drop-and-count
			b.Release()
			return nil
		}
		var opened <-chan struct{}
		if took == 0 {
			opened = o.gate.Opened()
		}
		select {
		case in <- b: // policy: block while the gateway is healthy
			o.received.Add(uint64(n))
			return nil
		case <-opened:
		case <-tick.C:
		case <-ctx.Done():
			o.gate.Release(took)
			return ctx.Err()
		}
	}
}

// taken is b leaving the queue: its bytes go back to the bound.
func (o *Output) taken(b *batch.Batch) *batch.Batch {
	o.gate.Release(min(b.Footprint(), o.gate.Max()))
	return b
}

// CloseInput tells the output every producer has returned.
func (o *Output) CloseInput() { o.closeOnce.Do(func() { close(o.inClosed) }) }

// Run pings the gateway (retrying in the background), gathers and sends
// batches until the input is closed and everything queued is delivered, or
// DrainGrace after ctx ended; what is left then is counted and logged.
func (o *Output) Run(ctx context.Context) error {
	hard, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		close(o.draining)
		t := time.NewTimer(o.cfg.DrainGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-hard.Done():
		}
	})
	wg.Go(func() { o.pingLoop(ctx) })
	var workers sync.WaitGroup
	for i := range o.cfg.Workers {
		workers.Go(func() { o.worker(hard, i) })
	}
	o.gather(hard)
	close(o.posts)
	workers.Wait()
	left := 0
	for {
		select {
		case b := <-o.in:
			o.taken(b)
			left += b.Len()
			o.keep(b, DropShutdown)
			b.Release()
			continue
		default:
		}
		break
	}
	if left > 0 {
		o.log.Error("points not delivered before shutdown", "n", left, "spooled", o.sp != nil)
	}
	cancel()
	wg.Wait()
	if o.sp != nil {
		if err := o.sp.Close(); err != nil {
			o.log.Error("closing spool", "err", err)
		}
		o.lock.Unlock()
	}
	return nil
}

// gather turns listener batches into POST-sized ones: full at BatchSize
// lines, or after FlushInterval for a partial one.
func (o *Output) gather(ctx context.Context) {
	cur := batch.Get()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	flush := func() bool {
		if cur.Len() == 0 {
			return true
		}
		select {
		case o.posts <- cur: // policy: block (workers retry until accepted)
			cur = batch.Get()
			return true
		case <-ctx.Done():
			o.log.Error("points not delivered before shutdown", "n", cur.Len(), "spooled", o.sp != nil)
			o.keep(cur, DropShutdown)
			cur.Release()
			cur = batch.Get()
			return false
		}
	}
	add := func(b *batch.Batch) {
		wasEmpty := cur.Len() == 0
		if done := b.Done; done != nil {
			// A replayed record is acknowledged when the POST batch holding
			// its lines is (or one after it, never before).
			b.Done = nil
			defer func() { chainDone(cur, done) }()
		}
		for i := range b.Lines {
			cur.AppendLine(b, i)
			if cur.Len() >= o.cfg.BatchSize {
				flush()
			}
		}
		b.Release()
		if wasEmpty && cur.Len() > 0 {
			timer.Reset(o.cfg.FlushInterval)
		}
	}
	defer func() { cur.Release() }()
	for {
		// Spooled batches go out oldest first, beside new ones; while the
		// gateway is away they wait in the workers' retries.
		var replay <-chan spool.Record
		if o.sp != nil {
			replay = o.sp.Chan()
		}
		select {
		case b := <-o.in:
			add(o.taken(b))
		case rec := <-replay:
			b := o.sp.Batch(rec)
			o.replayed.Add(uint64(b.Len()))
			add(b)
		case <-timer.C:
			flush()
		case <-o.inClosed:
			for {
				select {
				case b := <-o.in:
					add(o.taken(b))
					continue
				default:
				}
				break
			}
			flush()
			return
		case <-ctx.Done():
			flush()
			return
		}
	}
}

func (o *Output) isDraining() bool {
	select {
	case <-o.draining:
		return true
	default:
		return false
	}
}

// chainDone adds done to what b calls when it is released.
func chainDone(b *batch.Batch, done func()) {
	if prev := b.Done; prev != nil {
		b.Done = func() { prev(); done() }
		return
	}
	b.Done = done
}

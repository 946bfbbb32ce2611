// Package listener is the intake of polymur's data flow: the Graphite
// plaintext TCP listener of polymur and polymur-proxy, and the HTTPS batch
// ingest of polymur-gateway. Both validate lines with package batch and hand
// batches to a Send func that the daemon wires to its next stage.
package listener

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/decode"
)

// SendFunc takes ownership of a batch, blocking while the next stage is full.
// It fails only when ctx ends; the caller then still owns the batch.
type SendFunc func(ctx context.Context, b *batch.Batch) error

// TCPConfig configures a TCP listener. Zero values take the defaults.
type TCPConfig struct {
	Addr string
	// Unix, when set, listens on this unix socket path instead of Addr; a
	// stale socket file (nobody listening) is replaced, and the file gets
	// UnixMode (default 0660).
	Unix      string
	UnixMode  os.FileMode
	Level     batch.Level
	MaxLine   int // bytes, excluding '\n'; default 16384
	BatchSize int // lines per batch; default 100
	// DrainTimeout bounds the final hand-over of lines read before shutdown.
	DrainTimeout time.Duration // default 10s
	// SummaryInterval is how often rejected lines are summarised in the log.
	SummaryInterval time.Duration // default 5s; <0 disables
	// IdleTimeout closes a connection that sent nothing for this long
	// (carbon-c-relay: 10 minutes); 0 never.
	IdleTimeout time.Duration
	// MaxConns refuses (accepts and closes at once) connections beyond
	// this many open; 0 is no limit.
	MaxConns int
	// Pickle makes it a carbon pickle listener (port 2004): frames are
	// decoded into lines, which are validated like plaintext. A frame that
	// cannot be decoded, or is larger than MaxPickleFrame (default
	// decode.DefaultMaxFrame), is counted by reason and closes the
	// connection.
	Pickle         bool
	MaxPickleFrame int
	// Rejects, when set, keeps the last rejected lines (by reason, with
	// the client's address).
	Rejects *batch.RejectLog
	// TagNormalize sends tagged names normalised (carbon's
	// TAG_RELAY_NORMALIZED: tags sorted, so every spelling is one series).
	TagNormalize bool
	// Transport decompresses every connection's stream: "" or plain,
	// gzip, lz4, snappy (carbon-c-relay's formats, package decode); bad
	// data is counted by reason and closes the connection.
	Transport string
	// TLS, when set, makes connections TLS (certificates, client
	// verification for mTLS): a handshake that fails or takes over 10 s
	// closes the connection and is counted (tls_handshake_failed).
	TLS  *tls.Config
	Send SendFunc
	// NewSend, when set, gives a connection that is not the only one its
	// own send (and a stop for when it ends) instead of Send: a sender
	// that places lines itself, with no hand-over to another goroutine.
	// (A lone connection keeps Send: handing over lets reading and placing
	// run side by side.)
	NewSend func() (SendFunc, func())
	// Window coalesces trickling connections: after a read of fewer than
	// batch.Trickle bytes the connection waits for the window's next tick
	// before reading again, so one wake-up takes what arrived meanwhile.
	// A full read never waits. Nil: read at once.
	Window *batch.Window
	Logger *slog.Logger
}

// TCPStats is a snapshot of a TCP listener's counters.
type TCPStats struct {
	Addr        string            `json:"addr"`
	Accepted    uint64            `json:"lines_accepted"`
	Rejected    map[string]uint64 `json:"lines_rejected"`
	Lost        uint64            `json:"lines_lost"`
	Connections int64             `json:"connections_open"`
	ConnsTotal  uint64            `json:"connections_total"`
	IdleClosed  uint64            `json:"connections_closed_idle"`
	Refused     uint64            `json:"connections_refused_max"`
}

// TCP is a Graphite plaintext listener: one goroutine per connection reads
// with a large buffer, splits and validates lines in place, and hands a
// batch on after every read (so a line never waits for a timer).
type TCP struct {
	cfg TCPConfig
	ln  net.Listener
	log *slog.Logger

	Counters
	open    atomic.Int64
	total   atomic.Uint64
	idle    atomic.Uint64
	refused atomic.Uint64
	lastRef atomic.Int64 // last refusal logged (unix nanoseconds)
	tlsLog  rate.Sometimes
}

// NewTCP validates cfg and binds the listening socket.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	if cfg.Send == nil {
		return nil, errors.New("listener: Send is required")
	}
	if cfg.MaxLine == 0 {
		cfg.MaxLine = 16384
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 100
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.SummaryInterval == 0 {
		cfg.SummaryInterval = 5 * time.Second
	}
	if cfg.MaxLine < 1 || cfg.BatchSize < 1 {
		return nil, errors.New("listener: MaxLine and BatchSize must be positive")
	}
	if cfg.Transport != "" && !decode.ValidTransport(cfg.Transport) {
		return nil, fmt.Errorf("listener: unknown transport %q", cfg.Transport)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var ln net.Listener
	var err error
	if cfg.Unix != "" {
		ln, err = listenUnix(cfg.Unix, cmp.Or(cfg.UnixMode, 0o660))
	} else {
		ln, err = net.Listen("tcp", cfg.Addr)
	}
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	return &TCP{cfg: cfg, ln: ln, log: cfg.Logger, tlsLog: rate.Sometimes{Interval: 5 * time.Second}}, nil
}

// listenUnix binds a unix stream socket at path with mode. A socket file
// left by a process that is gone is replaced; one that answers, or any
// other file, is an error.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process listens there", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Addr returns the bound address.
func (t *TCP) Addr() net.Addr { return t.ln.Addr() }

// Close releases the socket of a listener that will not Run.
func (t *TCP) Close() error { return t.ln.Close() }

// Stats returns a snapshot of the counters.
func (t *TCP) Stats() TCPStats {
	return TCPStats{
		Addr:        t.ln.Addr().String(),
		Accepted:    t.Accepted.Load(),
		Rejected:    t.Rejections(),
		Lost:        t.Lost.Load(),
		Connections: t.open.Load(),
		ConnsTotal:  t.total.Load(),
		IdleClosed:  t.idle.Load(),
		Refused:     t.refused.Load(),
	}
}

// Run accepts connections until ctx ends, then stops accepting, reads what
// clients already sent (briefly), hands it on and returns nil once every
// connection is done.
func (t *TCP) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { t.ln.Close() })
	defer stop()
	if t.cfg.SummaryInterval > 0 {
		wg.Go(func() { summarise(ctx, t.log, &t.Counters, t.cfg.SummaryInterval) })
	}
	t.log.Info("metrics listener started", "addr", t.ln.Addr().String())
	var err error
	for {
		conn, aerr := t.ln.Accept()
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(aerr, &ne) && ne.Timeout() || errors.Is(aerr, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(aerr, net.ErrClosed) {
				err = aerr
				break
			}
			// Typically EMFILE: back off briefly instead of spinning.
			t.log.Error("accept failed", "err", aerr)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		if t.cfg.MaxConns > 0 && t.open.Load() >= int64(t.cfg.MaxConns) {
			conn.Close()
			t.refused.Add(1)
			if every(&t.lastRef) {
				t.log.Warn("connection refused: -max-connections reached", "max", t.cfg.MaxConns, "refused_so_far", t.refused.Load())
			}
			continue
		}
		t.open.Add(1)
		t.total.Add(1)
		wg.Go(func() {
			defer t.open.Add(-1)
			t.serve(ctx, conn)
		})
	}
	t.ln.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (t *TCP) serve(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	if tc, ok := conn.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			t.reject("tls_handshake_failed", 1)
			t.tlsLog.Do(func() { t.log.Warn("TLS handshake failed", "client", conn.RemoteAddr().String(), "err", err) })
			return
		}
	}
	sp := batch.NewSplitter(t.cfg.Level, t.cfg.MaxLine)
	sp.SetNormalizeTags(t.cfg.TagNormalize)
	defer sp.Release()
	var closing atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		closing.Store(true)
		conn.SetReadDeadline(time.Now())
	})
	defer stop()

	src, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
	sp.OnReject = onReject(t.cfg.Rejects, t.log, src)
	sendTo := t.cfg.Send
	if t.cfg.NewSend != nil && t.open.Load() > 1 {
		var stopSend func()
		sendTo, stopSend = t.cfg.NewSend()
		defer stopSend()
	}
	b := batch.Get()
	b.Src = src
	send := func() bool {
		if b.Len() == 0 {
			return true
		}
		defer func() { b.Src = src }()
		sctx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			sctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), t.cfg.DrainTimeout)
			defer cancel()
		}
		if err := sendTo(sctx, b); err != nil {
			t.Lost.Add(uint64(b.Len()))
			t.log.Error("lines read but not handed on before shutdown", "n", b.Len(), "err", err)
			b.Release()
			b = batch.Get()
			return false
		}
		b = batch.Get()
		return true
	}
	defer func() { b.Release() }()

	var in io.Reader = conn
	if tr := t.cfg.Transport; tr != "" && tr != decode.Plain {
		in, _ = decode.NewDecoder(tr, conn, 4*t.cfg.MaxLine*t.cfg.BatchSize+1<<20)
	}
	if t.cfg.Pickle {
		pr := decode.NewPickleReader(in, t.cfg.MaxPickleFrame)
		defer func() { t.reject(decode.ReasonBadPoint, pr.BadPoint) }()
		in = pr
	}
	lastChance := false
	var armed time.Time // when the idle deadline was last pushed out
	var tr *trickler    // plain connections: read on the window's ticks while trickling
	if t.cfg.Window != nil && in == io.Reader(conn) && t.cfg.TLS == nil {
		tr = newTrickler(conn)
	}
	for {
		if t.cfg.IdleTimeout > 0 && !closing.Load() {
			// Pushed out once a second at most, not per read: a timer
			// change per small read is a measurable part of its cost. The
			// deadline is thus between IdleTimeout and a second more.
			if now := time.Now(); now.Sub(armed) >= time.Second {
				armed = now
				conn.SetReadDeadline(now.Add(t.cfg.IdleTimeout + time.Second))
			}
		}
		from := in
		if tr != nil && tr.on {
			from = tr
		}
		n, err := sp.Fill(from)
		if n > 0 {
			for sp.Next(b, t.cfg.BatchSize) {
				send()
			}
			send()
			t.fold(&sp.Counts)
		}
		if tr != nil && tr.on && (err != nil || n >= batch.Trickle || closing.Load()) {
			tr.set(false) // busy, idle or closing: ordinary reads
			if err == errWouldBlock {
				continue // nothing this tick: wait in a read for the next line
			}
		}
		if err == nil {
			if n < batch.Trickle && t.cfg.Window != nil && !closing.Load() {
				if tr != nil {
					tr.set(true)
				}
				select { // trickling: let more gather in the socket
				case <-t.cfg.Window.Wait():
				case <-ctx.Done():
				}
			}
			continue
		}
		if de := (*decode.Error)(nil); errors.As(err, &de) {
			t.reject(de.Reason, 1)
			t.log.Warn("closing a connection: data that does not decode", "client", conn.RemoteAddr().String(), "reason", de.Reason, "err", err)
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) && t.cfg.Pickle {
			t.reject("pickle_truncated", 1) // the client left in the middle of a frame
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !closing.Load() {
			t.idle.Add(1) // idle for IdleTimeout: closed (the partial line below is dropped)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && closing.Load() && !lastChance {
			// Shutting down: take what the client already sent, briefly.
			lastChance = true
			conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			continue
		}
		sp.Abandon() // a partial last line is not a point (carbon drops it too)
		break
	}
	send()
	t.fold(&sp.Counts)
}

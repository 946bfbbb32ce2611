package listener

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/polymur/polymur/batch"
)

// UDPConfig configures a datagram listener (statsd mode). Zero values take
// the defaults.
type UDPConfig struct {
	Addr      string
	Level     batch.Level // batch.LevelStatsd for statsd lines
	MaxLine   int         // bytes; default 16384
	BatchSize int         // lines per batch; default 100
	// FlushInterval is the longest a line waits for more datagrams before
	// its batch is handed on; default 2ms.
	FlushInterval time.Duration
	// ReadBuffer is the socket receive buffer asked of the kernel; default
	// 8 MiB (the kernel may cap it: net.core.rmem_max).
	ReadBuffer      int
	SummaryInterval time.Duration // rejected-line log summary; default 5s; <0 disables
	Send            SendFunc
	Logger          *slog.Logger
}

// UDPStats is a snapshot of a datagram listener's counters.
type UDPStats struct {
	Addr      string            `json:"addr"`
	Packets   uint64            `json:"packets_received"`
	Bytes     uint64            `json:"bytes_received"`
	Accepted  uint64            `json:"lines_accepted"`
	Rejected  map[string]uint64 `json:"lines_rejected"`
	Lost      uint64            `json:"lines_lost"`
	ReadError uint64            `json:"read_errors"`
}

// UDP reads datagrams of newline-separated lines, validates each line and
// hands batches on when they hold BatchSize lines or when no datagram came
// for FlushInterval. One reader goroutine; the kernel's receive buffer
// absorbs bursts.
type UDP struct {
	cfg  UDPConfig
	conn *net.UDPConn
	log  *slog.Logger

	Counters
	packets, bytes, readErrs atomic.Uint64
}

// NewUDP validates cfg and binds the socket.
func NewUDP(cfg UDPConfig) (*UDP, error) {
	if cfg.Send == nil {
		return nil, errors.New("listener: Send is required")
	}
	if cfg.MaxLine == 0 {
		cfg.MaxLine = 16384
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 100
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 2 * time.Millisecond
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = 8 << 20
	}
	if cfg.SummaryInterval == 0 {
		cfg.SummaryInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	addr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(cfg.ReadBuffer)
	return &UDP{cfg: cfg, conn: conn, log: cfg.Logger}, nil
}

// Addr returns the bound address.
func (u *UDP) Addr() net.Addr { return u.conn.LocalAddr() }

// Close releases the socket of a listener that will not Run.
func (u *UDP) Close() error { return u.conn.Close() }

// Packets is the number of datagrams received.
func (u *UDP) Packets() uint64 { return u.packets.Load() }

// Stats returns a snapshot of the counters.
func (u *UDP) Stats() UDPStats {
	return UDPStats{Addr: u.conn.LocalAddr().String(), Packets: u.packets.Load(), Bytes: u.bytes.Load(),
		Accepted: u.Accepted.Load(), Rejected: u.Rejections(), Lost: u.Lost.Load(), ReadError: u.readErrs.Load()}
}

// Run reads until ctx ends, then hands on what it holds (bounded by
// FlushInterval-sized waits for the next stage) and returns nil.
func (u *UDP) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if u.cfg.SummaryInterval > 0 {
		wg.Go(func() { summarise(ctx, u.log, &u.Counters, u.cfg.SummaryInterval) })
	}
	stop := context.AfterFunc(ctx, func() { u.conn.SetReadDeadline(time.Now()) })
	defer stop()
	defer u.conn.Close()
	u.log.Info("statsd UDP listener started", "addr", u.conn.LocalAddr().String())

	split := batch.NewSplitter(u.cfg.Level, u.cfg.MaxLine)
	defer split.Release()
	out := batch.Get()
	flush := func(sendCtx context.Context) {
		u.fold(&split.Counts)
		if out.Len() == 0 {
			return
		}
		if err := u.cfg.Send(sendCtx, out); err != nil {
			u.Lost.Add(uint64(out.Len()))
			out.Release()
		}
		out = batch.Get()
	}
	buf := make([]byte, 65536)
	waiting := false // a partial batch is waiting for more datagrams
	for {
		if out.Len() > 0 && !waiting {
			u.conn.SetReadDeadline(time.Now().Add(u.cfg.FlushInterval))
			waiting = true
		}
		n, err := u.conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				flush(ctx)
				u.conn.SetReadDeadline(time.Time{})
				waiting = false
				continue
			}
			if u.readErrs.Add(1) == 1 {
				u.log.Warn("statsd UDP read failed", "err", err)
			}
			continue
		}
		u.packets.Add(1)
		u.bytes.Add(uint64(n))
		for data := buf[:n]; len(data) > 0; {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			if len(line) == 0 {
				continue // a trailing or doubled newline is not a metric
			}
			split.AddLine(out, line)
		}
		if out.Len() >= u.cfg.BatchSize || len(out.Buf) >= 60<<10 {
			flush(ctx)
			if waiting {
				u.conn.SetReadDeadline(time.Time{})
				waiting = false
			}
		}
	}
	// Shutdown: what was read goes on, within a short bound.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	flush(dctx)
	cancel()
	out.Release()
	return nil
}

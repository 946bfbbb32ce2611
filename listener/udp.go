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

// UDPConfig configures a datagram listener (statsd mode, and Graphite
// plaintext over UDP). Zero values take the defaults.
type UDPConfig struct {
	Name      string // in logs: "statsd UDP" or "UDP"; default "UDP"
	Addr      string
	Level     batch.Level // batch.LevelStatsd for statsd lines
	MaxLine   int         // bytes; default 16384
	BatchSize int         // lines per batch; default 100
	// FlushInterval is how often a busy listener collects what arrived (so
	// about the longest a line waits before it is handed on); default 2ms.
	FlushInterval time.Duration
	// ReadBuffer is the socket receive buffer asked of the kernel; default
	// 8 MiB (the kernel may cap it: net.core.rmem_max).
	ReadBuffer      int
	SummaryInterval time.Duration    // rejected-line log summary; default 5s; <0 disables
	TagNormalize    bool             // as TCPConfig's
	Rejects         *batch.RejectLog // as TCPConfig's (the client is "udp")
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
	// KernelDrops are datagrams the kernel dropped because the receive
	// buffer was full (/proc/net/udp; Linux): UDP loss made visible.
	KernelDrops uint64 `json:"kernel_drops"`
}

// UDP reads datagrams of newline-separated lines, validates each line and
// hands batches on. One reader goroutine: while datagrams keep coming it
// wakes every FlushInterval and takes all that queued in the kernel's
// receive buffer at once, then hands them on; when traffic stops it blocks
// until the next datagram. A line therefore waits at most about
// FlushInterval, and a busy listener costs one wake-up per interval instead
// of one per datagram.
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
	if cfg.Name == "" {
		cfg.Name = "UDP"
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
		Accepted: u.Accepted.Load(), Rejected: u.Rejections(), Lost: u.Lost.Load(), ReadError: u.readErrs.Load(),
		KernelDrops: u.KernelDrops()}
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
	u.log.Info(u.cfg.Name+" listener started", "addr", u.conn.LocalAddr().String(), "read_buffer", u.cfg.ReadBuffer)

	split := batch.NewSplitter(u.cfg.Level, u.cfg.MaxLine)
	split.SetNormalizeTags(u.cfg.TagNormalize)
	split.OnReject = onReject(u.cfg.Rejects, u.log, "udp")
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
	raw, err := u.conn.SyscallConn()
	if err != nil {
		return err
	}
	handle := func(n int) {
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
		}
	}
	// drain reads every datagram already queued, without waiting.
	drain := func() (got int) {
		for ctx.Err() == nil {
			n, empty, rerr := readQueued(raw, u.conn, buf)
			if empty || rerr != nil { // nothing more queued
				if rerr != nil && u.readErrs.Add(1) == 1 {
					u.log.Warn(u.cfg.Name+" read failed", "err", rerr)
				}
				return got
			}
			got++
			handle(n)
		}
		return got
	}
	// While datagrams keep coming, wake every FlushInterval and take all
	// that queued up (one wake-up for many datagrams: far less CPU than one
	// per datagram); when none came, block until the next one.
	for ctx.Err() == nil {
		// After a blocking read, out may hold a lone datagram: it goes on
		// now, whatever the rate (a datagram never waits for company).
		if drain() > 0 || out.Len() > 0 {
			flush(ctx)
			t := time.NewTimer(u.cfg.FlushInterval)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			continue
		}
		n, err := u.conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) && u.readErrs.Add(1) == 1 {
				u.log.Warn(u.cfg.Name+" read failed", "err", err)
			}
			continue
		}
		handle(n)
	}
	// Shutdown: what was read goes on, within a short bound.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	flush(dctx)
	cancel()
	out.Release()
	return nil
}

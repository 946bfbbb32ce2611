// Package dest is polymur's destination set: one writer per destination
// (a carbon server, or a file of a file cluster), shared by every cluster
// that names it, with its bounded queue, disk spool and reconnect state; and
// the placing of batches on them. Where a line goes is decided by the flag
// modes' built-in placement — all destinations (broadcast) or the one
// Graphite's carbon_ch ring picks (hash-route) — or, in Routed mode, by the
// Routes it is given (polymur -config: route.Table). The set is changed by
// Apply (a whole new set and table, applied by difference), PutDest and
// DelDest; a destination declared dead hands its hash-route share to the
// others through the retry queue.
//
// Queue policies: the incoming queue blocks (backpressure to the clients); a
// destination queue blocks while its destination is healthy or still being
// reconnected, and drops-and-counts only when a broadcast destination is down
// and its queue is full, or a hash-route destination is dead with no live
// destination to take its share. Nothing is dropped without a counted reason.
package dest

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/polymur/polymur/batch"
	"github.com/polymur/polymur/ring"
	"github.com/polymur/polymur/spool"
)

// Mode is the distribution method.
type Mode uint8

const (
	// Broadcast sends every line to every destination.
	Broadcast Mode = iota
	// HashRoute sends every line to the destination carbon_ch picks.
	HashRoute
	// Routed sends every line where Config.Route says (polymur -config: a
	// carbon-c-relay configuration's rules and clusters).
	Routed
)

// Placement is one destination of a routed line: the destination's name and
// the metric name to send it under ("" keeps the line as it is).
type Placement struct {
	Dest string
	// Node is the destination's index in the list given to Apply (or New)
	// with these Routes, or -1 to look it up by Dest: a table and its
	// destinations are applied together, so the index is stable.
	Node int
	Name string
	// SourceIP writes the client's address (batch.Batch.Src) and a space
	// before the line (a "file ip" cluster).
	SourceIP bool
}

// RouteFunc decides where a line goes, appending to dst. name is the
// metric name, rest what follows it (value and timestamp); up reports
// whether a destination (by its index, as Placement.Node) is in service. With no placement, why is the
// counted reason (blackhole, unrouted, invalid). It must be safe for
// concurrent use unless made by Config.NewRoute for one goroutine; the
// slices it is given are only valid during the call.
//
// via is the batch's Via (nil for lines from outside). why, when no
// placement is made, is the drop reason, or Absorbed when the line was
// taken by the relay itself (an aggregate) and is not a drop.
type RouteFunc func(dst []Placement, name, rest []byte, via any, up func(node int) bool) (_ []Placement, why string)

// Routes is a routing table for Routed mode. NewRoute makes the RouteFunc
// one placing goroutine uses (it may keep scratch space). A Routes value is
// swapped whole, together with the destinations it names (Apply).
type Routes interface{ NewRoute() RouteFunc }

// carbonRoutes is Routes that may hash names on a carbon_ch ring: the
// router then prefetches a batch's name positions before routing it.
type carbonRoutes interface{ HashesCarbon() bool }

// oneRing is Routes that may send every line, under its own name, to one
// member of one carbon_ch ring chosen by the name's position alone: to is
// each ring node's placement. The router then looks a batch's positions up
// together (ring.Positions). r is nil when the table does not route so.
type oneRing interface {
	OneRing() (r *ring.Carbon, to []Placement)
}

// ParseMode maps the -distribution flag value to a Mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "broadcast", "forward":
		return Broadcast, nil
	case "hash-route", "consistent-hashing", "carbon_ch":
		return HashRoute, nil
	}
	return 0, fmt.Errorf("unknown distribution %q (want broadcast or hash-route)", s)
}

func (m Mode) String() string {
	switch m {
	case HashRoute:
		return "hash-route"
	case Routed:
		return "config"
	}
	return "broadcast"
}

// Config configures a Set. Zero values take the documented defaults.
type Config struct {
	Mode         Mode
	Destinations []Destination
	QueueCap     int // points per destination queue; default 4096
	IncomingCap  int // batches in the incoming queue; default 32768
	// IncomingBytes bounds the memory of the batches in the incoming
	// queue (their buffers' capacity); Send blocks beyond it. 0: no bound
	// but IncomingCap.
	IncomingBytes int64
	RetryCap      int // batches in the retry queue; default 4096

	DialTimeout  time.Duration // default 3s
	WriteTimeout time.Duration // no progress for this long drops the connection; default 30s
	// Window coalesces writes: a writer woken after a quiet spell waits
	// for the window's next tick before it writes, taking every line that
	// arrived meanwhile in one write. A writer with more queued (saturated)
	// never waits. Nil: write at once.
	Window       *batch.Window
	ReconnectMin time.Duration // first reconnect delay; default 250ms
	ReconnectMax time.Duration // backoff cap; default 10s
	DeadAfter    int           // failed reconnects before hash-route re-routes; default 3
	DrainTimeout time.Duration // delivery time allowed after shutdown starts; default 10s

	StatusInterval time.Duration // queue/drop summary log period; default 5s; <0 disables

	// SpoolDir, when set, gives every destination an on-disk spool: points
	// that do not fit its memory queue go there instead of waiting or being
	// dropped, a hash-route destination keeps its ring share while down, and
	// what is undelivered at shutdown is kept for the next start.
	SpoolDir        string
	SpoolMaxBytes   int64 // per destination; default 1 GiB
	SpoolReplayRate int   // lines per second replayed per destination; default 50000
	// SpoolFsync is how often spools are fsynced (what a power loss can
	// take); 0 fsyncs every write, <0 never. Zero value: fsync every write;
	// the flags default to 1s.
	SpoolFsync time.Duration
	// SpoolAlways is the write-ahead mode (-spool-mode always): Send
	// places every batch on its destinations' spools before it returns, and
	// the writers send from the spools; a kill -9 loses nothing Send
	// accepted. Without it (overflow) the spool takes only what the memory
	// queue cannot.
	SpoolAlways bool

	// Routes decides the destinations of each line in Routed mode (Apply
	// replaces it with the destinations in one step).
	Routes Routes

	// Console, when set, receives a copy of every line (the -console-out flag).
	Console io.Writer
	// InputEnd, when set, is called once after the input closed and every
	// batch sent before was placed (the shutdown drain): what it places
	// through place (an aggregator's open buckets) is delivered with the
	// rest.
	InputEnd func(place func(*batch.Batch))
	// OnChange, when set, is told the destination list (configuration
	// order) after every PutDest and DelDest, to persist it.
	OnChange func(dests []string)
	// ObserveWrite, when set, is told how long each destination write took.
	ObserveWrite func(time.Duration)
	// Pickle makes every destination of Destinations and PutDest speak
	// carbon's pickle protocol (-destination-protocol pickle).
	Pickle bool
	// TLS, when set, is the TLS configuration of every destination of
	// Destinations and PutDest that has none of its own (-destination-tls).
	TLS *tls.Config
	// Transport is the compression of Destinations and PutDest that name
	// none (-destination-transport).
	Transport string
	// RingByAddr keys ring nodes on "host:port" instead of carbon's
	// (host, instance) text: statsd mode, where backends are told apart by
	// port and there is no carbon placement to match.
	RingByAddr bool
	// Dial opens a destination connection; default net.Dialer with
	// Resolver.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Resolver looks destination hostnames up (nil: the system's).
	Resolver *net.Resolver
	// DNSRefresh is how often hostname destinations are looked up again
	// while connected: one that now resolves elsewhere is reconnected
	// (it is looked up at every connection anyway). 0: only then.
	DNSRefresh time.Duration
	Logger     *slog.Logger
}

func (c *Config) fill() error {
	c.QueueCap = cmp.Or(c.QueueCap, 4096)
	c.IncomingCap = cmp.Or(c.IncomingCap, 32768)
	c.RetryCap = cmp.Or(c.RetryCap, 4096)
	c.DeadAfter = cmp.Or(c.DeadAfter, 3)
	c.DialTimeout = cmp.Or(c.DialTimeout, 3*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 30*time.Second)
	c.ReconnectMin = cmp.Or(c.ReconnectMin, 250*time.Millisecond)
	c.ReconnectMax = cmp.Or(c.ReconnectMax, 10*time.Second)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, 10*time.Second)
	c.StatusInterval = cmp.Or(c.StatusInterval, 5*time.Second)
	if c.SpoolMaxBytes == 0 {
		c.SpoolMaxBytes = 1 << 30
	}
	c.SpoolReplayRate = cmp.Or(c.SpoolReplayRate, 50000)
	if c.QueueCap < 1 || c.IncomingCap < 1 || c.RetryCap < 1 || c.DeadAfter < 1 {
		return errors.New("dest: queue capacities and DeadAfter must be positive")
	}
	if c.ReconnectMin > c.ReconnectMax {
		return errors.New("dest: ReconnectMin exceeds ReconnectMax")
	}
	if len(c.Destinations) > 65535 {
		return errors.New("dest: too many destinations")
	}
	if c.Mode == Routed && c.Routes == nil {
		return errors.New("dest: routed mode needs Routes")
	}
	if c.SpoolAlways && c.SpoolDir == "" {
		return errors.New("dest: the write-ahead spool mode needs a spool directory")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Dial == nil {
		r := c.Resolver
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{Resolver: r}
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	return nil
}

// Drop reasons, as they appear in stats.
const (
	DropDestDown      = "dest_down_queue_full" // destination down and its queue full
	DropNoDestination = "no_destinations"      // nothing registered to send to
	DropRemoved       = "dest_removed"         // deldest while points were still queued
	DropShutdown      = "shutdown"             // not delivered within the drain timeout
	DropSpoolFull     = "spool_full"           // destination down, queue and spool full
	DropSpoolError    = "spool_write_error"    // destination down, queue full, the spool's disk refused the write
	DropUnrouted      = "unrouted"             // routed: no rule matched
	// Absorbed is a RouteFunc's "why" for a line that went nowhere because
	// the relay took it (it fed an aggregate): not a drop.
	Absorbed          = "absorbed"
	DropNotPickleable = "not_pickleable" // a pickle destination's line whose value or timestamp is not a number
)

// Set is the destination set: one writer per destination, and the placing of batches on them. Its methods are safe for
// concurrent use; Send blocks when the incoming queue is full.
type Set struct {
	cfg Config
	log *slog.Logger

	in        chan *batch.Batch
	inBytes   *batch.Gate // IncomingBytes; nil for none
	inClosed  chan struct{}
	closeOnce sync.Once
	retry     chan *batch.Batch
	console   *queue

	mu      sync.Mutex    // serialises destination changes
	removed []RemovedDest // the last few deldests, newest last (under mu)
	view    atomic.Pointer[view]
	older   []*view // replaced views that may still be in use (under mu)
	started atomic.Bool
	runCtx  context.Context // hard-stop context of Run, for writers added later
	writers sync.WaitGroup

	stop     chan struct{} // closed when everything is delivered after shutdown
	inflight atomic.Int64  // points in the retry queue or being re-placed
	draining atomic.Bool   // the input is closed: settle queues
	lock     *spool.Lock   // the spool directory's, held from New to the end of Run
	routers  sync.Pool     // of *router, for Send in write-ahead mode
	// drainCtx is cancelled when shutdown starts; drainAt is then the hard
	// stop (unix nanoseconds), which every destination write must meet.
	drainCtx   context.Context
	startDrain context.CancelFunc
	drainAt    atomic.Int64
	spoolLog   rate.Sometimes // spool write failures, logged at most every 5 s

	received atomic.Uint64
	retried  atomic.Uint64
	drops    dropCounters
	consoleN atomic.Uint64
}

// view is an immutable snapshot of the destinations, the routing table and
// the ring tables. users counts the routers placing with it: a destination
// left out of a newer view is retired once no older view is in use.
type view struct {
	users  atomic.Int64
	routes Routes // routed mode
	dests  []*target
	byName map[string]int // routed mode: destination name → index
	ring   *ring.Carbon
	live   *[65536]uint16 // owners among live destinations; nil if none
	all    *[65536]uint16 // owners among all destinations; nil if none
}

// New validates cfg and builds the set. It starts nothing.
func New(cfg Config) (*Set, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	p := &Set{
		cfg:      cfg,
		log:      cfg.Logger,
		in:       make(chan *batch.Batch, cfg.IncomingCap),
		inClosed: make(chan struct{}),
		retry:    make(chan *batch.Batch, cfg.RetryCap),
		stop:     make(chan struct{}),
		spoolLog: rate.Sometimes{Interval: 5 * time.Second},
	}
	if cfg.IncomingBytes > 0 {
		p.inBytes = batch.NewGate(cfg.IncomingBytes)
	}
	p.drainCtx, p.startDrain = context.WithCancel(context.Background())
	p.routers.New = func() any { return newRouter(p) }
	if cfg.Console != nil {
		p.console = newQueue(cfg.QueueCap)
	}
	if cfg.SpoolDir != "" {
		lock, err := spool.LockDir(cfg.SpoolDir)
		if err != nil {
			return nil, fmt.Errorf("-spool-dir: %w", err)
		}
		p.lock = lock
	}
	for i := range cfg.Destinations {
		if cfg.RingByAddr {
			cfg.Destinations[i].Key = cfg.Destinations[i].Addr()
		}
		cfg.Destinations[i].Pickle = cfg.Destinations[i].Pickle || cfg.Pickle
		if cfg.Destinations[i].TLS == nil {
			cfg.Destinations[i].TLS = cfg.TLS
		}
		if cfg.Destinations[i].Transport == "" {
			cfg.Destinations[i].Transport = cfg.Transport
		}
	}
	var dests []*target
	for i, d := range cfg.Destinations {
		if err := checkDuplicate(cfg.Destinations[:i], d, cfg.Mode == HashRoute); err != nil {
			return nil, err
		}
		nd, err := p.newDest(d)
		if err != nil {
			return nil, err
		}
		dests = append(dests, nd)
	}
	p.setView(dests, cfg.Routes)
	return p, nil
}

func (p *Set) newDest(d Destination) (*target, error) {
	nd := &target{Destination: d, q: newQueue(p.cfg.QueueCap), registered: time.Now(), removed: make(chan struct{}),
		holdKick: make(chan struct{}, 1)}
	if p.cfg.SpoolDir != "" && d.File == "" {
		sp, err := spool.Open(p.cfg.SpoolDir, d.Name, spool.Options{MaxBytes: p.cfg.SpoolMaxBytes, Fsync: p.cfg.SpoolFsync, Logger: p.log})
		if err != nil {
			return nil, fmt.Errorf("-spool-dir: %w", err)
		}
		nd.sp = sp
	}
	return nd, nil
}

// spoolBatch writes b to d's spool and releases it; false (b kept) when the
// spool is full or failing.
func (p *Set) spoolBatch(d *target, b *batch.Batch) bool {
	return p.trySpool(d, b) == ""
}

// trySpool writes b to d's spool and releases it; when it cannot, b is kept
// and the drop reason that applies is returned (spool_full or
// spool_write_error). Write failures are logged at most every 5 s.
func (p *Set) trySpool(d *target, b *batch.Batch) string {
	if err := d.sp.Put(b); err != nil {
		if errors.Is(err, spool.ErrFull) {
			return DropSpoolFull
		}
		n := d.spoolErrors.Add(1)
		p.spoolLog.Do(func() { p.log.Error("spool write failed", "dest", d.Name, "err", err, "failures_so_far", n) })
		return DropSpoolError
	}
	d.spooled.Add(uint64(b.Len()))
	b.Release()
	return ""
}

// setView publishes a new snapshot for dests and routes. Callers hold p.mu
// (or own p).
func (p *Set) setView(dests []*target, routes Routes) {
	p.older = p.inUse()
	if old := p.view.Load(); old != nil {
		p.older = append(p.older, old)
	}
	v := &view{dests: dests, routes: routes}
	if p.cfg.Mode == Routed {
		v.byName = make(map[string]int, len(dests))
		for i, d := range dests {
			v.byName[d.Name] = i
		}
	}
	if len(dests) > 0 && p.cfg.Mode != Routed {
		ds := make([]Destination, len(dests))
		for i, d := range dests {
			ds[i] = d.Destination
		}
		v.ring = newRing(ds)
		v.all = v.ring.Table(func(int) bool { return true })
		v.live = v.ring.Table(func(i int) bool { return dests[i].state.Load() != stateDead })
	}
	p.view.Store(v)
}

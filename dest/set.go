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
	"math/rand/v2"
	"net"
	"slices"
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
type RouteFunc func(dst []Placement, name, rest []byte, up func(node int) bool) (_ []Placement, why string)

// Routes is a routing table for Routed mode. NewRoute makes the RouteFunc
// one placing goroutine uses (it may keep scratch space). A Routes value is
// swapped whole, together with the destinations it names (Apply).
type Routes interface{ NewRoute() RouteFunc }

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
	RetryCap     int // batches in the retry queue; default 4096

	DialTimeout  time.Duration // default 3s
	WriteTimeout time.Duration // no progress for this long drops the connection; default 30s
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
	// Dial opens a destination connection; default net.Dialer.
	Dial   func(ctx context.Context, addr string) (net.Conn, error)
	Logger *slog.Logger
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
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
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
	DropNotPickleable = "not_pickleable"       // a pickle destination's line whose value or timestamp is not a number
)

// Set is the destination set: one writer per destination, and the placing of batches on them. Its methods are safe for
// concurrent use; Send blocks when the incoming queue is full.
type Set struct {
	cfg Config
	log *slog.Logger

	in        chan *batch.Batch
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

// acquire returns the current view, counted as in use until the caller
// decrements users: a router places a whole batch by one view.
func (p *Set) acquire() *view {
	for {
		v := p.view.Load()
		v.users.Add(1)
		if p.view.Load() == v {
			return v
		}
		v.users.Add(-1) // replaced meanwhile: it must not gain users
	}
}

// retire tells removed destinations they are gone once no router can still
// place on them: at once when no older view is in use, else from a
// goroutine that waits for their routers (a router blocked on one of them
// stops waiting when it sees it removing). Callers hold p.mu, after the
// view without them is published.
func (p *Set) retire(ds []*target) {
	for _, d := range ds {
		d.removing.Store(true)
	}
	busy := p.inUse()
	p.older = busy
	finish := func() {
		for _, d := range ds {
			d.remove()
			if p.runCtx == nil {
				d.q.close()
			}
		}
	}
	if len(busy) == 0 || p.runCtx == nil {
		finish()
		return
	}
	wait := slices.Clone(busy)
	p.writers.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
	wait:
		for _, v := range wait {
			for v.users.Load() > 0 {
				select {
				case <-t.C:
				case <-p.stop:
					break wait
				}
			}
		}
		p.mu.Lock()
		finish()
		p.mu.Unlock()
	})
}

// inUse prunes the replaced views no router uses any more (they cannot
// gain users) and returns the rest. Callers hold p.mu.
func (p *Set) inUse() []*view {
	busy := p.older[:0]
	for _, v := range p.older {
		if v.users.Load() > 0 {
			busy = append(busy, v)
		}
	}
	clear(p.older[len(busy):])
	return busy
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

// Send hands b to the set; the set owns it afterwards. It blocks while the
// incoming queue is full (policy: block, backpressure to the client) and
// fails only when ctx ends first, in which case the caller still owns b.
func (p *Set) Send(ctx context.Context, b *batch.Batch) error {
	n := b.Len()
	if n == 0 {
		b.Release()
		return nil
	}
	if p.cfg.SpoolAlways {
		// Write-ahead: on disk before Send returns (and before it counts
		// as received). Blocks while a healthy destination's spool is full.
		r := p.routers.Get().(*router)
		r.place(ctx, b)
		p.routers.Put(r)
		p.received.Add(uint64(n))
		return nil
	}
	select {
	case p.in <- b: // policy: block
		p.received.Add(uint64(n))
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Direct returns a Send for a single producer goroutine that places its
// batches on the destination queues itself, instead of through the
// incoming queue and a distributing goroutine: one goroutine hand-off less
// per batch, which is most of the cost at statsd rates. Same policies as
// Send (it blocks while a healthy destination's queue is full). Not safe
// for concurrent use; call stop when the producer is done.
func (p *Set) Direct() (send func(ctx context.Context, b *batch.Batch) error, stop func()) {
	r := newRouter(p)
	return func(ctx context.Context, b *batch.Batch) error {
		n := b.Len()
		if n == 0 {
			b.Release()
			return nil
		}
		p.received.Add(uint64(n))
		r.place(ctx, b)
		return nil
	}, r.stop
}

// CloseInput tells the set that every producer has returned; Run then
// delivers what is queued and returns. Safe to call more than once.
func (p *Set) CloseInput() { p.closeOnce.Do(func() { close(p.inClosed) }) }

// Run distributes until CloseInput has been called after ctx ended and all
// queued points are delivered, or DrainTimeout after ctx ended, whichever is
// first. What is still queued then is counted as dropped (shutdown) and
// logged. It returns nil.
func (p *Set) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("dest: Run called twice")
	}
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	p.mu.Lock()
	p.runCtx = hard
	for _, d := range p.view.Load().dests {
		p.startWriter(d)
	}
	p.mu.Unlock()

	var wg sync.WaitGroup
	defer p.startDrain()
	wg.Go(func() {
		<-ctx.Done()
		p.drainAt.Store(time.Now().Add(p.cfg.DrainTimeout).UnixNano())
		p.startDrain()
		t := time.NewTimer(p.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelHard()
		case <-hard.Done():
		}
	})
	if p.console != nil {
		wg.Go(func() { p.runConsole(hard) })
	}
	if p.cfg.StatusInterval > 0 {
		wg.Go(func() { p.statusLoop(hard) })
	}

	p.distributeLoop(hard)
	p.awaitQuiet(hard)
	close(p.stop)
	if p.console != nil {
		p.console.close()
	}
	p.writers.Wait()
	p.countLeftovers()
	cancelHard()
	wg.Wait()
	p.lock.Unlock()
	return nil
}

// drainDeadline is when the hard stop comes (zero before shutdown).
func (p *Set) drainDeadline() time.Time {
	if at := p.drainAt.Load(); at != 0 {
		return time.Unix(0, at)
	}
	return time.Time{}
}

// startWriter launches d's writer under Run. Callers hold p.mu.
func (p *Set) startWriter(d *target) {
	if p.runCtx == nil {
		return // Run will start it
	}
	ctx := p.runCtx
	p.writers.Go(func() { p.runDest(ctx, d) })
}

// distributeLoop places batches from the incoming and retry queues until the
// input is closed and drained.
func (p *Set) distributeLoop(ctx context.Context) {
	r := newRouter(p)
	defer r.stop()
	for {
		select {
		case b := <-p.in:
			r.place(ctx, b)
		case b := <-p.retry:
			n := b.Len()
			r.place(ctx, b)
			p.inflight.Add(-int64(n))
		case <-p.inClosed:
			for {
				select {
				case b := <-p.in:
					r.place(ctx, b)
				default:
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// awaitQuiet keeps re-placing retried batches after the input closed until
// nothing is queued anywhere, or ctx (the drain deadline) ends.
func (p *Set) awaitQuiet(ctx context.Context) {
	p.draining.Store(true)
	r := newRouter(p)
	defer r.stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case b := <-p.retry:
			n := b.Len()
			r.place(ctx, b)
			p.inflight.Add(-int64(n))
			continue
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.settleDown()
		if p.quiet() {
			return
		}
	}
}

// settleDown spools what waits for destinations that are down, so that a
// shutdown does not wait the drain timeout for them.
func (p *Set) settleDown() {
	for _, d := range p.view.Load().dests {
		if d.sp == nil || d.state.Load() == stateUp {
			continue
		}
		for _, b := range d.q.popAll(nil) {
			if !p.spoolBatch(d, b) {
				d.q.pushFront([]*batch.Batch{b})
				return
			}
		}
	}
}

func (p *Set) quiet() bool {
	if len(p.retry) > 0 || p.inflight.Load() > 0 {
		return false
	}
	if p.console != nil && p.console.depth() > 0 {
		return false
	}
	for _, d := range p.view.Load().dests {
		if d.sp != nil && d.state.Load() != stateUp {
			continue // settled: what it holds goes to its spool
		}
		if d.q.depth() > 0 || d.pending.Load() > 0 {
			return false
		}
		if p.cfg.SpoolAlways && !d.sp.Empty() {
			return false // write-ahead: deliver from the spool until the deadline
		}
	}
	return true
}

func (p *Set) countLeftovers() {
	var lost int
	take := func(q *queue, d *target) {
		for _, b := range q.popAll(nil) {
			if d != nil && d.sp != nil && p.spoolBatch(d, b) {
				continue
			}
			lost += b.Len()
			b.Release()
		}
	}
	for {
		select {
		case b := <-p.in:
			lost += b.Len()
			b.Release()
			continue
		case b := <-p.retry:
			lost += b.Len()
			b.Release()
			continue
		default:
		}
		break
	}
	for _, d := range p.view.Load().dests {
		take(d.q, d)
		if d.sp != nil {
			if err := d.sp.Close(); err != nil {
				p.log.Error("closing spool", "dest", d.Name, "err", err)
			}
		}
	}
	if p.console != nil {
		take(p.console, nil)
	}
	if lost > 0 {
		p.drops.add(DropShutdown, uint64(lost))
		p.log.Error("points not delivered within the drain timeout", "n", lost, "drain_timeout", p.cfg.DrainTimeout)
	}
}

// PutDest registers a destination at runtime. It fails, changing nothing,
// when the destination is invalid or already registered.
func (p *Set) PutDest(spec string) error {
	d, err := ParseDestination(spec)
	if err != nil {
		return err
	}
	if p.cfg.RingByAddr {
		d.Key = d.Addr()
	}
	d.Pickle, d.TLS, d.Transport = p.cfg.Pickle, p.cfg.TLS, p.cfg.Transport
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.view.Load().dests
	have := make([]Destination, len(cur))
	for i, c := range cur {
		have[i] = c.Destination
	}
	if err := checkDuplicate(have, d, p.cfg.Mode == HashRoute); err != nil {
		return err
	}
	nd, err := p.newDest(d)
	if err != nil {
		return err
	}
	p.setView(append(cur[:len(cur):len(cur)], nd), p.view.Load().routes)
	p.startWriter(nd)
	p.log.Info("registered destination", "dest", d.Name)
	p.changed()
	return nil
}

// DelDest unregisters a destination. Its queued points are re-routed in
// hash-route; in broadcast they are delivered if it is connected, otherwise
// counted as dropped (dest_removed).
func (p *Set) DelDest(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.view.Load().dests
	for i, d := range cur {
		if d.Name != name {
			continue
		}
		rest := append(append([]*target(nil), cur[:i]...), cur[i+1:]...)
		p.setView(rest, p.view.Load().routes)
		p.retire([]*target{d})
		p.noteRemoved(name)
		p.changed()
		return nil
	}
	return destErr(ErrNotRegistered, "destination %s is not registered", name)
}

// noteRemoved logs a removal and remembers it for stats. Callers hold p.mu.
func (p *Set) noteRemoved(name string) {
	p.log.Info("unregistered destination", "dest", name)
	p.removed = append(p.removed, RemovedDest{Name: name, At: time.Now()})
	if len(p.removed) > maxRemembered {
		p.removed = p.removed[len(p.removed)-maxRemembered:]
	}
}

// Apply makes dests the destination set and routes the routing table (nil
// keeps the running one) in one step, so that no line is placed by a table
// on a set that lacks its destinations: destinations in both keep their
// writer, queue, connection and spool; new ones start; removed ones deliver
// what they hold — including what routers still place on them by the
// previous table — and end (what they cannot deliver is counted,
// dest_removed). It fails, changing nothing, when a new destination cannot
// be set up or one is given twice.
func (p *Set) Apply(dests []Destination, routes Routes) (added, removed []string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.view.Load()
	have := make(map[string]*target, len(cur.dests))
	for _, d := range cur.dests {
		have[d.Name] = d
	}
	next := make([]*target, 0, len(dests))
	var fresh []*target
	abandon := func(err error) ([]string, []string, error) {
		for _, d := range fresh {
			if d.sp != nil {
				d.sp.Close()
			}
		}
		return nil, nil, err
	}
	seen := make(map[string]bool, len(dests))
	var list []Destination
	for _, d := range dests {
		if p.cfg.RingByAddr {
			d.Key = d.Addr()
		}
		if err := checkDuplicate(list, d, p.cfg.Mode == HashRoute); err != nil {
			return abandon(err)
		}
		list = append(list, d)
		seen[d.Name] = true
		if old, ok := have[d.Name]; ok {
			next = append(next, old)
			continue
		}
		nd, err := p.newDest(d)
		if err != nil {
			return abandon(err)
		}
		fresh = append(fresh, nd)
		next = append(next, nd)
	}
	var gone []*target
	for _, d := range cur.dests {
		if !seen[d.Name] {
			gone = append(gone, d)
		}
	}
	if routes == nil {
		routes = cur.routes
	}
	p.setView(next, routes)
	for _, d := range fresh {
		p.startWriter(d)
		p.log.Info("registered destination", "dest", d.Name)
		added = append(added, d.Name)
	}
	p.retire(gone)
	for _, d := range gone {
		p.noteRemoved(d.Name)
		removed = append(removed, d.Name)
	}
	if len(fresh)+len(gone) > 0 {
		p.changed()
	}
	return added, removed, nil
}

// Hold takes a destination out of service because an outside health check
// failed (statsd mode asks each backend's admin port): it is treated as
// dead — out of the hash-route ring, its queued points re-routed; in
// broadcast its points are dropped and counted — until Unhold.
func (p *Set) Hold(name, reason string) error {
	d := p.destByName(name)
	if d == nil {
		return destErr(ErrNotRegistered, "destination %s is not registered", name)
	}
	if !d.held.Swap(true) {
		p.log.Warn("destination taken out of service", "dest", name, "reason", reason)
		d.holds.Add(1)
		p.setState(d, stateDead)
		kick(d.holdKick)
	}
	return nil
}

// Unhold puts a held destination back into service; it rejoins once it
// connects.
func (p *Set) Unhold(name string) error {
	d := p.destByName(name)
	if d == nil {
		return destErr(ErrNotRegistered, "destination %s is not registered", name)
	}
	if d.held.Swap(false) {
		p.log.Info("destination back in service", "dest", name)
		kick(d.holdKick)
	}
	return nil
}

func (p *Set) destByName(name string) *target {
	for _, d := range p.view.Load().dests {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// changed reports the destination list to OnChange. Callers hold p.mu.
func (p *Set) changed() {
	if p.cfg.OnChange == nil {
		return
	}
	var names []string
	for _, d := range p.view.Load().dests {
		names = append(names, d.Name)
	}
	p.cfg.OnChange(names)
}

// Route returns the destinations a metric name goes to now.
func (p *Set) Route(name string) []string {
	v := p.view.Load()
	if len(v.dests) == 0 {
		return nil
	}
	if p.cfg.Mode == Broadcast {
		out := make([]string, len(v.dests))
		for i, d := range v.dests {
			out[i] = d.Name
		}
		return out
	}
	if p.cfg.Mode == Routed {
		var out []string
		pls, _ := v.routes.NewRoute()(nil, []byte(name), nil, p.upFunc(v))
		for _, pl := range pls {
			out = append(out, pl.Dest)
		}
		return out
	}
	t := v.live
	if t == nil {
		t = v.all
	}
	return []string{v.dests[t[position([]byte(name))]].Name}
}

// upFunc reports, for a routed view, whether a destination is in service
// (connected or reconnecting: not declared dead, not held).
func (p *Set) upFunc(v *view) func(int) bool {
	return func(i int) bool {
		return i >= 0 && i < len(v.dests) && v.dests[i].state.Load() != stateDead
	}
}

// DestList is what getdest reports: destinations with a live connection, and
// every registered destination with its registration time.
type DestList struct {
	Active     []string             `json:"active"`
	Registered map[string]time.Time `json:"registered"`
}

// Destinations returns the current destination list.
func (p *Set) Destinations() DestList {
	l := DestList{Active: []string{}, Registered: map[string]time.Time{}}
	for _, d := range p.view.Load().dests {
		if d.state.Load() == stateUp {
			l.Active = append(l.Active, d.Name)
		}
		l.Registered[d.Name] = d.registered
	}
	return l
}

// IncomingDepth returns the batches waiting in the incoming queue and its capacity.
func (p *Set) IncomingDepth() (int, int) { return len(p.in), cap(p.in) }

func (p *Set) runConsole(ctx context.Context) {
	var pending []*batch.Batch
	for {
		pending = p.console.popAll(pending[:0])
		for _, b := range pending {
			if _, err := p.cfg.Console.Write(b.Buf); err != nil {
				p.log.Error("console write failed", "err", err)
			}
			p.consoleN.Add(uint64(b.Len()))
			b.Release()
		}
		if len(pending) > 0 {
			continue
		}
		if n, closed := p.console.state(); closed && n == 0 {
			return
		}
		select {
		case <-p.console.ready:
		case <-ctx.Done():
			return
		}
	}
}

// backoff returns the delay before reconnect attempt n (1-based): doubling
// from ReconnectMin up to ReconnectMax, with ±20% jitter.
func (p *Set) backoff(n int) time.Duration {
	d := p.cfg.ReconnectMin
	for i := 1; i < n && d < p.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, p.cfg.ReconnectMax)
	j := time.Duration(rand.Int64N(int64(d)/5 + 1))
	if rand.IntN(2) == 0 {
		return d - j
	}
	return d + j
}

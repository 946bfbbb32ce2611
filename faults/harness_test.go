// Package faults is the fault suite: it starts the built daemons on
// loopback, breaks what is around them (destinations down for 45 s, slow
// destinations, SIGTERM with full queues, a gateway that restarts, answers
// 503 or stalls, Consul going away, 10,000 connections) and feeds them
// hostile input, and checks exact counts of what was sent against what
// arrived. `make faults` runs it alone; `make test` runs it with the rest.
package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/fnv"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

var binDir string

func TestMain(m *testing.M) { testutil.MainWithCommands(m, "..", &binDir) }

// limit only keeps a broken case from hanging; nothing here asserts speed.
const limit = 3 * time.Minute

func bin(name string) string { return filepath.Join(binDir, name) }

// relay is a polymur process with its listen and API addresses.
type relay struct {
	*testutil.Proc
	listen, api string
	args        []string
}

// startPolymur starts polymur on fresh loopback ports with args added.
func startPolymur(t *testing.T, args ...string) *relay {
	t.Helper()
	r := &relay{listen: testutil.FreeAddr(t), api: testutil.FreeAddr(t)}
	r.args = append([]string{"-listen-addr", r.listen, "-api-addr", r.api, "-stat-addr", ""}, args...)
	r.start(t)
	return r
}

// start (re)starts the process on the same addresses and waits for its API.
func (r *relay) start(t *testing.T) {
	t.Helper()
	r.Proc = testutil.StartProc(t, bin("polymur"), nil, r.args...)
	testutil.WaitFor(t, "polymur API", limit, func() bool {
		if r.Exited() {
			t.Fatalf("polymur exited at start:\n%s", r.Logs)
		}
		return testutil.Ask(r.api, "ping") == "pong"
	})
}

func (r *relay) stat(key string) int { return testutil.JSONInt(testutil.Ask(r.api, "stats"), key) }

// gateway is a polymur-gateway process in dev mode (key 123) on plain HTTP.
type gateway struct {
	*testutil.Proc
	addr, api string
	args      []string
}

// startDevGateway starts polymur-gateway -dev-mode forwarding to dests,
// with extra flags added.
func startDevGateway(t *testing.T, dests string, extra ...string) *gateway {
	t.Helper()
	g := &gateway{addr: testutil.FreeAddr(t), api: testutil.FreeAddr(t)}
	_, port, _ := net.SplitHostPort(g.addr)
	g.args = append([]string{"-dev-mode", "-listen-addr", "127.0.0.1",
		"-listen-http-port", port, "-api-addr", g.api, "-stat-addr", "", "-destinations", dests}, extra...)
	g.start(t)
	return g
}

// start (re)starts the gateway on its addresses and waits for its API.
func (g *gateway) start(t *testing.T) {
	t.Helper()
	g.Proc = testutil.StartProc(t, bin("polymur-gateway"), nil, g.args...)
	testutil.WaitFor(t, "gateway", limit, func() bool { return testutil.Ask(g.api, "ping") == "pong" })
}

// load writes uniquely named lines to one connection at a steady rate and
// keeps the count and the order-independent checksum of what it wrote.
type load struct {
	prefix string
	stop   chan struct{}
	done   chan struct{}

	mu    sync.Mutex
	sent  int
	sum   uint64
	names []string // kept when placement is checked
	err   error
}

// startLoad sends rate lines per second to addr until stop is called.
func startLoad(t *testing.T, addr, prefix string, rate int, keepNames bool) *load {
	t.Helper()
	return startLoadOf(t, addr, prefix, rate, keepNames, func(i int) (string, string) {
		name := fmt.Sprintf("%s.host%03d.m%d", prefix, i%997, i)
		return name, fmt.Sprintf("%s %d 1700000000\n", name, i%1000)
	})
}

// startLoadOf is startLoad with line i made by line (its name and the
// whole line).
func startLoadOf(t *testing.T, addr, prefix string, rate int, keepNames bool, line func(i int) (name, text string)) *load {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetWriteBuffer(256 << 10) // backpressure shows sooner
	l := &load{prefix: prefix, stop: make(chan struct{}), done: make(chan struct{})}
	if keepNames {
		l.names = []string{}
	}
	go func() {
		defer close(l.done)
		defer c.Close()
		const tick = 10 * time.Millisecond
		per := max(1, rate/int(time.Second/tick))
		t0 := time.Now()
		var buf bytes.Buffer
		for i := 0; ; {
			select {
			case <-l.stop:
				return
			default:
			}
			// Catch up to the schedule: the rate holds even when a write
			// was held back by backpressure.
			due := int(time.Since(t0)/tick+1) * per
			buf.Reset()
			var sum uint64
			var names []string
			for ; i < due; i++ {
				name, line := line(i)
				h := fnv.New64a()
				h.Write([]byte(line))
				sum += h.Sum64()
				buf.WriteString(line)
				if l.names != nil {
					names = append(names, name)
				}
			}
			if _, err := c.Write(buf.Bytes()); err != nil {
				l.mu.Lock()
				l.err = err
				l.mu.Unlock()
				return
			}
			l.mu.Lock()
			l.sent, l.sum = i, l.sum+sum
			if l.names != nil {
				l.names = append(l.names, names...)
			}
			l.mu.Unlock()
			time.Sleep(time.Until(t0.Add(time.Duration(i/per) * tick)))
		}
	}()
	return l
}

// Stop ends the load and returns how many lines it wrote and their checksum.
func (l *load) Stop(t *testing.T) (int, uint64) {
	t.Helper()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		t.Fatalf("load %s: %v", l.prefix, l.err)
	}
	return l.sent, l.sum
}

func (l *load) Sent() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}

// placement asks `polymur -test` where carbon_ch puts each name.
func placement(t *testing.T, dests string, names []string) map[string]string {
	t.Helper()
	cmd := exec.Command(bin("polymur"), "-test", "-distribution", "hash-route", "-destinations", dests)
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]string, len(names))
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, dest, _ := strings.Cut(sc.Text(), "\t")
		want[name] = dest
	}
	return want
}

// checkPlacement fails unless every line at sinks[i] belongs to dests[i]
// on the ring and no name arrived twice.
func checkPlacement(t *testing.T, names []string, dests []string, sinks []*testutil.Sink) {
	t.Helper()
	want := placement(t, strings.Join(dests, ","), names)
	seen := make(map[string]bool, len(names))
	for i, s := range sinks {
		for _, l := range s.Lines() {
			name, _, _ := strings.Cut(l, " ")
			if want[name] != dests[i] {
				t.Fatalf("%s at %s, carbon_ch puts it on %s", name, dests[i], want[name])
			}
			if seen[name] {
				t.Fatalf("%s delivered twice", name)
			}
			seen[name] = true
		}
	}
}

func total(sinks ...*testutil.Sink) (n int, sum uint64) {
	for _, s := range sinks {
		n += s.Count()
		sum += s.Sum()
	}
	return n, sum
}

// waitExact waits until sinks hold n lines in all, then checks that they
// hold exactly those lines (count and checksum), none lost or doubled.
func waitExact(t *testing.T, what string, n int, sum uint64, sinks ...*testutil.Sink) {
	t.Helper()
	testutil.WaitTotal(n, limit, sinks...)
	time.Sleep(300 * time.Millisecond) // a duplicate would show up now
	got, gotSum := total(sinks...)
	if got != n || gotSum != sum {
		t.Fatalf("%s: sinks hold %d lines (checksum %x), sent %d (checksum %x)", what, got, gotSum, n, sum)
	}
}

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The paced scenario: what a relay costs at the rates most relays run.
// Ten connections send a fixed rate for a while, a few lines every
// millisecond each; every line's value is its send time (Unix ns), so the
// sinks measure each line's latency through the relay. Both relays route
// the same carbon_ch configuration over three sinks.

// latSink is a destination that records each line's latency.
type latSink struct {
	ln    net.Listener
	mu    sync.Mutex
	lat   []int64 // ns
	lines atomic.Int64
	wg    sync.WaitGroup
}

func newLatSink() (*latSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &latSink{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.read(c) })
		}
	})
	return s, nil
}

func (s *latSink) read(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Bytes()
		// "paced.C.N <send ns> <ts>"
		i := indexByte(l, ' ')
		j := i + 1 + indexByte(l[i+1:], ' ')
		if i < 0 || j <= i || len(l) < 6 || string(l[:6]) != "paced." {
			continue // the relay's own statistics
		}
		sent, err := strconv.ParseInt(string(l[i+1:j]), 10, 64)
		if err != nil {
			continue
		}
		lat := time.Now().UnixNano() - sent
		s.mu.Lock()
		s.lat = append(s.lat, lat)
		s.mu.Unlock()
		s.lines.Add(1)
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func (s *latSink) addr() string { return s.ln.Addr().String() }
func (s *latSink) close()       { s.ln.Close() }

// pace sends rate lines/s over conns connections to addr for d, a few
// lines every millisecond per connection, and returns how many it sent.
func pace(addr string, rate, conns int, d time.Duration) (int, error) {
	var wg sync.WaitGroup
	var sent atomic.Int64
	errs := make(chan error, conns)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	for c := range conns {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			per := float64(rate) / float64(conns) / 1000 // lines per millisecond
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			start := time.Now()
			var due float64
			n := 0
			buf := make([]byte, 0, 4096)
			for now := range tick.C {
				if now.Sub(start) >= d {
					break
				}
				due = per * float64(now.Sub(start).Microseconds()) / 1000
				buf = buf[:0]
				stamp := strconv.AppendInt(nil, time.Now().UnixNano(), 10)
				for float64(n) < due {
					buf = fmt.Appendf(buf, "paced.%d.%d %s %s\n", c, n%5000, stamp, ts)
					n++
				}
				if len(buf) > 0 {
					if _, err := conn.Write(buf); err != nil {
						errs <- err
						return
					}
				}
			}
			sent.Add(int64(n))
		})
	}
	wg.Wait()
	close(errs)
	return int(sent.Load()), <-errs
}

// pacedResult is one relay's run at one rate.
type pacedResult struct {
	sent, delivered int
	cpu             time.Duration
	rss             int64
	p50, p99, max   time.Duration
}

func (r pacedResult) perCPU() float64 {
	if r.cpu <= 0 || r.delivered < r.sent {
		return 0
	}
	return float64(r.sent) / r.cpu.Seconds()
}

func pacedConfig(addrs []string) string {
	conf := "cluster out carbon_ch\n"
	for i, a := range addrs {
		conf += fmt.Sprintf("    %s=%c\n", a, 'a'+i)
	}
	return conf + "    ;\nmatch * send to out stop;\n"
}

// pacedOnce runs one relay at one rate with fresh sinks.
func pacedOnce(r run, rate, conns int, d, timeout time.Duration) (pacedResult, error) {
	var res pacedResult
	var sinks []*latSink
	var addrs []string
	for range 3 {
		s, err := newLatSink()
		if err != nil {
			return res, err
		}
		defer s.close()
		sinks, addrs = append(sinks, s), append(addrs, s.addr())
	}
	f, err := os.CreateTemp("", "paced-*.conf")
	if err != nil {
		return res, err
	}
	defer os.Remove(f.Name())
	f.WriteString(pacedConfig(addrs))
	f.Close()
	listen := freeAddr()
	cmd, err := r.start(f.Name(), listen)
	if err != nil {
		return res, err
	}
	defer stopBin(cmd)
	if err := waitListening(listen, 10*time.Second); err != nil {
		return res, err
	}
	// Connected to the sinks, and settled: what a relay costs once it runs
	// (polymur goes to one thread after 2 s that need less than a quarter
	// of a core).
	time.Sleep(2500 * time.Millisecond)
	cpu0, _, err := procStats(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	if res.sent, err = pace(listen, rate, conns, d); err != nil {
		return res, err
	}
	total := func() (n int) {
		for _, s := range sinks {
			n += int(s.lines.Load())
		}
		return n
	}
	deadline := time.Now().Add(timeout)
	for total() < res.sent && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cpu1, hwm, err := procStats(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	res.cpu, res.rss, res.delivered = cpu1-cpu0, hwm, total()
	var all []int64
	for _, s := range sinks {
		s.mu.Lock()
		all = append(all, s.lat...)
		s.mu.Unlock()
	}
	slices.Sort(all)
	if len(all) > 0 {
		res.p50, res.p99, res.max = time.Duration(all[len(all)/2]), time.Duration(all[len(all)*99/100]), time.Duration(all[len(all)-1])
	}
	return res, nil
}

// pacedRun measures every rate, three rounds interleaved with the peer,
// and gives the table rows.
func pacedRun(bin, peer string, rates []int, conns int, d, timeout time.Duration) ([]string, error) {
	runs := configRuns(bin, peer, "-config (same file)")
	// And polymur with a wider window: what the latency budget buys.
	wide := run{"polymur", "-config (same file) -flush-interval 3.5ms", func(conf, listen string) (*exec.Cmd, error) {
		cmd := exec.Command(filepath.Join(bin, "polymur"), "-listen-addr", listen, "-api-addr", "", "-stat-addr", "", "-log-level", "warn", "-config", conf, "-flush-interval", "3.5ms")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd, cmd.Start()
	}}
	runs = append([]run{runs[0], wide}, runs[1:]...)
	var rows []string
	for _, rate := range rates {
		results := make([][]pacedResult, len(runs))
		for round := range 3 {
			for ri, r := range runs {
				res, err := pacedOnce(r, rate, conns, d, timeout)
				if err != nil {
					return nil, fmt.Errorf("paced %d/s %s: %w", rate, r.name, err)
				}
				results[ri] = append(results[ri], res)
				fmt.Printf("paced %d lines/s round %d: %s %s lines/CPU-s, p99 %v, %d of %d delivered\n", rate, round+1, r.name, pacedRate(res.perCPU()), res.p99, res.delivered, res.sent)
			}
		}
		var medians []float64
		for ri, rs := range results {
			var cpu []float64
			var p99s []time.Duration
			var p50s []time.Duration
			worst, rss, maxLat := rs[0], int64(0), time.Duration(0)
			for _, m := range rs {
				cpu, p99s, p50s = append(cpu, m.perCPU()), append(p99s, m.p99), append(p50s, m.p50)
				if m.delivered*worst.sent < worst.delivered*m.sent {
					worst = m
				}
				rss, maxLat = max(rss, m.rss), max(maxLat, m.max)
			}
			slices.Sort(cpu)
			slices.Sort(p99s)
			slices.Sort(p50s)
			medians = append(medians, cpu[1])
			rows = append(rows, fmt.Sprintf("| %s | %d lines/s × %s | %d | %s | %s / **%s** / %s | %.1f%% | %s | %s / **%s** / %s | %s | %s |",
				pacedLabel(runs[ri]), rate, d, conns, pct(int64(worst.delivered), int64(worst.sent)),
				pacedRate(cpu[0]), pacedRate(cpu[1]), pacedRate(cpu[2]), 100*float64(rate)/max(cpu[1], 1),
				roundDur(p50s[1]), roundDur(p99s[0]), roundDur(p99s[1]), roundDur(p99s[2]), roundDur(maxLat), mib(rss)))
			fmt.Println(rows[len(rows)-1])
		}
		if rate == rates[0] {
			// What waking alone costs here, beside the relays' rows.
			for _, every := range []time.Duration{2 * time.Millisecond, 3500 * time.Microsecond} {
				cpu, err := wakeFloor(every, d)
				if err != nil {
					return nil, err
				}
				rows = append(rows, fmt.Sprintf("| floor: a Go process that only wakes every %s (GOMAXPROCS 1) | | | | %.1f ms of CPU per second | %.1f%% | | | | |",
					every, float64(cpu)/float64(d)*1000, 100*float64(cpu)/float64(d)))
				fmt.Println(rows[len(rows)-1])
			}
		}
		if peerAt := len(runs) - 1; runs[peerAt].name == "carbon-c-relay" && medians[peerAt] > 0 {
			for ri := range peerAt {
				rows = append(rows, fmt.Sprintf("| **%s ÷ carbon-c-relay** at %d lines/s | median lines per CPU-second | | | | **%.2f×** | | | | | |",
					pacedLabel(runs[ri]), rate, medians[ri]/medians[peerAt]))
				fmt.Println(rows[len(rows)-1])
			}
		}
	}
	return rows, nil
}

// pacedLabel names a run in the paced table: polymur with the settings
// that differ between its rows.
func pacedLabel(r run) string {
	if r.name != "polymur" {
		return r.name
	}
	return strings.TrimSpace("polymur " + strings.TrimSpace(strings.TrimPrefix(r.settings, "-config (same file)")))
}

func pacedRate(v float64) string { return fmt.Sprintf("%.0fk", v/1000) }

func roundDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// wakeMain is the wake-up floor: a process that does nothing but wake
// every d (one P, as polymur at ordinary rates), for dur; it prints the
// CPU it used.
func wakeMain(d, dur time.Duration) {
	runtime.GOMAXPROCS(1)
	t := time.NewTicker(d)
	for end := time.Now().Add(dur); time.Now().Before(end); {
		<-t.C
	}
	cpu, _ := schedCPU(os.Getpid())
	fmt.Println(int64(cpu))
}

// wakeFloor runs the wake-up floor for d and returns its CPU.
func wakeFloor(every, d time.Duration) (time.Duration, error) {
	out, err := exec.Command(os.Args[0], "-wake-every", every.String(), "-paced-for", d.String()).Output()
	if err != nil {
		return 0, fmt.Errorf("wake-up floor: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return time.Duration(ns), err
}

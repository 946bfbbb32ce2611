// Command bench is polymur's side-by-side benchmark harness (`make bench`).
// On loopback it runs polymur and carbon-c-relay on the same pre-generated
// input, to the same sinks, in the same modes (broadcast to 2 destinations,
// carbon_ch/hash-route to 3), with 1 and 20 client connections, and reports
// delivered %, input lines per wall second and per relay CPU-second
// (utime+stime from /proc), and peak RSS (VmHWM). It also measures
// polymur-proxy → polymur-gateway → sink and 10,000 idle connections. The
// table is printed and written to bench/results/latest.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type options struct {
	lines     int
	conns     []int
	bin       string
	out       string
	peer      string
	install   bool
	timeout   time.Duration
	skipExtra bool
	statsdDir string
	statsdN   int
	rates     []int
	only      string
	skipSpool bool
	paced     []int
	pacedFor  time.Duration
}

// proxyBurst is the fewest lines of the proxy → gateway runs.
const proxyBurst = 2_000_000

func main() {
	var o options
	var conns string
	flag.IntVar(&o.lines, "lines", 1_000_000, "input lines per scenario")
	flag.StringVar(&conns, "conns", "1,20", "client connection counts to run")
	flag.StringVar(&o.bin, "bin", "bin", "directory with the polymur binaries")
	flag.StringVar(&o.out, "out", "bench/results/latest.md", "where to write the results table")
	flag.StringVar(&o.peer, "peer", "carbon-c-relay", "carbon-c-relay binary (name on PATH or path)")
	flag.BoolVar(&o.install, "install", true, "apt-get install carbon-c-relay when it is missing")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "longest wait for one scenario")
	flag.BoolVar(&o.skipSpool, "skip-spool", false, "skip the spool-mode scenarios")
	flag.BoolVar(&o.skipExtra, "skip-extra", false, "skip the proxy/gateway, idle-connection and statsd measurements")
	home, _ := os.UserHomeDir()
	flag.StringVar(&o.statsdDir, "statsd-dir", filepath.Join(home, ".cache/polymur/statsd-0.9.0/node_modules/statsd"), "statsd's npm package (proxy.js), for the statsd-mode comparison")
	flag.IntVar(&o.statsdN, "statsd-lines", 1_000_000, "statsd lines per statsd scenario")
	var rates string
	flag.StringVar(&rates, "statsd-rates", "25000,50000,75000", "offered statsd lines/s for the paced comparisons")
	var paced string
	flag.StringVar(&paced, "paced-rates", "20000,50000,200000", "lines/s of the paced scenario (10 connections, latency measured)")
	flag.DurationVar(&o.pacedFor, "paced-for", 10*time.Second, "how long each paced run sends")
	flag.StringVar(&o.only, "only", "", "run one part only: carbon, routing, aggregate, shapes (shapes:realistic or shapes:2000 for one of them), paced, ceilings, extra or statsd")
	forward := flag.String("forward", "", "(internal) run as the ceiling forwarder listening here")
	to := flag.String("to", "", "(internal) the forwarder's destination")
	split := flag.Bool("split", false, "(internal) the forwarder splits lines")
	wake := flag.Duration("wake-every", 0, "(internal) run as the wake-up floor: only wake this often, for -paced-for")
	flag.Parse()
	if *forward != "" {
		forwardMain(*forward, *to, *split)
		return
	}
	if *wake > 0 {
		wakeMain(*wake, o.pacedFor)
		return
	}
	for _, r := range strings.Split(paced, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 1 {
			fatal("-paced-rates: %q is not a rate", r)
		}
		o.paced = append(o.paced, n)
	}
	for _, c := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fatal("-conns: %q is not a connection count", c)
		}
		o.conns = append(o.conns, n)
	}
	for _, r := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 1 {
			fatal("-statsd-rates: %q is not a rate", r)
		}
		o.rates = append(o.rates, n)
	}
	raiseFileLimit()
	if err := bench(o); err != nil {
		fatal("%v", err)
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func bench(o options) error {
	for _, b := range []string{"polymur", "polymur-proxy", "polymur-gateway"} {
		if _, err := os.Stat(filepath.Join(o.bin, b)); err != nil {
			return fmt.Errorf("%s not built (run make): %v", b, err)
		}
	}
	peer, note := findPeer(o)
	fmt.Printf("polymur bench: %d lines per scenario, connections %v, %d CPUs (%s)\n", o.lines, o.conns, runtime.NumCPU(), cpuModel())
	if note != "" {
		fmt.Println(note)
	}
	var results []result
	for _, mode := range []string{"broadcast", "hash-route"} {
		if o.only != "" && o.only != "carbon" {
			break
		}
		nd := 2
		if mode == "hash-route" {
			nd = 3
		}
		for _, conns := range o.conns {
			in := generate(o.lines, conns)
			relays := []relay{polymurRelay(o.bin, "defaults", nil)}
			if !o.skipSpool {
				// What the spool modes cost while every destination keeps
				// up: overflow (the default with a spool) and always
				// (write-ahead: one disk write and read per batch).
				for _, m := range []string{"overflow", "always"} {
					dir, err := os.MkdirTemp("", "polymur-bench-spool")
					if err != nil {
						return err
					}
					defer os.RemoveAll(dir)
					relays = append(relays, polymurRelay(o.bin, "-spool-mode "+m, []string{"-spool-dir", dir, "-spool-mode", m}))
				}
			}
			if peer != "" {
				relays = append(relays,
					ccrRelay(peer, fmt.Sprintf("-w %d -q 1000000 -b 10000", runtime.NumCPU()), []string{"-w", strconv.Itoa(runtime.NumCPU()), "-q", "1000000", "-b", "10000"}),
					ccrRelay(peer, "defaults", nil))
			}
			for _, r := range relays {
				res, err := runScenario(r, mode, nd, in, o.timeout)
				if err != nil {
					return fmt.Errorf("%s %s %d conns: %w", r.name, mode, conns, err)
				}
				fmt.Println(res.row(nil))
				results = append(results, res)
			}
		}
	}
	var extras []string
	if o.only == "" || o.only == "routing" {
		rows, err := routingRun(o.bin, peer, o.lines, o.timeout)
		if err != nil {
			return err
		}
		extras = section(extras, "Routing (one carbon-c-relay configuration, both relays, three rounds interleaved; delivered counts against polymur -test's deliveries, the worst round):", roundsHeader, rows)
	}
	if o.only == "" || o.only == "aggregate" {
		rows, err := aggregateRun(o.bin, peer, o.timeout)
		if err != nil {
			return err
		}
		extras = section(extras, "Aggregation (one carbon-c-relay configuration, both relays, three rounds interleaved; delivered: the markers sent after every 10,000 points of a connection, each arriving once every point before it was aggregated; a relay that does not finish in the time allowed is rated on the points its markers show it took):", roundsHeader, rows)
	}
	if o.only == "" || strings.HasPrefix(o.only, "shapes") {
		rows, err := shapesRun(o.bin, peer, strings.TrimPrefix(strings.TrimPrefix(o.only, "shapes"), ":"), o.timeout)
		if err != nil {
			return err
		}
		extras = section(extras, "Traffic shapes (one carbon_ch configuration over three sinks for both relays, five rounds interleaved): realistic names, every one again each interval, over 20 connections; and 2,000 connections of 500 lines each:", roundsHeader, rows)
	}
	if o.only == "" || o.only == "ceilings" {
		rows, err := ceilingRun(o.bin, o.lines, o.timeout)
		if err != nil {
			return err
		}
		extras = section(extras, "Ceilings (the bench binary as a trivial forwarder — every connection's bytes copied to one destination, then also split into whole lines — beside polymur broadcasting to one destination; same input over 20 connections, one sink, three rounds interleaved):", roundsHeader, rows)
	}
	if o.only == "" || o.only == "paced" {
		rows, err := pacedRun(o.bin, peer, o.paced, 10, o.pacedFor, o.timeout)
		if err != nil {
			return err
		}
		extras = section(extras, "Paced (10 connections each writing a few lines every millisecond, the rate held for the time shown; one carbon_ch configuration over three sinks for both relays, three rounds interleaved; each line carries its send time, so the sinks measure its latency through the relay; CPU from /proc/PID/task/*/schedstat; % core = the rate ÷ the median lines per CPU-second; the floor rows: what a process that does nothing but wake at a window's pace costs on this machine):",
			"| relay | offered | conns | delivered | lines/CPU-s min / **median** / max | % of a core | p50 | p99 min / **median** / max | max | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|", rows)
	}
	if !o.skipExtra && (o.only == "" || o.only == "extra") {
		for _, c := range []struct {
			tls         bool
			compression string
		}{{false, "gzip"}, {true, "gzip"}, {false, "zstd"}, {true, "zstd"}} {
			// A burst of at least 2M lines: what the proxy's memory is
			// judged on (its queue fills and stays full meanwhile).
			line, err := pipelineRun(o.bin, max(o.lines, proxyBurst), c.tls, c.compression, o.timeout)
			if err != nil {
				return err
			}
			fmt.Println(line)
			extras = append(extras, line)
		}
		line, err := idleConns(o.bin, 10000)
		if err != nil {
			return err
		}
		fmt.Println(line)
		extras = append(extras, line)
	}
	if !o.skipExtra && (o.only == "" || o.only == "statsd") {
		lines, err := statsdBench(o.bin, o.statsdDir, o.statsdN, o.rates)
		if err != nil {
			return err
		}
		extras = append(extras, lines...)
	}
	return writeReport(o, results, extras, note)
}

// findPeer locates carbon-c-relay, installing the Debian package if asked.
func findPeer(o options) (string, string) {
	if p, err := exec.LookPath(o.peer); err == nil {
		return p, ""
	}
	if o.install {
		fmt.Println("carbon-c-relay not found: installing the Debian package (apt-get install carbon-c-relay)")
		cmd := exec.Command("sh", "-c", "(apt-get install -y -qq carbon-c-relay || (apt-get update -qq && apt-get install -y -qq carbon-c-relay)) >/dev/null 2>&1")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Run()
		if p, err := exec.LookPath(o.peer); err == nil {
			return p, ""
		}
	}
	return "", "carbon-c-relay could not be had (not on PATH, apt-get install failed): measuring polymur alone"
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, v, _ := strings.Cut(l, ":")
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// roundsHeader heads the tables of interleaved rounds.
const roundsHeader = "| relay | settings | scenario | conns | delivered | in lines/CPU-s min / **median** / max | peak RSS |\n|---|---|---|---|---|---|---|"

// section appends a titled table to the report's extras.
func section(extras []string, title, header string, rows []string) []string {
	extras = append(extras, title, "")
	extras = append(extras, strings.Split(header, "\n")...)
	extras = append(extras, rows...)
	return append(extras, "")
}

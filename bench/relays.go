package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// relay knows how to start one relay under test.
type relay struct {
	name     string // e.g. "polymur" or "carbon-c-relay"
	settings string
	// start launches the relay listening on listen and sending to dests
	// (host:port) in mode; it returns the process.
	start func(mode, listen string, dests []string) (*exec.Cmd, error)
}

func polymurRelay(bin, settings string, extra []string) relay {
	return relay{name: "polymur", settings: settings, start: func(mode, listen string, dests []string) (*exec.Cmd, error) {
		var ds []string
		for i, d := range dests {
			ds = append(ds, fmt.Sprintf("%s:%c", d, 'a'+i))
		}
		args := append([]string{"-listen-addr", listen, "-api-addr", "", "-stat-addr", "", "-log-level", "warn",
			"-distribution", mode, "-destinations", strings.Join(ds, ",")}, extra...)
		cmd := exec.Command(filepath.Join(bin, "polymur"), args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd, cmd.Start()
	}}
}

func ccrRelay(bin, settings string, extra []string) relay {
	return relay{name: "carbon-c-relay", settings: settings, start: func(mode, listen string, dests []string) (*exec.Cmd, error) {
		var conf strings.Builder
		if mode == "broadcast" {
			conf.WriteString("cluster bench_out\n    forward\n")
		} else {
			conf.WriteString("cluster bench_out\n    carbon_ch\n")
		}
		for i, d := range dests {
			if mode == "broadcast" {
				fmt.Fprintf(&conf, "        %s\n", d)
			} else {
				fmt.Fprintf(&conf, "        %s=%c\n", d, 'a'+i)
			}
		}
		conf.WriteString("    ;\nmatch * send to bench_out stop;\n")
		f, err := os.CreateTemp("", "ccr-*.conf")
		if err != nil {
			return nil, err
		}
		f.WriteString(conf.String())
		f.Close()
		_, port, _ := net.SplitHostPort(listen)
		args := append([]string{"-f", f.Name(), "-p", port}, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = nil, nil // its startup banner is not interesting
		return cmd, cmd.Start()
	}}
}

// result is one row of the table.
type result struct {
	relay, settings, mode string
	conns                 int
	expected, delivered   int64
	checksumOK            bool
	other                 int64
	wall, cpu             time.Duration
	rss                   int64
	inLines               int
}

// perCPU is input lines per relay CPU-second, only for complete runs.
func (r result) perCPU() float64 {
	if r.cpu <= 0 || r.delivered < r.expected {
		return 0
	}
	return float64(r.inLines) / r.cpu.Seconds()
}

func (r result) perWall() float64 {
	if r.wall <= 0 || r.delivered < r.expected {
		return 0
	}
	return float64(r.inLines) / r.wall.Seconds()
}

// runScenario starts fresh sinks and a fresh relay, sends the input and
// waits until every expected line arrived (or progress stops).
func runScenario(rl relay, mode string, ndest int, in input, timeout time.Duration) (result, error) {
	res := result{relay: rl.name, settings: rl.settings, mode: mode, conns: len(in.bufs), inLines: in.lines}
	var sinks []*sink
	var dests []string
	for range ndest {
		s, err := newSink()
		if err != nil {
			return res, err
		}
		defer s.close()
		sinks, dests = append(sinks, s), append(dests, s.addr())
	}
	expected := int64(in.lines)
	if mode == "broadcast" {
		expected *= int64(ndest)
	}
	res, err := measure(rl, mode, sinks, dests, in, expected, timeout)
	if err != nil {
		return res, err
	}
	var sum uint64
	for _, s := range sinks {
		sum += s.checksum()
		res.other += s.other.Load()
	}
	want := in.sum
	if mode == "broadcast" {
		want *= uint64(ndest)
	}
	res.checksumOK = sum == want && res.delivered == res.expected
	return res, nil
}

// measure starts the relay, sends the input and waits until expected lines
// arrived at the sinks (or progress stops); it reports delivered, CPU and
// peak RSS.
func measure(rl relay, mode string, sinks []*sink, dests []string, in input, expected int64, timeout time.Duration) (result, error) {
	res := result{relay: rl.name, settings: rl.settings, mode: mode, conns: len(in.bufs), inLines: in.lines}
	listen := freeAddr()
	cmd, err := rl.start(mode, listen, dests)
	if err != nil {
		return res, err
	}
	defer stopBin(cmd)
	if err := waitListening(listen, 10*time.Second); err != nil {
		return res, err
	}
	time.Sleep(300 * time.Millisecond) // let it connect to the sinks
	res.expected = expected
	total := func() (n int64) {
		for _, s := range sinks {
			n += s.lines.Load()
		}
		return n
	}
	cpu0, _, err := procStats(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	start := time.Now()
	sendErr := make(chan error, 1)
	go func() { sendErr <- in.send(listen) }()
	last, lastChange := int64(-1), time.Now()
	for {
		n := total()
		if n >= res.expected {
			break
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) > 10*time.Second || time.Since(start) > timeout {
			break // stalled: report what arrived
		}
		time.Sleep(2 * time.Millisecond)
	}
	res.wall = time.Since(start)
	cpu1, hwm, err := procStats(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	if err := <-sendErr; err != nil && total() < res.expected {
		fmt.Fprintf(os.Stderr, "bench: sending to %s: %v\n", rl.name, err)
	}
	res.cpu, res.rss, res.delivered = cpu1-cpu0, hwm, total()
	return res, nil
}

package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// The shapes of real Graphite traffic: every name again every interval
// (realistic names: 100k names of 40–120 bytes, 20 intervals), and many
// clients each sending a little (2,000 connections).

// realisticInput builds names × intervals lines over conns connections;
// a name always comes through the same connection (one host, one agent),
// its points an interval apart.
func realisticInput(names, intervals, conns int) input {
	rng := rand.New(rand.NewPCG(7, 11))
	words := []string{"cpu", "memory", "disk", "network", "interface", "eth0", "sda", "nginx", "requests", "latency",
		"upstream", "response_time", "percentile", "p99", "count", "errors", "jvm", "gc", "heap", "used", "postgres",
		"connections", "active", "redis", "keyspace", "hits", "misses", "kafka", "consumer", "lag", "partition"}
	list := make([][]byte, names)
	for i := range list {
		target := 40 + rng.IntN(81)                                      // 40–120 bytes
		name := fmt.Appendf(nil, "bench.prod.dc%d.host-%05d", i%4, i/50) // the sinks count bench.*
		for len(name) < target {
			name = append(name, '.')
			name = append(name, words[rng.IntN(len(words))]...)
		}
		list[i] = name[:target]
		if list[i][target-1] == '.' {
			list[i][target-1] = 'x'
		}
	}
	in := input{lines: names * intervals, bufs: make([][]byte, conns)}
	start := time.Now().Unix() - int64(intervals)*60
	for c := range conns {
		var b bytes.Buffer
		var line []byte
		for iv := range intervals {
			ts := strconv.FormatInt(start+int64(iv)*60, 10)
			for i := c; i < names; i += conns {
				line = in.add(&b, append(line[:0], list[i]...), float64((i*31+iv)%9973)/7, ts)
			}
		}
		in.bufs[c] = b.Bytes()
		in.bytes += b.Len()
	}
	return in
}

// hashOnce runs one relay on a carbon_ch configuration over three sinks.
func hashOnce(r run, in input, timeout time.Duration) (measured, error) {
	var sinks []*sink
	var addrs []string
	for range 3 {
		s, err := newSink()
		if err != nil {
			return measured{}, err
		}
		defer s.close()
		sinks, addrs = append(sinks, s), append(addrs, s.addr())
	}
	dir, err := os.MkdirTemp("", "polymur-bench-hash")
	if err != nil {
		return measured{}, err
	}
	defer os.RemoveAll(dir)
	conf := filepath.Join(dir, "relay.conf")
	if err := os.WriteFile(conf, []byte(pacedConfig(addrs)), 0o600); err != nil {
		return measured{}, err
	}
	rl := relay{name: r.name, settings: r.settings, start: func(_, listen string, _ []string) (*exec.Cmd, error) { return r.start(conf, listen) }}
	res, err := measure(rl, "hash-route", sinks, addrs, in, int64(in.lines), timeout)
	return measured{res, int64(in.lines)}, err
}

// shapeRounds: the goals on names and many clients are judged by these
// rows, and polymur's figure swings by a fifth from run to run on a small
// VM; five rounds make the median steadier.
const shapeRounds = 5

// shapesRun measures hash-route on realistic names (20 connections) and on
// 2,000 connections of 500 lines, shapeRounds rounds interleaved with the
// peer.
func shapesRun(bin, peer, only string, timeout time.Duration) ([]string, error) {
	var rows []string
	for _, s := range []struct {
		key  string
		what string
		in   func() input
		peer []string
	}{
		{"realistic", "realistic names (100k × 20 intervals, 40–120 B)", func() input { return realisticInput(100_000, 20, 20) }, nil},
		// carbon-c-relay's listen backlog is 32 unless -B: 2,000 clients
		// connecting at once would be refused.
		{"2000", "2,000 connections × 500 lines", func() input { return generate(1_000_000, 2000) }, []string{"-B", "4096"}},
	} {
		if only != "" && only != s.key {
			continue
		}
		in := s.in()
		runs := configRuns(bin, peer, "-config carbon_ch, 3 sinks", s.peer...)
		r, err := interleaved("hash-route, "+s.what, shapeRounds, runs, len(in.bufs), func(r run) (measured, error) { return hashOnce(r, in, timeout) })
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

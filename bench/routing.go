package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// routingConfig writes the routing scenario's carbon-c-relay configuration
// over sinks: 4 clusters (forward, carbon_ch replication 2 on three
// loopback hosts, fnv1a_ch, any_of), 10 rewrites and 100 match rules on
// realistic prefixes and regexes, most lines falling through many of them.
func routingConfig(addrs []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster fw forward %s;\n", addrs[0])
	fmt.Fprintf(&b, "cluster ch carbon_ch replication 2 %s=a %s=b %s=c;\n", addrs[1], addrs[2], addrs[3])
	fmt.Fprintf(&b, "cluster fnv fnv1a_ch %s %s;\n", addrs[4], addrs[5])
	fmt.Fprintf(&b, "cluster any any_of %s %s;\n", addrs[6], addrs[7])
	for i := range 10 {
		fmt.Fprintf(&b, "rewrite ^bench\\.%s\\.host(%d[0-9]*)\\.legacy%d\\.(.*)$ into bench.%s.host\\1.new.\\_2;\n", dcs[i%len(dcs)], i, i, dcs[i%len(dcs)])
	}
	clusters := []string{"fw", "ch", "fnv", "any"}
	for i := range 80 {
		// literal prefixes that seldom match: the bulk of real rule sets
		fmt.Fprintf(&b, "match ^bench\\.%s\\.host%d\\.%s\\.nomatch send to %s;\n", dcs[i%len(dcs)], i, groups[i%len(groups)], clusters[i%4])
	}
	for i := range 19 {
		fmt.Fprintf(&b, "match ^bench\\.[a-z]+-[a-z]+-[0-9]\\.host%d[0-9]*\\.(%s|%s)\\.zz send to %s;\n", i, groups[i%len(groups)], groups[(i+1)%len(groups)], clusters[(i+1)%4])
	}
	b.WriteString("match ^bench\\.us- send to ch;\n")
	b.WriteString("match \\.jvm\\. \\.redis\\. send to fnv stop;\n")
	b.WriteString("match * send to any;\n")
	return b.String()
}

// routingRun runs polymur -config and carbon-c-relay -f on the same
// configuration and input and reports delivered (against what polymur -test
// says), lines per CPU-second and RSS.
func routingRun(bin, peer string, lines int, timeout time.Duration) ([]string, error) {
	in := generate(lines, 4)
	runs := configRuns(bin, peer, "-config (100 rules, 10 rewrites, 4 clusters)")
	return interleaved("routing", 3, runs, len(in.bufs), func(r run) (measured, error) {
		res, want, err := routingOnce(bin, r.name, r.settings, r.start, in, timeout)
		return measured{res, want}, err
	})
}

// configRuns are polymur -config and carbon-c-relay -f (fair settings) on
// the same file.
func configRuns(bin, peer, settings string, peerExtra ...string) []run {
	runs := []run{{"polymur", settings, func(conf, listen string) (*exec.Cmd, error) {
		cmd := exec.Command(filepath.Join(bin, "polymur"), "-listen-addr", listen, "-api-addr", "", "-stat-addr", "", "-log-level", "warn", "-config", conf)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd, cmd.Start()
	}}}
	if peer != "" {
		runs = append(runs, run{"carbon-c-relay", strings.TrimSpace(fmt.Sprintf("-f (same file) -w %d -q 1000000 -b 10000 %s", runtime.NumCPU(), strings.Join(peerExtra, " "))), func(conf, listen string) (*exec.Cmd, error) {
			_, port, _ := strings.Cut(listen, ":")
			cmd := exec.Command(peer, append([]string{"-f", conf, "-p", port, "-w", fmt.Sprint(runtime.NumCPU()), "-q", "1000000", "-b", "10000"}, peerExtra...)...)
			return cmd, cmd.Start()
		}})
	}
	return runs
}

// run is one relay of a side-by-side scenario: how to start it on a
// configuration file, listening on listen.
type run struct {
	name, settings string
	start          func(conf, listen string) (*exec.Cmd, error)
}

// interleaved runs once for each relay, rounds times with the relays
// interleaved so that the machine's drift falls on both, and gives a row
// per relay (min / median / max lines per CPU-second, the worst round's
// delivery, peak RSS) and the ratio of the medians.
func interleaved(mode string, rounds int, runs []run, conns int, once func(run) (measured, error)) ([]string, error) {
	results := make([][]measured, len(runs))
	for round := range rounds {
		for ri, r := range runs {
			m, err := once(r)
			if err != nil {
				return nil, err
			}
			results[ri] = append(results[ri], m)
			fmt.Printf("%s round %d: %s %s lines/CPU-s\n", mode, round+1, r.name, rate(m.res.perCPU()))
		}
	}
	var rows []string
	var medians []float64
	for ri, rs := range results {
		var cpu []float64
		worst, rss := rs[0], int64(0)
		for _, m := range rs {
			cpu = append(cpu, m.res.perCPU())
			if m.res.delivered*worst.want < worst.res.delivered*m.want {
				worst = m
			}
			rss = max(rss, m.res.rss)
		}
		slices.Sort(cpu)
		medians = append(medians, cpu[len(cpu)/2])
		row := fmt.Sprintf("| %s | %s | %s | %d | %s | %s / **%s** / %s | %s |", runs[ri].name, runs[ri].settings, mode, conns,
			pct(worst.res.delivered, worst.want), rate(cpu[0]), rate(cpu[len(cpu)/2]), rate(cpu[len(cpu)-1]), mib(rss))
		fmt.Println(row)
		rows = append(rows, row)
	}
	if len(medians) == 2 && medians[1] > 0 {
		rows = append(rows, fmt.Sprintf("| **polymur ÷ carbon-c-relay** | median in lines per CPU-second | | | | **%.1f×** | |", medians[0]/medians[1]))
		fmt.Println(rows[len(rows)-1])
	}
	return rows, nil
}

type measured struct {
	res  result
	want int64
}

// routingOnce runs one relay on the routing scenario with fresh sinks.
func routingOnce(bin, name, settings string, start func(conf, listen string) (*exec.Cmd, error), in input, timeout time.Duration) (result, int64, error) {
	var sinks []*sink
	var addrs []string
	for i := range 8 {
		ip := "127.0.0.1"
		if i == 2 || i == 3 {
			ip = fmt.Sprintf("127.0.0.%d", i) // carbon_ch replication 2 wants distinct hosts
		}
		s, err := newSinkOn(ip)
		if err != nil {
			return result{}, 0, err
		}
		defer s.close()
		sinks, addrs = append(sinks, s), append(addrs, s.addr())
	}
	dir, err := os.MkdirTemp("", "polymur-bench-routing")
	if err != nil {
		return result{}, 0, err
	}
	defer os.RemoveAll(dir)
	conf := filepath.Join(dir, "relay.conf")
	if err := os.WriteFile(conf, []byte(routingConfig(addrs)), 0o600); err != nil {
		return result{}, 0, err
	}
	// What the configuration asks for: deliveries per polymur -test.
	test := exec.Command(filepath.Join(bin, "polymur"), "-config", conf, "-test")
	test.Stdin = bytes.NewReader(bytes.Join(in.bufs, nil))
	out, err := test.Output()
	if err != nil {
		return result{}, 0, fmt.Errorf("polymur -test: %v", err)
	}
	want := int64(bytes.Count(out, []byte("\tsend\t")))
	rl := relay{name: name, settings: settings, start: func(_, listen string, _ []string) (*exec.Cmd, error) { return start(conf, listen) }}
	res, err := measure(rl, "routing", sinks, addrs, in, want, timeout)
	return res, want, err
}

func pct(got, want int64) string {
	return fmt.Sprintf("%.2f%% (%d of %d)", 100*float64(got)/float64(max(want, 1)), got, want)
}

func rate(v float64) string { return fmt.Sprintf("%.0fk", v/1000) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

const header = "| relay | settings | mode | conns | delivered | checksum | in lines/s (wall) | in lines/CPU-s | peak RSS | polymur ÷ c-relay (CPU-s) |\n|---|---|---|---|---|---|---|---|---|---|"

// row renders r; fair is the carbon-c-relay row with fair settings for the
// same scenario, when there is one.
func (r result) row(fair *result) string {
	ratio := ""
	if fair != nil && r.relay == "polymur" && fair.perCPU() > 0 {
		ratio = fmt.Sprintf("%.2f×", r.perCPU()/fair.perCPU())
	}
	check := "ok"
	if !r.checksumOK {
		check = "MISMATCH"
	}
	wall, cpu := "— (lost lines)", "—"
	if w := r.perWall(); w > 0 {
		wall, cpu = fmt.Sprintf("%.0fk", w/1000), fmt.Sprintf("%.0fk", r.perCPU()/1000)
	}
	return fmt.Sprintf("| %s | %s | %s | %d | %.2f%% (%d of %d) | %s | %s | %s | %.1f MiB | %s |",
		r.relay, r.settings, r.mode, r.conns, 100*float64(r.delivered)/float64(r.expected), r.delivered, r.expected,
		check, wall, cpu, float64(r.rss)/(1<<20), ratio)
}

func writeReport(o options, results []result, extras []string, note string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# polymur benchmark results\n\n")
	fmt.Fprintf(&b, "%s, %d CPUs (%s), %s. Command: `make bench` (`go run ./bench -lines %d`).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), cpuModel(), runtime.Version(), o.lines)
	b.WriteString("Everything on 127.0.0.1: a Go load generator (pre-generated lines, one connection per client) and Go sinks\n")
	b.WriteString("that count and checksum every line share the machine with the relay. \"in lines/CPU-s\" is input lines per second\n")
	b.WriteString("of relay CPU (utime+stime from /proc); broadcast delivers each input line to both destinations.\n")
	b.WriteString("carbon-c-relay's fair settings give it workers = cores and a queue that does not stall.\n\n")
	if note != "" {
		b.WriteString(note + "\n\n")
	}
	b.WriteString(header + "\n")
	for i, r := range results {
		var fair *result
		for j := range results {
			f := results[j]
			if f.relay == "carbon-c-relay" && f.settings != "defaults" && f.mode == r.mode && f.conns == r.conns {
				fair = &results[j]
			}
		}
		b.WriteString(results[i].row(fair) + "\n")
	}
	if len(extras) > 0 {
		b.WriteString("\n" + strings.Join(extras, "\n") + "\n")
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\n%s\nwritten to %s\n", b.String(), o.out)
	return nil
}

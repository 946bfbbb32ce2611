package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// Python carbon-relay → polymur → three carbon-caches, all real: with
// carbon's default pickle protocol on both sides (carbon-relay's
// DESTINATION_PROTOCOL = pickle into -pickle-addr; -destination-protocol
// pickle into the caches' pickle ports) and with the line protocol. Every
// point is stored, with its value, on the cache carbon's ring names.
func TestPickleThroughRealCarbon(t *testing.T) {
	var caches [3]*testutil.Carbon
	for i := range caches {
		caches[i] = testutil.StartCarbonCache(t)
	}
	for _, proto := range []string{"pickle", "line"} {
		t.Run(proto, func(t *testing.T) {
			var dests []string
			byDest := map[string]*testutil.Carbon{}
			for i, c := range caches {
				addr := c.Line
				if proto == "pickle" {
					addr = c.Pickle
				}
				d := fmt.Sprintf("%s:%c", addr, 'a'+i)
				dests = append(dests, d)
				byDest[d] = c
			}
			d := start(t, "-distribution", "hash-route", "-destinations", strings.Join(dests, ","),
				"-destination-protocol", proto, "-pickle-addr", "127.0.0.1:0")
			in := d.Addrs["listen"]
			if proto == "pickle" {
				in = d.Addrs["pickle"]
			}
			relay := testutil.StartCarbonRelay(t, "RELAY_METHOD = consistent-hashing", "DESTINATIONS = "+in, "DESTINATION_PROTOCOL = "+proto)
			const n = 300
			now := time.Now().Unix() - 30
			var lines, names []string
			for i := range n {
				name := fmt.Sprintf("%s.host%02d.metric%d", proto, i%7, i)
				names = append(names, name)
				lines = append(lines, fmt.Sprintf("%s %d.5 %d", name, i, now))
			}
			c, err := net.Dial("tcp", relay.Line)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte(strings.Join(lines, "\n") + "\n"))
			c.Close()
			var out bytes.Buffer
			run(context.Background(), []string{"-test", "-distribution", "hash-route", "-destinations", strings.Join(dests, ",")},
				strings.NewReader(strings.Join(names, "\n")+"\n"), &out, io.Discard, nil)
			want := map[string]string{}
			for _, row := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				name, dest, _ := strings.Cut(row, "\t")
				want[name] = dest
			}
			stored := func() int {
				k := 0
				for _, c := range caches {
					for _, m := range c.Stored() {
						if strings.HasPrefix(m, proto+".") {
							k++
						}
					}
				}
				return k
			}
			testutil.WaitFor(t, "every point stored", limit, func() bool { return stored() >= n })
			for dest, c := range byDest {
				for _, m := range c.Stored() {
					if strings.HasPrefix(m, proto+".") && want[m] != dest {
						t.Fatalf("%s stored on %s; carbon's ring puts it on %s", m, dest, want[m])
					}
				}
			}
			for _, i := range []int{0, 1, 150, n - 1} {
				dest := want[names[i]]
				vals := byDest[dest].Values(t, names[i])
				if vals[now] != float64(i)+0.5 {
					t.Fatalf("%s on %s holds %v, want %d.5 at %d", names[i], dest, vals, i, now)
				}
			}
			st := d.Ask(t, "api", "stats")
			t.Logf("%s: %d points from carbon-relay stored on the caches carbon's ring names (polymur received %d)", proto, n, testutil.JSONInt(st, "received"))
		})
	}
}

// Plaintext into carbon-cache's pickle port (the README's old example):
// carbon-cache closes each connection right after the first bytes. polymur
// warns, naming the destination and the likely cause, and counts the lines
// (closed_after_write) instead of calling them delivered-and-fine.
func TestProtocolMismatchWarns(t *testing.T) {
	cache := testutil.StartCarbonCache(t)
	d := start(t, "-destinations", cache.Pickle)
	for i := 0; !strings.Contains(d.Stderr.String(), "is it the right protocol"); i++ {
		if i > 600 {
			t.Fatalf("no protocol warning after %d writes; stats %s", i, d.Ask(t, "api", "stats"))
		}
		// One write per connection: the next line waits for carbon-cache
		// to have closed this one.
		before := testutil.JSONInt(d.Ask(t, "api", "stats"), "reconnects")
		d.Send(t, "listen", fmt.Sprintf("mismatch.m%d 1 %d\n", i, time.Now().Unix()))
		testutil.WaitFor(t, "the connection closed after the write", limit, func() bool {
			return testutil.JSONInt(d.Ask(t, "api", "stats"), "reconnects") > before
		})
	}
	st := d.Ask(t, "api", "stats")
	if testutil.JSONInt(st, "closed_after_write") == 0 {
		t.Fatalf("closed_after_write not counted: %s", st)
	}
	if len(cache.Stored()) != 0 {
		t.Fatalf("carbon-cache stored %v from plaintext on its pickle port", cache.Stored())
	}
	t.Logf("warned, %d lines counted closed_after_write, nothing stored", testutil.JSONInt(st, "closed_after_write"))
}

package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// SIGHUP re-reads -config under load: lines keep flowing, none is lost or
// doubled across the swap; after it the new rules apply; a broken file in
// between is logged and changes nothing.
func TestSighupReloadsConfigUnderLoad(t *testing.T) {
	a, b := testutil.NewSink(t), testutil.NewSink(t)
	conf := filepath.Join(t.TempDir(), "relay.conf")
	write := func(s string) { os.WriteFile(conf, []byte(s), 0o600) }
	write(fmt.Sprintf("cluster x forward %s;\ncluster y forward %s;\nmatch ^load\\. send to x;\n", a.Addr(), b.Addr()))
	r := startPolymur(t, "-config", conf)
	l := startLoad(t, r.listen, "load", 20_000, false)
	hup := func(want string, n int) {
		r.Cmd.Process.Signal(syscall.SIGHUP)
		testutil.WaitFor(t, want, limit, func() bool { return strings.Count(r.Logs.String(), want) >= n })
	}
	testutil.WaitFor(t, "load flowing to x", limit, func() bool { return a.Count() > 10_000 })
	write("cluster broken forward;\n")
	hup("configuration not reloaded", 1)
	// Now load goes to y instead: the swap happens under load.
	write(fmt.Sprintf("cluster x forward %s;\ncluster y forward %s;\nmatch ^load\\. send to y;\n", a.Addr(), b.Addr()))
	atSwap := a.Count()
	hup("configuration reloaded", 1)
	testutil.WaitFor(t, "load flowing to y", limit, func() bool { return b.Count() > 10_000 })
	write(fmt.Sprintf("cluster both forward %s %s;\nmatch * send to both;\n", a.Addr(), b.Addr()))
	hup("configuration reloaded", 2)
	time.Sleep(500 * time.Millisecond)
	n, sum := l.Stop(t)
	// Every line went to x (before the swap), y (after it), or both (last
	// config): distinct lines seen must be all n, and a line is on both
	// sinks only under the last configuration.
	testutil.WaitFor(t, "every line delivered", limit, func() bool {
		return uniqAcross(a, b) >= n
	})
	time.Sleep(300 * time.Millisecond)
	distinct := uniqAcross(a, b)
	_, dupA := uniq(a)
	_, dupB := uniq(b)
	t.Logf("%d lines under load across 2 reloads and a broken file: %d distinct delivered (checksum %x), %d at x before the swap", n, distinct, sum, atSwap)
	if distinct != n || dupA != 0 || dupB != 0 {
		t.Fatalf("%d sent, %d distinct delivered, doubled at x %d, at y %d", n, distinct, dupA, dupB)
	}
	r.Stop(t)
}

// uniqAcross counts the distinct lines the sinks hold together.
func uniqAcross(sinks ...*testutil.Sink) int {
	seen := map[string]bool{}
	for _, s := range sinks {
		for _, l := range s.Lines() {
			seen[l] = true
		}
	}
	return len(seen)
}

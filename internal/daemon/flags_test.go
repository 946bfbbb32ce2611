package daemon

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// An empty variable turns a string flag off (an environment file's
// "POLYMUR_STAT_ADDR="); for other kinds it is as if unset; a bad value
// names the variable and the flag; the command line wins.
func TestParseFlagsEnvironment(t *testing.T) {
	parse := func(args ...string) (*flag.FlagSet, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("stat-addr", "localhost:2020", "")
		fs.Int("queue-cap", 7, "")
		fs.Duration("wait", time.Second, "")
		fs.Bool("debug", false, "")
		return fs, ParseFlags(fs, "PFTEST", args)
	}
	t.Setenv("PFTEST_STAT_ADDR", "")
	t.Setenv("PFTEST_QUEUE_CAP", "")
	t.Setenv("PFTEST_WAIT", "5s")
	t.Setenv("PFTEST_DEBUG", "")
	fs, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"stat-addr": "", "queue-cap": "7", "wait": "5s", "debug": "false"} {
		if got := fs.Lookup(name).Value.String(); got != want {
			t.Errorf("-%s = %q, want %q", name, got, want)
		}
	}
	if fs, _ := parse("-stat-addr", "127.0.0.1:1"); fs.Lookup("stat-addr").Value.String() != "127.0.0.1:1" {
		t.Error("the command line did not win")
	}
	t.Setenv("PFTEST_QUEUE_CAP", "many")
	if _, err := parse(); err == nil || !strings.Contains(err.Error(), "PFTEST_QUEUE_CAP") || !strings.Contains(err.Error(), "-queue-cap") {
		t.Fatalf("bad value: %v", err)
	}
}

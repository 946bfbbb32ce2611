package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Carbon is a real Python carbon daemon (Debian's graphite-carbon:
// carbon-cache or carbon-relay) on loopback ports of the test.
type Carbon struct {
	*Proc
	Dir          string
	Line, Pickle string // its line and pickle receiver addresses
}

// carbonBin returns the path of carbon-cache or carbon-relay; without
// graphite-carbon the test is skipped, except under CI, where it fails
// (`make test` installs the package).
func carbonBin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		_, err = exec.LookPath("whisper-fetch")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s or whisper-fetch not installed (make test installs graphite-carbon and python3-whisper)", name)
		}
		t.Skipf("%s not installed; make test installs graphite-carbon", name)
	}
	return p
}

// StartCarbonCache starts carbon-cache storing every metric at 1-second
// resolution for an hour (so points must carry recent timestamps).
func StartCarbonCache(t testing.TB) *Carbon {
	return startCarbon(t, "carbon-cache", "")
}

// StartCarbonRelay starts carbon-relay with relay settings (carbon.conf
// [relay] lines such as "DESTINATIONS = 127.0.0.1:2004" and
// "DESTINATION_PROTOCOL = pickle").
func StartCarbonRelay(t testing.TB, relay ...string) *Carbon {
	return startCarbon(t, "carbon-relay", strings.Join(relay, "\n"))
}

func startCarbon(t testing.TB, name, relay string) *Carbon {
	t.Helper()
	bin := carbonBin(t, name)
	c := &Carbon{Dir: t.TempDir(), Line: FreeAddr(t), Pickle: FreeAddr(t)}
	port := func(a string) string { _, p, _ := net.SplitHostPort(a); return p }
	var conf strings.Builder
	fmt.Fprintf(&conf, `[cache]
STORAGE_DIR = %[1]s/storage/
LOCAL_DATA_DIR = %[1]s/storage/whisper/
WHITELISTS_DIR = %[1]s/storage/lists/
CONF_DIR = %[1]s/
LOG_DIR = %[1]s/log/
PID_DIR = %[1]s/
USER =
ENABLE_UDP_LISTENER = False
MAX_CREATES_PER_MINUTE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CACHE_SIZE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = %[2]s
`, c.Dir, port(FreeAddr(t)))
	if name == "carbon-relay" {
		fmt.Fprintf(&conf, "LINE_RECEIVER_PORT = %s\nPICKLE_RECEIVER_PORT = %s\n\n[relay]\nUSER =\nLINE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\nMAX_QUEUE_SIZE = 100000\n%s\n",
			port(FreeAddr(t)), port(FreeAddr(t)), relay)
	}
	fmt.Fprintf(&conf, "LINE_RECEIVER_PORT = %s\nPICKLE_RECEIVER_PORT = %s\n", port(c.Line), port(c.Pickle))
	os.MkdirAll(filepath.Join(c.Dir, "log"), 0o755)
	os.MkdirAll(filepath.Join(c.Dir, "storage", "whisper"), 0o755)
	os.WriteFile(filepath.Join(c.Dir, "carbon.conf"), []byte(conf.String()), 0o644)
	os.WriteFile(filepath.Join(c.Dir, "storage-schemas.conf"), []byte("[all]\npattern = .*\nretentions = 1s:1h\n"), 0o644)
	os.WriteFile(filepath.Join(c.Dir, "storage-aggregation.conf"), []byte("[all]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n"), 0o644)
	c.Proc = StartProc(t, bin, nil, "--config="+filepath.Join(c.Dir, "carbon.conf"), "--nodaemon", "start")
	WaitFor(t, name+" listening", time.Minute, func() bool {
		if c.Exited() {
			t.Fatalf("%s exited:\n%s", name, c.Logs)
		}
		conn, err := net.Dial("tcp", c.Line)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	return c
}

// Stored returns the metrics carbon-cache has created a whisper file for.
func (c *Carbon) Stored() []string {
	root := filepath.Join(c.Dir, "storage", "whisper")
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.HasSuffix(p, ".wsp") {
			rel, _ := filepath.Rel(root, strings.TrimSuffix(p, ".wsp"))
			out = append(out, strings.ReplaceAll(rel, string(filepath.Separator), "."))
		}
		return nil
	})
	return out
}

// Values returns the points whisper-fetch reads for metric: timestamp →
// value, leaving out empty slots.
func (c *Carbon) Values(t testing.TB, metric string) map[int64]float64 {
	t.Helper()
	path := filepath.Join(c.Dir, "storage", "whisper", strings.ReplaceAll(metric, ".", string(filepath.Separator))+".wsp")
	out, err := exec.Command("whisper-fetch", "--from=0", path).Output()
	if err != nil {
		t.Fatalf("whisper-fetch %s: %v", path, err)
	}
	vals := map[int64]float64{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || f[1] == "None" {
			continue
		}
		ts, _ := strconv.ParseInt(f[0], 10, 64)
		v, _ := strconv.ParseFloat(f[1], 64)
		vals[ts] = v
	}
	return vals
}

package faults

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// unit is what systemd takes from a packaged .service file to start it.
type unit struct {
	exec, envFile string
	stopTimeout   time.Duration
}

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var u unit
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		switch k {
		case "ExecStart":
			u.exec = v
		case "EnvironmentFile":
			u.envFile = strings.TrimPrefix(v, "-")
		case "TimeoutStopSec":
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: TimeoutStopSec=%s", path, v)
			}
			u.stopTimeout = time.Duration(n) * time.Second
		}
	}
	if u.exec == "" || u.envFile == "" || u.stopTimeout == 0 {
		t.Fatalf("%s: ExecStart, EnvironmentFile or TimeoutStopSec missing: %+v", path, u)
	}
	return u
}

// envFile reads an /etc/default file as systemd does: KEY=VALUE lines,
// comments and blank lines skipped.
func envFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !strings.Contains(l, "=") {
			t.Fatalf("%s: %q is not KEY=VALUE", path, l)
		}
		env = append(env, l)
	}
	return env
}

// startUnit starts a packaged unit's ExecStart from the unpacked root the
// way systemd would: no arguments, the environment of its EnvironmentFile
// (as shipped, plus what an operator would set there) and nothing else.
func startUnit(t *testing.T, root, name string, settings ...string) (*exec.Cmd, unit, *testutil.SyncBuffer) {
	t.Helper()
	u := readUnit(t, filepath.Join(root, "lib/systemd/system", name+".service"))
	env := append(envFile(t, filepath.Join(root, u.envFile)), settings...)
	cmd := exec.Command(filepath.Join(root, u.exec))
	cmd.Env = append(env, "PATH=/usr/bin:/bin")
	logs := &testutil.SyncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, u, logs
}

// waitLog waits for a daemon's log to say want; a daemon that exited
// instead fails at once with its log.
func waitLog(t *testing.T, logs *testutil.SyncBuffer, want string) {
	t.Helper()
	testutil.WaitFor(t, want, 30*time.Second, func() bool {
		if strings.Contains(logs.String(), "level=ERROR") {
			t.Fatalf("waiting for %q:\n%s", want, logs)
		}
		return strings.Contains(logs.String(), want)
	})
}

// stopUnit sends the unit's KillSignal (SIGTERM) and wants a clean exit
// within its TimeoutStopSec.
func stopUnit(t *testing.T, name string, cmd *exec.Cmd, u unit, logs *testutil.SyncBuffer) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s stopped with %v:\n%s", name, err, logs.String())
		}
	case <-time.After(u.stopTimeout):
		t.Errorf("%s did not stop within TimeoutStopSec=%s", name, u.stopTimeout)
	}
}

// The packaged units start the daemons: proxy → gateway → polymur → a sink,
// each configured only through its unit's environment file, carry lines
// end to end, and stop cleanly on the unit's signal.
func testUnitsStart(t *testing.T, root string) {
	sink := testutil.NewSink(t)
	relayAddr, relayAdmin, gwAddr, pxAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	relay, ru, rlogs := startUnit(t, root, "polymur", "POLYMUR_LISTEN_ADDR="+relayAddr, "POLYMUR_DESTINATIONS="+sink.Addr(),
		"POLYMUR_API_ADDR=", "POLYMUR_STAT_ADDR=", "POLYMUR_ADMIN_ADDR="+relayAdmin, "POLYMUR_SPOOL_DIR="+t.TempDir())
	testutil.WaitFor(t, "polymur ready", limit, func() bool {
		resp, err := http.Get("http://" + relayAdmin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	gwHost, gwPort, _ := strings.Cut(gwAddr, ":")
	gw, gu, glogs := startUnit(t, root, "polymur-gateway", "POLYMUR_GW_DEV_MODE=true", "POLYMUR_GW_LISTEN_ADDR="+gwHost,
		"POLYMUR_GW_LISTEN_HTTP_PORT="+gwPort, "POLYMUR_GW_DESTINATIONS="+relayAddr, "POLYMUR_GW_API_ADDR=", "POLYMUR_GW_STAT_ADDR=")
	px, pu, plogs := startUnit(t, root, "polymur-proxy", "POLYMUR_PROXY_GATEWAY=http://"+gwAddr, "POLYMUR_PROXY_API_KEY=123",
		"POLYMUR_PROXY_LISTEN_ADDR="+pxAddr, "POLYMUR_PROXY_API_ADDR=", "POLYMUR_PROXY_STAT_ADDR=", "POLYMUR_PROXY_FLUSH_INTERVAL=100ms")
	waitLog(t, rlogs, "metrics listener started")
	waitLog(t, glogs, "http listening")
	waitLog(t, plogs, "metrics listener started")
	var lines []string
	for i := range 100 {
		lines = append(lines, fmt.Sprintf("unit.m%d %d 1700000000", i, i))
	}
	testutil.SendTCP(t, pxAddr, []byte(strings.Join(lines, "\n")+"\n"))
	if !sink.WaitCount(100, limit) {
		t.Fatalf("through the packaged units: %d of 100\nproxy:\n%s\ngateway:\n%s\npolymur:\n%s", sink.Count(), plogs, glogs, rlogs)
	}
	stopUnit(t, "polymur-proxy", px, pu, plogs)
	stopUnit(t, "polymur-gateway", gw, gu, glogs)
	stopUnit(t, "polymur", relay, ru, rlogs)
	if sink.Count() != 100 || sink.Sum() != testutil.Checksum(lines...) {
		t.Fatalf("sink has %d lines, want the 100 sent once", sink.Count())
	}
}

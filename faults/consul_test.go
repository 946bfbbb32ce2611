package faults

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

func pgwKey(t *testing.T, consulAddr string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin("pgw-key"), args...)
	cmd.Env = append(cmd.Environ(), "CONSUL_HTTP_ADDR="+consulAddr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgw-key %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

// ingest POSTs lines to a gateway's /ingest with key and returns the status
// (0 when the gateway cannot be reached).
func ingest(url, key, lines string) int {
	req, _ := http.NewRequest(http.MethodPost, url+"/ingest", bytes.NewReader(gzipped(lines)))
	req.Header.Set("X-Polymur-Key", key)
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Case 5: the real Consul agent stops and starts again. The gateway keeps
// serving the keys it has; once Consul is back, a key deleted there is
// refused within one -key-refresh.
func TestConsulStopAndRestart(t *testing.T) {
	consul := testutil.StartConsul(t)
	keyOf := func(out string) string {
		f := strings.Fields(out)
		return f[len(f)-1]
	}
	keyA := keyOf(pgwKey(t, consul.Addr, "create", "site-a"))
	keyB := keyOf(pgwKey(t, consul.Addr, "create", "site-b"))

	sink := testutil.NewCountingSink(t)
	const refresh = 3 * time.Second
	gwAddr, gwAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(gwAddr)
	gw := testutil.StartProc(t, bin("polymur-gateway"), []string{"CONSUL_HTTP_ADDR=" + consul.Addr},
		"-listen-addr", "127.0.0.1", "-listen-http-port", port, "-api-addr", gwAPI, "-stat-addr", "",
		"-destinations", sink.Addr(), "-key-refresh", refresh.String())
	url := "http://" + gwAddr
	accepted := 0
	send := func(key string) int {
		code := ingest(url, key, fmt.Sprintf("consul.fault.m%d 1 1700000000\n", accepted))
		if code == 200 {
			accepted++
		}
		return code
	}
	testutil.WaitFor(t, "keys loaded from Consul", limit, func() bool { return send(keyA) == 200 })
	if code := send(keyB); code != 200 {
		t.Fatalf("site-b: %d", code)
	}

	consul.Stop()
	t.Log("Consul stopped")
	testutil.WaitFor(t, "a failed key sync", limit, func() bool {
		return testutil.JSONInt(testutil.Ask(gwAPI, "stats"), "sync_errors") > 0
	})
	time.Sleep(2 * refresh) // several failed syncs
	for _, k := range []string{keyA, keyB} {
		if code := send(k); code != 200 {
			t.Fatalf("with Consul down a cached key got %d", code)
		}
	}
	if code := send("not-a-key"); code != 401 {
		t.Fatalf("with Consul down an unknown key got %d", code)
	}

	consul.Start()
	t.Log("Consul started again")
	pgwKey(t, consul.Addr, "delete", "site-b")
	deleted := time.Now()
	testutil.WaitFor(t, "the deleted key refused", limit, func() bool { return send(keyB) == 401 })
	took := time.Since(deleted)
	t.Logf("deleted key refused %v after the delete (-key-refresh %v)", took.Round(10*time.Millisecond), refresh)
	if took > refresh+2*time.Second { // 2 s of slack for a loaded machine
		t.Fatalf("the deleted key was accepted for %v, more than one refresh (%v)", took, refresh)
	}
	if code := send(keyA); code != 200 {
		t.Fatalf("site-a after the restart: %d", code)
	}
	if !sink.WaitCount(accepted, limit) || sink.Count() != accepted {
		t.Fatalf("sink holds %d lines, the gateway accepted %d", sink.Count(), accepted)
	}
	gw.Stop(t)
}

package faults

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/polymur/polymur/internal/testutil"
)

// Strangers steering the stream, against the built daemons: a cross-site
// form post (what any web page the operator opens can send) and a
// DNS-rebinding request never add a destination — not with the defaults
// (writes off) and not with -admin-write on (token, Origin and Host
// checked); nothing reaches the state file. pprof, whose cmdline shows a
// proxy's -api-key, is off by default.
func TestCrossSiteAdminRequests(t *testing.T) {
	s, attacker := testutil.NewSink(t), testutil.NewSink(t)
	state := t.TempDir() + "/state.json"
	hostile := func(base string) {
		for _, hdr := range []map[string]string{
			{"Content-Type": "text/plain", "Origin": "http://attacker.example"},
			{"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site", "Authorization": "Bearer wrong-token-wrong-token"},
			{"Host": "rebind.evil.example:2040"},
		} {
			if code, _ := testutil.Request(t, http.MethodPost, base+"/api/v1/destinations?destination="+attacker.Addr(), "x", hdr); code != 403 && code != 401 {
				t.Fatalf("hostile POST %v answered %d", hdr, code)
			}
		}
	}
	for _, args := range [][]string{
		{"-admin-addr", testutil.FreeAddr(t)},
		{"-admin-addr", testutil.FreeAddr(t), "-admin-write"},
	} {
		admin := args[1]
		r := &relay{listen: testutil.FreeAddr(t), api: testutil.FreeAddr(t)}
		r.args = append([]string{"-listen-addr", r.listen, "-api-addr", r.api, "-stat-addr", "", "-destinations", s.Addr(), "-state-file", state}, args...)
		r.Proc = testutil.StartProc(t, bin("polymur"), []string{"POLYMUR_ADMIN_TOKEN=fault-suite-admin-token"}, r.args...)
		testutil.WaitFor(t, "polymur API", limit, func() bool { return testutil.Ask(r.api, "ping") == "pong" })
		hostile("http://" + admin)
		if got := testutil.Ask(r.api, "getdest"); strings.Contains(got, attacker.Addr()) {
			t.Fatalf("%v: a hostile request registered %s", args, attacker.Addr())
		}
		r.Stop(t)
	}
	if b, _ := os.ReadFile(state); strings.Contains(string(b), attacker.Addr()) {
		t.Fatalf("the state file kept the attacker: %s", b)
	}
	adm := testutil.FreeAddr(t)
	px := testutil.StartProc(t, bin("polymur-proxy"), nil, "-listen-addr", testutil.FreeAddr(t), "-stat-addr", "", "-admin-addr", adm,
		"-gateway", "http://127.0.0.1:1", "-api-key", "secret-api-key")
	testutil.WaitFor(t, "proxy admin", limit, func() bool {
		resp, err := http.Get("http://" + adm + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if code, body := testutil.Get(t, "http://"+adm+"/debug/pprof/cmdline"); code != 403 || strings.Contains(body, "secret-api-key") {
		t.Fatalf("proxy pprof cmdline by default: %d %q", code, body)
	}
	px.Stop(t)
}

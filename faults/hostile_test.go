package faults

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// lineCase is hostile input on a metrics port. After it the same connection
// carries a valid marker line (unless noMarker), and the daemon must deliver
// want lines (marker included) and count rejected lines under reason.
type lineCase struct {
	name     string
	data     []byte
	want     int    // lines delivered, marker included; -1: not counted (random bytes)
	reason   string // listener rejection counter that must grow, "" for none
	rejected int
	noMarker bool // the input ends the connection (no newline); marker goes on a new one
}

func lineCorpus() []lineCase {
	random := make([]byte, 64<<10)
	rand.Read(random)
	return []lineCase{
		{name: "blank lines", data: []byte("\n\n"), want: 1, reason: "empty", rejected: 2},
		{name: "whitespace only", data: []byte(" \t \r\n"), want: 1, reason: "empty", rejected: 1},
		{name: "one field", data: []byte("lonely.metric\n"), want: 1, reason: "fields", rejected: 1},
		{name: "two fields", data: []byte("two.fields 1\n"), want: 1, reason: "fields", rejected: 1},
		{name: "four fields", data: []byte("four.fields 1 1700000000 extra\n"), want: 1, reason: "fields", rejected: 1},
		{name: "NaN value", data: []byte("nan.metric nan 1700000000\n"), want: 1, reason: "nan", rejected: 1},
		{name: "Inf value (carbon takes it)", data: []byte("inf.metric inf 1700000000\n"), want: 2},
		{name: "non-numeric value", data: []byte("word.metric abc 1700000000\n"), want: 1, reason: "value", rejected: 1},
		{name: "non-numeric timestamp", data: []byte("ts.metric 1 yesterday\n"), want: 1, reason: "timestamp", rejected: 1},
		{name: "CRLF ending", data: []byte("crlf.metric 1 1700000000\r\n"), want: 2},
		{name: "extra spaces and tabs", data: []byte("  spaced.metric \t 1   1700000000  \n"), want: 2},
		{name: "NUL in the name", data: []byte("nul\x00metric 1 1700000000\n"), want: 1, reason: "name", rejected: 1},
		{name: "invalid UTF-8 name", data: []byte("bad\xffname 1 1700000000\n"), want: 1, reason: "name", rejected: 1},
		{name: "tagged name;k=v", data: []byte("tagged.metric;dc=eu;host=a 1 1700000000\n"), want: 2},
		{name: "1 MiB line", data: append(bytes.Repeat([]byte("x"), 1<<20), '\n'), want: 1, reason: "too_long", rejected: 1},
		{name: "random binary", data: random, want: -1},
		{name: "10 MiB line without newline", data: bytes.Repeat([]byte("y"), 10<<20), want: 1, reason: "too_long", rejected: 1, noMarker: true},
		{name: "connect and close", data: nil, want: 1, noMarker: true},
	}
}

// rejected reads the listener's rejection counters from a stats reply.
func rejected(t *testing.T, api string) map[string]int {
	t.Helper()
	var s struct {
		Listener struct {
			Rejected map[string]int `json:"lines_rejected"`
		} `json:"listener"`
	}
	if err := json.Unmarshal([]byte(testutil.Ask(api, "stats")), &s); err != nil {
		t.Fatalf("stats: %v", err)
	}
	return s.Listener.Rejected
}

// runLineCorpus sends every case to listen and checks deliveries at sink and
// rejection counters on api; alive fails the test if the daemon died.
func runLineCorpus(t *testing.T, listen, api string, sink *testutil.Sink, alive func() bool) {
	for i, tc := range lineCorpus() {
		t.Run(tc.name, func(t *testing.T) {
			marker := fmt.Sprintf("marker.case%d 1 1700000000\n", i)
			before, rejBefore := sink.Count(), rejected(t, api)
			c, err := net.Dial("tcp", listen)
			if err != nil {
				t.Fatal(err)
			}
			c.Write(tc.data)
			if tc.noMarker {
				c.Close()
				testutil.SendTCP(t, listen, []byte(marker))
			} else {
				if len(tc.data) > 0 && tc.data[len(tc.data)-1] != '\n' {
					c.Write([]byte("\n")) // ends the random bytes
				}
				c.Write([]byte(marker))
				c.Close()
			}
			if tc.want < 0 {
				testutil.WaitFor(t, "the marker", limit, func() bool {
					for _, l := range sink.Lines()[before:] {
						if l+"\n" == marker {
							return true
						}
					}
					return false
				})
			} else {
				if !sink.WaitCount(before+tc.want, limit) {
					t.Fatalf("delivered %d lines, want %d", sink.Count()-before, tc.want)
				}
				time.Sleep(50 * time.Millisecond)
				if got := sink.Count() - before; got != tc.want {
					t.Fatalf("delivered %d lines, want %d: %q", got, tc.want, sink.Lines()[before:])
				}
				if last := sink.Lines()[sink.Count()-1]; last+"\n" != marker {
					t.Fatalf("last line %q, want the marker", last)
				}
			}
			if tc.reason != "" {
				testutil.WaitFor(t, "the rejection counted", 10*time.Second, func() bool {
					return rejected(t, api)[tc.reason]-rejBefore[tc.reason] == tc.rejected
				})
			}
			if !alive() {
				t.Fatal("the daemon died")
			}
		})
	}
}

func TestHostileInputPolymur(t *testing.T) {
	sink := testutil.NewSink(t)
	r := startPolymur(t, "-destinations", sink.Addr())
	alive := func() bool { return !r.Exited() && testutil.Ask(r.api, "ping") == "pong" }
	t.Run("metrics port", func(t *testing.T) { runLineCorpus(t, r.listen, r.api, sink, alive) })

	t.Run("API port", func(t *testing.T) {
		other := testutil.NewSink(t)
		for _, tc := range []struct{ name, cmd, want string }{
			{"empty line", "", "Error: empty command"},
			{"whitespace line", "  \t ", "Error: empty command"},
			{"unknown command", "frobnicate now", "Not a command: frobnicate"},
			{"1 MiB line", strings.Repeat("z", 1<<20), "Error: command longer than"},
			{"binary command", "\x00\xff\x01 putdest", "Not a command"},
			{"putdest garbage", "putdest garbage!!", "Error: "},
			{"putdest without an argument", "putdest", "Must provide destination"},
			{"putdest port out of range", "putdest 127.0.0.1:99999", "Error: "},
			{"putdest IPv6 loopback", "putdest [::1]:" + portOf(other.Addr()) + ":v6", "Registered destination: [::1]:"},
			{"putdest duplicate", "putdest [::1]:" + portOf(other.Addr()) + ":v6", "Error: "},
			{"deldest unknown", "deldest 127.0.0.1:1", "Error: "},
			{"deldest IPv6", "deldest [::1]:" + portOf(other.Addr()) + ":v6", "Unregistered destination: [::1]:"},
			{"route without a metric", "route", "Must provide metric"},
			{"command in capitals", "PING", "pong"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := testutil.Ask(r.api, tc.cmd)
				if !strings.HasPrefix(got, tc.want) {
					t.Fatalf("%q → %q, want %q...", truncate(tc.cmd), got, tc.want)
				}
				if !alive() {
					t.Fatal("the daemon died")
				}
			})
		}
		t.Run("connect and close", func(t *testing.T) {
			for _, addr := range []string{r.listen, r.api} {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			if !alive() {
				t.Fatal("the daemon died")
			}
		})
	})
	r.Stop(t)
}

func TestHostileInputProxy(t *testing.T) {
	sink := testutil.NewSink(t)
	gw := startDevGateway(t, sink.Addr())
	pxListen, pxAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
	px := testutil.StartProc(t, bin("polymur-proxy"), nil, "-gateway", "http://"+gw.addr, "-api-key", "123",
		"-listen-addr", pxListen, "-api-addr", pxAPI, "-stat-addr", "", "-flush-interval", "20ms")
	testutil.WaitFor(t, "proxy", limit, func() bool { return testutil.Ask(pxAPI, "ping") == "pong" })
	alive := func() bool { return !px.Exited() && testutil.Ask(pxAPI, "ping") == "pong" }
	runLineCorpus(t, pxListen, pxAPI, sink, alive)
	px.Stop(t)
	gw.Stop(t)
}

// Gateway bodies and requests, against the running binary.
func TestHostileInputGateway(t *testing.T) {
	sink := testutil.NewSink(t)
	gw := startDevGateway(t, sink.Addr())
	gwAddr, gwAPI := gw.addr, gw.api
	url := "http://" + gwAddr

	good := gzipped("gw.good 1 1700000000\n")
	twoMembers := append(gzipped("gw.member1 1 1700000000\n"), gzipped("gw.member2 1 1700000000\n")...)
	noNewline := gzipped("gw.last 1 1700000000")
	var bomb bytes.Buffer // ≥ 1 GiB of zeros as 1024 gzip members of 1 MiB
	member := gzipped(string(make([]byte, 1<<20)))
	for range 1024 {
		bomb.Write(member)
	}
	for _, tc := range []struct {
		name, method, path, key string
		body                    []byte
		header                  map[string]string
		code, delivered         int
	}{
		{name: "good batch", body: good, code: 200, delivered: 1},
		{name: "not gzip", body: []byte("gw.plain 1 1700000000\n"), code: 400},
		{name: "empty body", body: nil, code: 400},
		{name: "truncated gzip", body: good[:len(good)-6], code: 400},
		{name: "gzip header only", body: good[:10], code: 400},
		{name: "concatenated gzip members", body: twoMembers, code: 200, delivered: 2},
		{name: "last line without newline", body: noNewline, code: 200, delivered: 1},
		{name: "gzip bomb (1 GiB inflated)", body: bomb.Bytes(), code: 413},
		{name: "missing key", key: "\x00", body: good, code: 401},
		{name: "empty key", key: "", body: good, code: 401},
		{name: "whitespace key", key: "   ", body: good, code: 401},
		{name: "wrong key", key: "1234", body: good, code: 401},
		{name: "GET /ingest", method: http.MethodGet, code: 405},
		{name: "PUT /ingest", method: http.MethodPut, body: good, code: 405},
		{name: "unknown path", path: "/admin", body: good, code: 404},
		{name: "huge headers", body: good, header: map[string]string{"X-Junk": strings.Repeat("j", 2<<20)}, code: 431},
		{name: "ping with a good key", path: "/ping", code: 200},
		{name: "ping with a wrong key", path: "/ping", key: "nope", code: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method, path, key := tc.method, tc.path, tc.key
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/ingest"
			}
			if key == "" && !strings.Contains(tc.name, "empty key") {
				key = "123"
			}
			req, _ := http.NewRequest(method, url+path, bytes.NewReader(tc.body))
			if key != "\x00" {
				req.Header["X-Polymur-Key"] = []string{key}
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			before := sink.Count()
			resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, strings.TrimSpace(string(msg)), tc.code)
			}
			if tc.code >= 400 && len(bytes.TrimSpace(msg)) == 0 {
				t.Fatalf("%d without a reason", tc.code)
			}
			if tc.delivered > 0 && !sink.WaitCount(before+tc.delivered, limit) {
				t.Fatalf("delivered %d, want %d", sink.Count()-before, tc.delivered)
			}
			if got := sink.Count() - before; got != tc.delivered {
				t.Fatalf("delivered %d lines, want %d", got, tc.delivered)
			}
		})
	}
	if l := sink.Lines(); l[len(l)-1] != "gw.last 1 1700000000" {
		t.Fatalf("last line without newline arrived as %q", l[len(l)-1])
	}

	t.Run("slowloris", func(t *testing.T) {
		// Clients that trickle headers are cut off by the server's
		// read-header timeout and do not hold others up.
		var slow []net.Conn
		for range 50 {
			c, err := net.Dial("tcp", gwAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "POST /ingest HTTP/1.1\r\nHost: gw\r\n")
			slow = append(slow, c)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
				for _, c := range slow {
					c.Write([]byte("X"))
				}
			}
		}()
		if code := ingest(url, "123", "gw.during.slowloris 1 1700000000\n"); code != 200 {
			t.Fatalf("a normal client got %d while slow clients trickle", code)
		}
		c := slow[0]
		c.SetReadDeadline(time.Now().Add(limit))
		start := time.Now()
		io.ReadAll(c) // returns when the server closes it
		t.Logf("the gateway cut a slowloris client off after %v", time.Since(start).Round(100*time.Millisecond))
	})
	t.Run("connect and close", func(t *testing.T) {
		for _, addr := range []string{gwAddr, gwAPI} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		if code := ingest(url, "123", "gw.after 1 1700000000\n"); code != 200 {
			t.Fatalf("after connect-and-close: %d", code)
		}
	})
	gw.Stop(t)
}

// Odd entries in the Consul key folder never grant access.
func TestHostileConsulEntries(t *testing.T) {
	consul := testutil.StartConsul(t)
	consul.Put("polymur/gateway/keys/", nil)                           // the folder entry, empty value
	consul.Put("polymur/gateway/keys", []byte("bare-prefix-key"))      // the bare prefix path
	consul.Put("polymur/gateway/keys-old/site", []byte("sibling-key")) // a sibling prefix
	consul.Put("polymur/gateway/keys/nested/site", []byte("nested-key"))
	consul.Put("polymur/gateway/keys/binary", []byte{0xff, 0xfe, 0x00, 'k'}) // not UTF-8
	consul.Put("polymur/gateway/keys/blank", []byte("   "))
	consul.Put("polymur/gateway/keys/good", []byte("good-key"))
	sink := testutil.NewCountingSink(t)
	gwAddr, gwAPI := testutil.FreeAddr(t), testutil.FreeAddr(t)
	gw := testutil.StartProc(t, bin("polymur-gateway"), []string{"CONSUL_HTTP_ADDR=" + consul.Addr},
		"-listen-addr", "127.0.0.1", "-listen-http-port", portOf(gwAddr), "-api-addr", gwAPI, "-stat-addr", "",
		"-destinations", sink.Addr())
	url := "http://" + gwAddr
	testutil.WaitFor(t, "the good key", limit, func() bool { return ingest(url, "good-key", "consul.ok 1 1700000000\n") == 200 })
	for _, k := range []string{"", " ", "bare-prefix-key", "sibling-key", "nested-key", "   ", "\xff\xfe"} {
		if code := ingest(url, k, "consul.bad 1 1700000000\n"); code != 401 && code != 0 {
			t.Errorf("key %q: %d, want 401", k, code)
		}
	}
	var st struct {
		Keys struct {
			Keys int `json:"keys"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(testutil.Ask(gwAPI, "stats")), &st); err != nil || st.Keys.Keys != 1 {
		t.Errorf("gateway holds %d keys (%v), want 1", st.Keys.Keys, err)
	}
	gw.Stop(t)
}

// Bad flags, bad env values and a port in use stop every daemon at start
// with a message naming the flag or variable.
func TestHostileConfiguration(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inUse := busy.Addr().String()
	for _, tc := range []struct {
		name, cmd string
		args, env []string
		want      string
	}{
		{"polymur bad enum", "polymur", []string{"-distribution", "round-robin"}, nil, "-distribution"},
		{"polymur bad int env", "polymur", nil, []string{"POLYMUR_OUTGOING_QUEUE_CAP=lots"}, "POLYMUR_OUTGOING_QUEUE_CAP"},
		{"polymur port in use", "polymur", []string{"-listen-addr", inUse}, nil, "-listen-addr"},
		{"polymur bad destination", "polymur", []string{"-destinations", "nohost"}, nil, "-destinations"},
		{"gateway bad enum", "polymur-gateway", []string{"-dev-mode", "-distribution", "x"}, nil, "-distribution"},
		{"gateway bad int env", "polymur-gateway", []string{"-dev-mode"}, []string{"POLYMUR_GW_INCOMING_QUEUE_CAP=1e9x"}, "POLYMUR_GW_INCOMING_QUEUE_CAP"},
		{"gateway port in use", "polymur-gateway", []string{"-dev-mode", "-listen-addr", "127.0.0.1", "-listen-http-port", portOf(inUse)}, nil, "-listen-http-port"},
		{"proxy bad enum", "polymur-proxy", []string{"-console-out", "-validation", "lenient"}, nil, "-validation"},
		{"proxy bad int env", "polymur-proxy", []string{"-console-out"}, []string{"POLYMUR_PROXY_WORKERS=three"}, "POLYMUR_PROXY_WORKERS"},
		{"proxy port in use", "polymur-proxy", []string{"-console-out", "-listen-addr", inUse}, nil, "-listen-addr"},
		{"pgw-key unknown command", "pgw-key", []string{"explode"}, nil, "Not a valid command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.cmd != "pgw-key" {
				args = append([]string{"-api-addr", "", "-stat-addr", "", "-listen-addr", "127.0.0.1:0"}, args...)
				if tc.cmd == "polymur-gateway" {
					args = append([]string{"-listen-http-port", "0"}, args...)
					args[len(args)-len(tc.args)-1] = "127.0.0.1" // the gateway's -listen-addr is a host
				}
			}
			cmd := exec.Command(bin(tc.cmd), args...)
			cmd.Env = append(cmd.Environ(), tc.env...)
			done := make(chan struct{})
			var out []byte
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatal("did not exit")
			}
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("err %v, output %q: want a failure naming %q", err, out, tc.want)
			}
		})
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Hostile pickle frames against the running binary's -pickle-addr: each is
// counted by its reason and closes only its own connection; a good frame
// on the next connection is still delivered.
func TestHostilePickle(t *testing.T) {
	sink := testutil.NewSink(t)
	pickle := testutil.FreeAddr(t)
	r := startPolymur(t, "-destinations", sink.Addr(), "-pickle-addr", pickle, "-pickle-max-frame", "65536")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "decode", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	frame := func(p []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...) }
	good := frame(read("lists.pickle")) // m.one and m.two
	rejections := func() map[string]int {
		var s struct {
			Listener map[string]struct {
				Rejected map[string]int `json:"lines_rejected"`
			} `json:"listener"`
		}
		if err := json.Unmarshal([]byte(testutil.Ask(r.api, "stats")), &s); err != nil {
			t.Fatal(err)
		}
		return s.Listener["pickle"].Rejected
	}
	nested := []byte{0x80, 2}
	for range 20000 {
		nested = append(nested, ']')
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		reason string
	}{
		{"truncated frame", frame(read("points_p2.pickle"))[:40], "pickle_truncated"},
		{"oversized frame", binary.BigEndian.AppendUint32(nil, 1<<30), "pickle_frame_too_large"},
		{"unknown opcode", frame([]byte{0x80, 2, 0xfe, '.'}), "pickle_malformed"},
		{"REDUCE of os.system", frame(read("reduce.pickle")), "pickle_forbidden_opcode"},
		{"GLOBAL", frame([]byte("cposix\nsystem\n(S'id'\ntR.")), "pickle_forbidden_opcode"},
		{"a dict", frame(read("dict.pickle")), "pickle_forbidden_opcode"},
		{"20,000 nested lists, no STOP", frame(nested), "pickle_malformed"},
		{"not a list", frame([]byte("I42\n.")), "pickle_not_points"},
		{"points of the wrong shape", frame(read("badpoints.pickle")), "pickle_bad_point"},
		{"plaintext on the pickle port", []byte("a.b.c 1 1700000000\n"), "pickle_frame_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, n := rejections()[tc.reason], sink.Count()
			c, err := net.Dial("tcp", pickle)
			if err != nil {
				t.Fatal(err)
			}
			c.Write(tc.data)
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(limit))
			io.Copy(io.Discard, c) // polymur closes it
			c.Close()
			testutil.WaitFor(t, tc.reason+" counted", limit, func() bool { return rejections()[tc.reason] > before })
			testutil.SendTCP(t, pickle, good)
			want := n + 2
			if tc.reason == "pickle_bad_point" {
				want += 2 // the frame's two good points
			}
			if !sink.WaitCount(want, limit) || r.Exited() {
				t.Fatalf("after %s: %d lines delivered, want %d; exited %v", tc.name, sink.Count()-n, want-n, r.Exited())
			}
		})
	}
	if !strings.Contains(r.Logs.String(), "closing a connection: data that does not decode") {
		t.Fatal("no log line names the client of a bad frame")
	}
	r.Stop(t)
}

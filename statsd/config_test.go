package statsd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestJSObjectToJSON(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain JSON", `{"a": 1}`, `{"a": 1}`},
		{"unquoted keys", `{a: 1, b_2: 'x'}`, `{"a": 1, "b_2": "x"}`},
		{"comments", "{ // c\n a: 1 /* d */ }", "{ \n \"a\": 1   }"},
		{"trailing commas", `{a: [1, 2,], b: 3, }`, `{"a": [1, 2], "b": 3 }`},
		{"quotes inside strings", `{a: 'say "hi"', b: "it's"}`, `{"a": "say \"hi\"", "b": "it's"}`},
		{"escaped single quote", `{a: 'it\'s'}`, `{"a": "it's"}`},
		{"values are not keys", `{a: true, b: null}`, `{"a": true, "b": null}`},
	} {
		got := string(jsObjectToJSON([]byte(tc.in)))
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestLoadProxyJS(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, src, err string }{
		{"example", `{
nodes: [{host: '127.0.0.1', port: 8127, adminport: 8128}, {host: '::1', port: "8129"}],
udp_version: 'udp4', host: '127.0.0.1', port: 8125, checkInterval: 1000, cacheSize: 10000,
server: './servers/tcp', // a comment
}`, ""},
		{"no nodes", `{host: '0.0.0.0'}`, "no nodes"},
		{"not an object", `[1, 2`, "unexpected"},
		{"port not a number", `{nodes: [{host: 'a', port: 'x'}]}`, "not a whole number"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".js")
		os.WriteFile(path, []byte(tc.src), 0o600)
		var s Settings
		err := s.LoadProxyJS(path, map[string]bool{})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if s.Nodes != "127.0.0.1:8127:8128,[::1]:8129" || s.Listen != "127.0.0.1:8125" || !s.TCP || s.CheckInterval != time.Second || s.MgmtAddr != "localhost:8126" {
			t.Fatalf("%s: %+v", tc.name, s)
		}
	}
}

func TestSplitNode(t *testing.T) {
	for _, tc := range []struct{ in, host, port, admin, err string }{
		{"127.0.0.1:8125", "127.0.0.1", "8125", "", ""},
		{"127.0.0.1:8125:8126", "127.0.0.1", "8125", "8126", ""},
		{"[::1]:8125:8126", "::1", "8125", "8126", ""},
		{"127.0.0.1", "", "", "", "want host:port"},
		{"[::1", "", "", "", "want [addr]"},
		{":8125", "", "", "", "port from 1"},
		{"h:0", "", "", "", "port from 1"},
	} {
		h, p, a, err := SplitNode(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || h != tc.host || p != tc.port || a != tc.admin {
			t.Errorf("%q: %q %q %q %v", tc.in, h, p, a, err)
		}
	}
}

// FuzzJSObjectToJSON: any input converts without a panic or a hang, and
// JSON that has no comments, single quotes or trailing commas is kept.
func FuzzJSObjectToJSON(f *testing.F) {
	for _, s := range []string{`{a: 1}`, "{ // x\n}", `{a: 'b\'c',}`, `/*`, `'`, `{a:[1,2,],}`, `{"k": "v"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := jsObjectToJSON([]byte(s))
		var v any
		if json.Unmarshal([]byte(s), &v) == nil && !strings.ContainsAny(s, "/'") && json.Unmarshal(out, &v) != nil {
			t.Fatalf("valid JSON %q became invalid %q", s, out)
		}
	})
}

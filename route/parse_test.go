package route

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseErrorsNamePlace(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown statement", "clustr a forward 127.0.0.1:2003;", "c.conf:1:1: unknown statement"},
		{"missing semicolon", "cluster a forward 127.0.0.1:2003", "expected ';'"},
		{"unknown cluster type", "cluster a round_robin 127.0.0.1:2003;", "c.conf:1:11: unknown cluster type"},
		{"no members", "cluster a forward;", "has no members"},
		{"bad port", "cluster a forward 127.0.0.1:99999;", "port must be"},
		{"bare ipv6", "cluster a forward ::1:2003;", "[addr]:port"},
		{"empty instance", "cluster a carbon_ch 127.0.0.1:2003=;", "empty instance"},
		{"listen without address", "listen type linemode;", "listen without an address"},
		{"listen bad port", "listen type linemode 99999 proto tcp;", "port must be"},
		{"listen bad proto", "listen type linemode 2003 proto sctp;", "proto must be tcp, udp or unix"},
		{"listen pickle over udp", "listen type pickle 2004 proto udp;", "pickle is read over TCP only"},
		{"listen gzip over udp", "listen type linemode transport gzip 2003 proto udp;", "UDP listeners take plain lines only"},
		{"listen bad type", "listen type carbon2 2003 proto tcp;", "listen type must be"},
		{"unknown transport", "cluster a forward 127.0.0.1:2003 transport zstd ssl;", "transport must be plain, gzip, lz4 or snappy"},
		{"mtls without a key", "cluster a forward 127.0.0.1:2003 transport plain mtls cert.pem;", "a key file"},
		{"udp refused", "cluster a forward 127.0.0.1:2003 proto udp;", "proto udp"},
		{"bad proto", "cluster a forward 127.0.0.1:2003 proto sctp;", "proto must be"},
		{"bad type", "cluster a forward 127.0.0.1:2003 type carbon;", "type must be linemode or pickle"},
		{"one server, two types", "cluster a forward 127.0.0.1:2003 type pickle;\ncluster b forward 127.0.0.1:2003;", "type pickle in one cluster"},
		{"replication too large", "cluster a carbon_ch replication 3 127.0.0.1:2003=a 127.0.0.2:2003=b;", "c.conf:1:33: replication 3"},
		{"replication over hosts", "cluster a carbon_ch replication 2 127.0.0.1:2003=a 127.0.0.1:2004=b;", "distinct hosts"},
		{"same host and instance", "cluster a carbon_ch 127.0.0.1:2003=a 127.0.0.1:2004=a;", "same host and instance"},
		{"same server twice", "cluster a forward 127.0.0.1:2003 127.0.0.1:2003;", "twice in cluster"},
		{"instance conflict", "cluster a carbon_ch 127.0.0.1:2003=a;\ncluster b carbon_ch 127.0.0.1:2003=b;", "c.conf:2:21: cannot set instance"},
		{"cluster twice", "cluster a forward 127.0.0.1:2003;\ncluster a forward 127.0.0.2:2003;", "defined twice"},
		{"blackhole reserved", "cluster blackhole forward 127.0.0.1:2003;", "reserved"},
		{"unknown cluster in match", "match * send to nowhere;", "unknown cluster"},
		{"match without target", "match ^a;", "expected send to"},
		{"send to nothing", "cluster a forward 127.0.0.1:2003;\nmatch ^a send to;", "names no cluster"},
		{"blackhole plus cluster", "cluster a forward 127.0.0.1:2003;\nmatch ^a send to a blackhole;", "cannot be combined"},
		{"bad regex", "cluster a forward 127.0.0.1:2003;\nmatch ^a( send to a;", "c.conf:2:7: expression"},
		{"perl class", "cluster a forward 127.0.0.1:2003;\nmatch \\bfoo send to a;", "no equivalent"},
		{"back-reference in pattern", "rewrite (a)\\1 into b;", "back-references"},
		{"group out of range", "rewrite ^(a) into \\2;", "refers to \\2"},
		{"rewrite star", "rewrite * into x;", "not *"},
		{"rewrite without into", "rewrite ^a b;", "expected \"into\""},
		{"validate else", "cluster a forward 127.0.0.1:2003;\nmatch * validate ^1 else keep send to a;", "log or drop"},
		{"aggregate expire not after interval", "aggregate ^a every 10 seconds expire after 10 seconds compute sum write to b;", "c.conf:1:44: expire after (10 seconds) must be greater"},
		{"aggregate zero interval", "aggregate ^a every 0 seconds expire after 10 seconds compute sum write to b;", "c.conf:1:20: the interval must be"},
		{"aggregate percentile 100", "aggregate ^a every 10 seconds expire after 20 seconds compute percentile100 write to b;", "c.conf:1:63: percentile<P>"},
		{"aggregate unknown compute", "aggregate ^a every 10 seconds expire after 20 seconds compute mode write to b;", "unknown compute function \"mode\""},
		{"aggregate no compute", "aggregate ^a every 10 seconds expire after 20 seconds;", "expected compute"},
		{"aggregate stop without send to", "aggregate ^a every 10 seconds expire after 20 seconds compute sum write to b stop;", "stop in an aggregate comes after its send to"},
		{"aggregate blackhole", "aggregate ^a every 10 seconds expire after 20 seconds compute sum write to b send to blackhole;", "cannot send to blackhole"},
		{"aggregate unknown cluster", "aggregate ^a every 10 seconds expire after 20 seconds compute sum write to b send to x;", "unknown cluster \"x\""},
		{"aggregate group out of range", "aggregate ^(a) every 10 seconds expire after 20 seconds compute sum write to \\2;", "refers to \\2"},
		{"aggregate timestamp", "aggregate ^a every 10 seconds expire after 20 seconds timestamp at noon of bucket compute sum write to b;", "c.conf:1:68: timestamp at must be start or middle or end, got \"noon\""},
		{"aggregate without expressions", "aggregate every 10 seconds expire after 20 seconds compute sum write to b;", "expected \"every\""},
		{"unterminated quote", "match \"^a send to a;", "unterminated quoted string"},
		{"include missing", "include /nonexistent/*.conf;", "matches no file"},
		{"replication word", "cluster a carbon_ch replication two 127.0.0.1:2003;", "replication must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.conf", tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	src := `# a comment
cluster "quoted name" forward 127.0.0.1:2003 [::1]:2004 type linemode transport plain proto tcp; # trailing
cluster any any_of 127.0.0.1:2003;
cluster ch carbon_ch replication 2 dynamic
    127.0.0.3:2003=a
    127.0.0.2=b
    ;
cluster f file ip /tmp/x;
listen type linemode 2003 proto tcp;
listen type linemode transport gzip ssl /etc/relay.pem 127.0.0.1:2013 proto tcp [::1]:2014 proto tcp;
listen type linemode 2003 proto udp /run/carbon.sock proto unix;
listen type pickle 2004 proto tcp;
statistics submit every 60 seconds prefix with carbon.relays.x;
send statistics to ch stop;
match * validate ^[0-9]+\ [0-9]+$ else log route using ^([^.]+) send to "quoted name" ch stop;
rewrite "^a b" into c;
`
	tb, err := Parse("c.conf", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(tb.Clusters) != 4 || len(tb.Rules) != 2 || len(tb.Ignored) != 2 || len(tb.Listeners) != 4 {
		t.Fatalf("%d clusters, %d rules, %d ignored, %d listeners", len(tb.Clusters), len(tb.Rules), len(tb.Ignored), len(tb.Listeners))
	}
	if l := tb.Listeners[1]; l.Transport != "gzip" || l.PEMCert != "/etc/relay.pem" || l.Addrs[0].Addr != "127.0.0.1:2013" || l.Addrs[1].Addr != "[::1]:2014" {
		t.Fatalf("listener %+v", l)
	}
	if l := tb.Listeners[2]; l.Addrs[0] != (ListenAddr{":2003", "udp"}) || l.Addrs[1] != (ListenAddr{"/run/carbon.sock", "unix"}) {
		t.Fatalf("listener %+v", l)
	}
	ch := tb.Cluster("ch")
	if ch.Replication != 2 || !ch.Dynamic || ch.Members[1].Port != 2003 || ch.Members[1].Instance != "b" {
		t.Fatalf("cluster ch: %+v", ch)
	}
	if len(tb.Servers) != 4 { // 127.0.0.1:2003 is one server in two clusters
		t.Fatalf("%d servers", len(tb.Servers))
	}
	var sb strings.Builder
	tb.Format(&sb)
	again, err := Parse("normalised", sb.String())
	if err != nil {
		t.Fatalf("normalised configuration does not parse: %v\n%s", err, sb.String())
	}
	var sb2 strings.Builder
	again.Format(&sb2)
	strip := func(s string) string { // the notes on ignored statements name the first file
		s, _, _ = strings.Cut(s, "\n# ")
		return strings.TrimRight(s, "\n")
	}
	if strip(sb.String()) != strip(sb2.String()) {
		t.Fatalf("normalising twice differs:\n%q\n---\n%q", strip(sb.String()), strip(sb2.String()))
	}
}

// Rewrites replace the matched part, with carbon-c-relay's transforms.
func TestRewriteReplacements(t *testing.T) {
	for _, tc := range []struct{ expr, into, in, want string }{
		{`^sys\.([^.]+)\.(.*)`, `SYS.\_1.\^2`, "sys.HostA.cpu.user", "SYS.hosta.CPU.USER"},
		{`foo`, `bar`, "x.foo.z", "x.bar.z"},
		{`^(x)\.(y)`, `\.1_\^.2`, "x.y", "x_Y"},
		{`^a\.(.*)$`, `b.\.1`, "a.c.d.e", "b.c_d_e"},
		{`^a\.(.*)$`, `b.\_.1`, "a.C.D", "b.c_d"},
		{`^(a)`, `\z\1`, "abc", `\zabc`},
		{`^(a)|(q)`, `[\2]`, "abc", "[]bc"},
	} {
		e, err := compileExpr(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		repl, err := parseReplacement(tc.into, e.re.NumSubexp())
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := (&Rewrite{Expr: e, repl: repl}).apply(tc.in); got != tc.want {
			t.Errorf("rewrite %s into %s on %s = %q, want %q", tc.expr, tc.into, tc.in, got, tc.want)
		}
	}
}

func TestIncludeIsRelativeAndLoopsAreRefused(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "conf.d"), 0o700)
	os.WriteFile(filepath.Join(dir, "conf.d", "a.conf"), []byte("cluster a forward 127.0.0.1:2003;\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "conf.d", "b.conf"), []byte("cluster b forward 127.0.0.2:2003;\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "main.conf"), []byte("include conf.d/*.conf;\nmatch * send to a b;\n"), 0o600)
	tb, err := ParseFile(filepath.Join(dir, "main.conf"))
	if err != nil || len(tb.Clusters) != 2 {
		t.Fatalf("include: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "loop.conf"), []byte("include loop.conf;\n"), 0o600)
	if _, err := ParseFile(filepath.Join(dir, "loop.conf")); err == nil || !strings.Contains(err.Error(), "include loop") {
		t.Fatalf("include loop: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bad.conf"), []byte("include conf.d/a.conf;\nmatch ^( send to a;\n"), 0o600)
	if _, err := ParseFile(filepath.Join(dir, "bad.conf")); err == nil || !strings.Contains(err.Error(), "bad.conf:2:7") {
		t.Fatalf("error in the including file: %v", err)
	}
}

// FuzzParse feeds arbitrary configuration text: it never panics or hangs,
// and whatever parses can be routed and normalised.
func FuzzParse(f *testing.F) {
	for _, src := range []string{
		"cluster a forward 127.0.0.1:2003;\nmatch * send to a;",
		"cluster ch carbon_ch replication 2 127.0.0.1:2003=a 127.0.0.2:2003=b;\nrewrite ^(a)\\.(.*) into \\_2.\\^1;\nmatch ^b validate ^1 else drop send to ch stop;",
		"cluster j jump_fnv1a_ch 127.0.0.1:1=1 127.0.0.2:1=x;\ncluster f fnv1a_ch 127.0.0.1:2;\nmatch a b \"c d\" route using ^(.) send to j f;",
		"# only\n;;\n",
		"match \"unterminated",
		"aggregate ^(a)(b) ^(c) every 10 seconds expire after 20 seconds compute sum write to \\2.\\1;",
		"cluster a forward 127.0.0.1:2003;\naggregate ^a\\.([^.]+)\\.(.*) * every 10 seconds expire after 20 seconds timestamp at middle of bucket compute percentile9 write to x.\\_1.\\.2 compute stddev write to y send to a stop;\nmatch * send to a;",
	} {
		f.Add(src, "a.b.c 1 2")
	}
	f.Fuzz(func(t *testing.T, src, line string) {
		if strings.Contains(src, "include") {
			return // the file system is not fuzzed
		}
		tb, err := Parse("fuzz.conf", src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.conf:") && !strings.Contains(err.Error(), "fuzz.conf") {
				t.Fatalf("error without a place: %v", err)
			}
			return
		}
		name, rest, _ := strings.Cut(line, " ")
		for _, d := range tb.Route(nil, name, rest, nil) {
			if d.Outcome == Aggregated {
				for c := range d.Aggregate.Computes {
					d.Aggregate.AppendName(nil, c, d.Name, d.Loc)
				}
				d.Aggregate.AppendKey(nil, d.Name, d.Loc)
			}
		}
		tb.Route(nil, name, rest, func(*Server) bool { return false })
		var sb strings.Builder
		tb.Format(&sb)
	})
}

package route

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseMember(t *testing.T) {
	for _, tc := range []struct{ in, addr, err string }{
		{"127.0.0.1:2003", "127.0.0.1:2003", ""},
		{"127.0.0.1", "127.0.0.1:2003", ""},
		{"127.0.0.1:2004=a proto tcp type linemode", "127.0.0.1:2004", ""},
		{"[::1]:2003=b", "[::1]:2003", ""},
		{"", "", "empty member"},
		{"127.0.0.1:0", "", "port must be"},
		{"127.0.0.1:1 extra", "", "unexpected"},
		{"127.0.0.1:1 proto udp", "", "not supported yet"},
		{"127.0.0.1:1 transport lz4 ssl", "127.0.0.1:1", ""},
		{"127.0.0.1:1 transport brotli", "", "transport must be"},
		{"::1:2003", "", "write it as [addr]:port"},
		{"127.0.0.1:1;", "", "unexpected"},
	} {
		s, err := ParseMember(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && s.Addr() != tc.addr:
			t.Errorf("%q: addr %s, want %s", tc.in, s.Addr(), tc.addr)
		}
	}
}

func TestApplyEdits(t *testing.T) {
	base, err := Parse("t", `cluster a forward 127.0.0.1:1;
cluster b carbon_ch replication 1 127.0.0.1:2=x 127.0.0.2:2=y;
cluster f file /tmp/x;
match ^a\. send to a stop;
match * send to b;
`)
	if err != nil {
		t.Fatal(err)
	}
	put := func(c, m string) Edit { return Edit{Op: EditPut, Cluster: c, Member: m} }
	del := func(c, m string) Edit { return Edit{Op: EditDel, Cluster: c, Member: m} }
	for _, tc := range []struct {
		name  string
		edits []Edit
		err   string
		a, b  int // members after
	}{
		{"put", []Edit{put("a", "127.0.0.1:3")}, "", 2, 2},
		{"put then del", []Edit{put("a", "127.0.0.1:3"), del("a", "127.0.0.1:1")}, "", 1, 2},
		{"del from hash", []Edit{del("b", "127.0.0.2:2")}, "", 1, 1},
		{"unknown cluster", []Edit{put("zz", "127.0.0.1:3")}, "no cluster", 0, 0},
		{"file cluster", []Edit{put("f", "127.0.0.1:3")}, "file cluster", 0, 0},
		{"twice", []Edit{put("a", "127.0.0.1:1")}, "already a member", 0, 0},
		{"not there", []Edit{del("a", "127.0.0.1:9")}, "not a member", 0, 0},
		{"last member", []Edit{del("a", "127.0.0.1:1")}, "last member", 0, 0},
		{"same instance", []Edit{put("b", "127.0.0.1:9=x")}, "same host and instance", 0, 0},
		{"other instance of a known server", []Edit{put("a", "127.0.0.1:2=z")}, "cannot set instance", 0, 0},
		{"bad member", []Edit{put("a", "127.0.0.1:70000")}, "port must be", 0, 0},
		{"bad op", []Edit{{Op: "swap", Cluster: "a", Member: "127.0.0.1:3"}}, "unknown operation", 0, 0},
	} {
		nt, err := base.Apply(tc.edits...)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if a, b := len(nt.Cluster("a").Members), len(nt.Cluster("b").Members); a != tc.a || b != tc.b {
			t.Errorf("%s: members a %d b %d, want %d %d", tc.name, a, b, tc.a, tc.b)
		}
		// The edited table routes by its members; the base is unchanged.
		if ds := nt.Route(nil, "a.x", "", nil); len(ds) != tc.a {
			t.Errorf("%s: a.x has %d deliveries, want %d", tc.name, len(ds), tc.a)
		}
		if len(base.Cluster("a").Members) != 1 || len(base.Cluster("b").Members) != 2 {
			t.Fatalf("%s changed the base table", tc.name)
		}
	}
}

func FuzzParseMember(f *testing.F) {
	for _, s := range []string{"127.0.0.1:2003", "[::1]:1=a proto tcp", "h=i transport plain", "a:b:c", "x proto", `"q"`, "#c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMember(s)
		if err != nil {
			return
		}
		if m.Port < 1 || m.Port > 65535 || m.Host == "" {
			t.Fatalf("%q parsed to %+v", s, m)
		}
	})
}

func TestExpandUseall(t *testing.T) {
	tb, err := Parse("t", `cluster a any_of useall db:2003 127.0.0.9:2003 dup:2003;
cluster f failover useall db:2004=x;
cluster h carbon_ch db:2005;
match * send to a f h;
`)
	if err != nil {
		t.Fatal(err)
	}
	lookups := 0
	hosts := map[string][]string{"db": {"127.0.0.2", "127.0.0.3", "::1"}, "dup": {"127.0.0.9", "127.0.0.4"}}
	et, err := tb.Expand(func(h string) ([]string, error) {
		lookups++
		if a, ok := hosts[h]; ok {
			return a, nil
		}
		return nil, errors.New("no such host")
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range et.Clusters {
		for _, m := range c.Members {
			got = append(got, c.Name+" "+m.Addr()+"="+m.Instance)
		}
	}
	want := []string{"a 127.0.0.2:2003=", "a 127.0.0.3:2003=", "a [::1]:2003=", "a 127.0.0.9:2003=", "a 127.0.0.4:2003=",
		"f 127.0.0.2:2004=x", "f 127.0.0.3:2004=x", "f [::1]:2004=x", "h db:2005="}
	if !slices.Equal(got, want) || lookups != 3 {
		t.Fatalf("expanded %q (%d lookups)\nwant %q", got, lookups, want)
	}
	if ds := et.Route(nil, "m", "", nil); len(ds) != 3 || ds[1].Server.Addr() != "127.0.0.2:2004" {
		t.Fatalf("routes %+v", ds)
	}
	if _, err := tb.Expand(func(string) ([]string, error) { return nil, errors.New("no such host") }); err == nil || !strings.Contains(err.Error(), "t:1:") {
		t.Fatalf("a failed lookup: %v", err)
	}
}

package batch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/polymur/polymur/internal/testutil"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		level      Level
		want       Reason
		canonical  bool
		metric     string
	}{
		{"plain", "a.b.c 1 1700000000", LevelCarbon, ReasonOK, true, "a.b.c"},
		{"float value and ts", "a -1.5e3 1700000000.5", LevelCarbon, ReasonOK, true, "a"},
		{"extra spaces", "a  1   2", LevelCarbon, ReasonOK, false, "a"},
		{"tabs", "a\t1\t2", LevelCarbon, ReasonOK, false, "a"},
		{"leading and trailing space", "  a 1 2  ", LevelCarbon, ReasonOK, false, "a"},
		{"crlf", "a 1 2\r", LevelCarbon, ReasonOK, false, "a"},
		{"tags", "cpu;host=a;dc=x 1 2", LevelCarbon, ReasonOK, true, "cpu;host=a;dc=x"},
		{"utf8 name", "café.load 1 2", LevelCarbon, ReasonOK, true, "café.load"},
		{"inf value", "a inf 2", LevelCarbon, ReasonOK, true, "a"},
		{"Infinity value", "a -Infinity 2", LevelCarbon, ReasonOK, true, "a"},
		{"empty", "", LevelCarbon, ReasonEmpty, false, ""},
		{"whitespace", " \t \r", LevelCarbon, ReasonEmpty, false, ""},
		{"one field", "a", LevelCarbon, ReasonFields, false, ""},
		{"two fields", "a 1", LevelCarbon, ReasonFields, false, ""},
		{"four fields", "a 1 2 3", LevelCarbon, ReasonFields, false, ""},
		{"non-numeric value", "a x 2", LevelCarbon, ReasonValue, false, ""},
		{"value dot only", "a . 2", LevelCarbon, ReasonValue, false, ""},
		{"bad exponent", "a 1e 2", LevelCarbon, ReasonValue, false, ""},
		{"nan", "a NaN 2", LevelCarbon, ReasonNaN, false, ""},
		{"non-numeric ts", "a 1 now", LevelCarbon, ReasonTimestamp, false, ""},
		{"nan ts", "a 1 nan", LevelCarbon, ReasonTimestamp, false, ""},
		{"nul in name", "a\x00b 1 2", LevelCarbon, ReasonName, false, ""},
		{"binary name", "a\xff\xfe 1 2", LevelCarbon, ReasonName, false, ""},
		{"strict float ts", "a 1 2.5", LevelStrict, ReasonTimestamp, false, ""},
		{"strict inf", "a inf 2", LevelStrict, ReasonValue, false, ""},
		{"strict utf8 name", "café 1 2", LevelStrict, ReasonName, false, ""},
		{"strict ok", "a.b 1.5 1700000000", LevelStrict, ReasonOK, true, "a.b"},
		{"off passes garbage", "a x y z", LevelOff, ReasonOK, true, "a"},
		{"off name after space", "  a x", LevelOff, ReasonOK, true, "a"},
		{"off empty", "   ", LevelOff, ReasonEmpty, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, r := Parse([]byte(tc.line), tc.level)
			if r != tc.want {
				t.Fatalf("Parse(%q) reason = %v, want %v", tc.line, r, tc.want)
			}
			if r == ReasonOK && (p.Canonical != tc.canonical || string(p.Name) != tc.metric) {
				t.Fatalf("Parse(%q) = name %q canonical %v, want %q %v", tc.line, p.Name, p.Canonical, tc.metric, tc.canonical)
			}
		})
	}
}

// chunkReader returns its input a few bytes per Read, to split lines across
// reads.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(c.n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func splitAll(t testing.TB, input string, chunk, maxLine, batchSize int) ([]string, Counts) {
	got, _, counts := splitWith(t, input, chunk, maxLine, batchSize, false)
	return got, counts
}

// splitWith splits input read chunk bytes at a time, the one-pass way for
// ordinary lines or (slow) every line the full way: the lines, their name
// lengths and the counts.
func splitWith(t testing.TB, input string, chunk, maxLine, batchSize int, slow bool) ([]string, []uint32, Counts) {
	sp := NewSplitter(LevelCarbon, maxLine)
	sp.slow = slow
	defer sp.Release()
	r := &chunkReader{data: []byte(input), n: chunk}
	var got []string
	var names []uint32
	b := Get()
	collect := func() {
		for i := range b.Lines {
			line := b.Line(i)
			if line[len(line)-1] != '\n' {
				t.Fatalf("line without newline: %q", line)
			}
			got = append(got, string(line[:len(line)-1]))
			names = append(names, b.Lines[i].NameLen)
		}
		b.Release()
		b = Get()
	}
	for {
		_, err := sp.Fill(r)
		for sp.Next(b, batchSize) {
			collect()
		}
		if err != nil {
			sp.Final(b)
			collect()
			break
		}
	}
	b.Release()
	return got, names, sp.Counts
}

func TestSplitter(t *testing.T) {
	long := strings.Repeat("x", 100) + " 1 2"
	for _, tc := range []struct {
		name     string
		input    string
		want     []string
		rejected map[Reason]uint64
	}{
		{"lines", "a 1 2\nb 3 4\n", []string{"a 1 2", "b 3 4"}, nil},
		{"final line without newline kept whole", "a 1 2\nb 3 4", []string{"a 1 2", "b 3 4"}, nil},
		{"crlf normalised", "a 1 2\r\nb  3 4\r\n", []string{"a 1 2", "b 3 4"}, nil},
		{"bad lines counted, stream continues", "\n \nx\na b c\nok 1 2\n", []string{"ok 1 2"},
			map[Reason]uint64{ReasonEmpty: 2, ReasonFields: 1, ReasonValue: 1}},
		{"too long line dropped, rest kept", "a 1 2\n" + long + "\nb 1 2\n", []string{"a 1 2", "b 1 2"},
			map[Reason]uint64{ReasonTooLong: 1}},
		{"too long final line", "a 1 2\n" + long, []string{"a 1 2"}, map[Reason]uint64{ReasonTooLong: 1}},
		{"nul and binary", "a\x00 1 2\n\xff\xfe\x00\nc 1 2\n", []string{"c 1 2"},
			map[Reason]uint64{ReasonName: 1, ReasonFields: 1}},
	} {
		for _, chunk := range []int{1, 3, 7, 4096} {
			got, counts := splitAll(t, tc.input, chunk, 64, 2)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("%s (chunk %d): got %q, want %q", tc.name, chunk, got, tc.want)
			}
			for r, n := range tc.rejected {
				if counts.Rejected[r] != n {
					t.Errorf("%s (chunk %d): rejected[%v] = %d, want %d", tc.name, chunk, r, counts.Rejected[r], n)
				}
			}
			if counts.Accepted != uint64(len(tc.want)) {
				t.Errorf("%s (chunk %d): accepted = %d, want %d", tc.name, chunk, counts.Accepted, len(tc.want))
			}
		}
	}
}

func TestSplitterHugeLineWithoutNewline(t *testing.T) {
	// 10 MiB without a newline, then a good line: memory stays bounded by
	// the buffer and the good line survives.
	input := "a 1 2\n" + strings.Repeat("z", 10<<20) + "\nb 1 2\n"
	got, counts := splitAll(t, input, 64<<10, 16384, 100)
	if strings.Join(got, "|") != "a 1 2|b 1 2" || counts.Rejected[ReasonTooLong] != 1 {
		t.Fatalf("got %q, counts %+v", got, counts)
	}
}

func TestSplitterBufferGrowsAndShrinks(t *testing.T) {
	var buf bytes.Buffer
	for range 5000 {
		buf.WriteString("some.metric.name 12345 1700000000\n")
	}
	got, _ := splitAll(t, buf.String(), 64<<10, 16384, 100)
	if len(got) != 5000 {
		t.Fatalf("got %d lines, want 5000", len(got))
	}
}

func TestBatchRefs(t *testing.T) {
	b := Get()
	b.Append([]byte("a 1 2\n"), 1)
	b.Retain(2)
	b.Release()
	b.Release()
	if b.Len() != 1 {
		t.Fatal("batch recycled while still referenced")
	}
	b.Release()
	defer func() {
		if recover() == nil {
			t.Fatal("double release did not panic")
		}
	}()
	b.Release()
}

func TestLinesFrom(t *testing.T) {
	b := Get()
	for _, l := range []string{"a 1 2\n", "bb 1 2\n", "ccc 1 2\n"} {
		b.Append([]byte(l), strings.IndexByte(l, ' '))
	}
	rest, skipped := b.LinesFrom(len("a 1 2\n"))
	if skipped != 1 || string(rest.Buf) != "bb 1 2\nccc 1 2\n" || string(rest.Name(1)) != "ccc" {
		t.Fatalf("LinesFrom: skipped %d, rest %q", skipped, rest.Buf)
	}
	if LineBoundary(b.Buf, 9) != 6 {
		t.Fatalf("LineBoundary = %d", LineBoundary(b.Buf, 9))
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"a 1 2", "a  1 2 ", "", "a nan 2", "a\x00 1 2", "café 1e5 1.5", "a -inf +3"} {
		f.Add(s)
	}
	for _, s := range []string{"a.b.c 12.5 1700000000", "a -1 2", "a 1. 2", "a .5 2", "a 1 2 ", "a 1 -2", "a\x7f 1 2", "a 01 002"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		for _, lvl := range []Level{LevelCarbon, LevelStrict} {
			// The one-pass path agrees with the full rules on what it takes.
			if fast, ok := plainLine([]byte(line)); ok {
				if full, r := parseFull([]byte(line), lvl); r != ReasonOK || !bytes.Equal(full.Name, fast.Name) ||
					!bytes.Equal(full.Value, fast.Value) || !bytes.Equal(full.TS, fast.TS) || full.Canonical != fast.Canonical {
					t.Fatalf("%q at %v: fast %+v, full %+v %v", line, lvl, fast, full, r)
				}
			}
		}
		for _, lvl := range []Level{LevelCarbon, LevelStrict, LevelOff} {
			p, r := Parse([]byte(line), lvl)
			if r == ReasonOK && len(p.Name) == 0 {
				t.Fatalf("accepted %q with an empty name", line)
			}
			if r == ReasonOK && lvl != LevelOff && bytes.ContainsAny(p.Name, " \t\n") {
				t.Fatalf("name with whitespace from %q", line)
			}
		}
	})
}

func FuzzSplitter(f *testing.F) {
	f.Add("a 1 2\nb 3 4\n", 3)
	f.Add("\n\n\r\n x y z\n", 1)
	f.Add("servers.web01.cpu.user.percent 12.5 1700000000\na.b -1 2\nlong.name.with.many.parts.x 0.25 17\nx 1 2 3\n", 7)
	f.Add("abcdefghijklmnopqrstuvwxyz0123456789 123456789012.5 12345678901234567\n", 64)
	f.Fuzz(func(t *testing.T, input string, chunk int) {
		if chunk < 1 || chunk > 1<<16 {
			chunk = 1
		}
		got, names, counts := splitWith(t, input, chunk, 32, 3, false)
		if uint64(len(got)) != counts.Accepted {
			t.Fatalf("%d lines out, %d accepted", len(got), counts.Accepted)
		}
		// The one-pass way gives what the full rules give, line by line.
		slow, slowNames, slowCounts := splitWith(t, input, chunk, 32, 3, true)
		if !slices.Equal(got, slow) || !slices.Equal(names, slowNames) || counts != slowCounts {
			t.Fatalf("one pass %q %v %+v, full rules %q %v %+v", got, names, counts, slow, slowNames, slowCounts)
		}
		for _, l := range got {
			if _, r := Parse([]byte(l), LevelCarbon); r != ReasonOK || strings.ContainsAny(l, "\n\r") {
				t.Fatalf("emitted invalid line %q", l)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	line := []byte("servers.web01.cpu.user.percent 12.5 1700000000")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		Parse(line, LevelCarbon)
	}
}

func BenchmarkSplitter(b *testing.B) {
	var buf bytes.Buffer
	for i := range 10000 {
		buf.WriteString("servers.web01.cpu.user.percent.")
		buf.WriteByte(byte('a' + i%26))
		buf.WriteString(" 12.5 1700000000\n")
	}
	benchSplit(b, buf.Bytes(), 100)
}

// benchSplit splits data again and again into batches of up to max lines,
// and reports the time per line.
func benchSplit(b *testing.B, data []byte, max int) {
	lines := bytes.Count(data, []byte("\n"))
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sp := NewSplitter(LevelCarbon, 16384)
		r := bytes.NewReader(data)
		out := Get()
		for {
			_, err := sp.Fill(r)
			for sp.Next(out, max) {
				out.Release()
				out = Get()
			}
			if err != nil {
				break
			}
		}
		out.Release()
		sp.Release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}

func TestParseStatsd(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Reason
		name string
	}{
		{"api.requests:1|c", ReasonOK, "api.requests"},
		{"api.requests:1|c|@0.1", ReasonOK, "api.requests"},
		{"api.latency:320|ms|@0.5|#env:prod,dc:eu", ReasonOK, "api.latency"},
		{"gauge:+4|g", ReasonOK, "gauge"},
		{"gauge:-4.5|g", ReasonOK, "gauge"},
		{"users:alice|s", ReasonOK, "users"},
		{"multi:1|c:20|ms", ReasonOK, "multi"},
		{"hist:3|h", ReasonOK, "hist"},
		{"dist:3|d|#a:b", ReasonOK, "dist"},
		{"", ReasonEmpty, ""},
		{"   ", ReasonEmpty, ""},
		{"no.colon", ReasonFields, ""},
		{"no.pipe:1", ReasonFields, ""},
		{":1|c", ReasonName, ""},
		{"nul\x00name:1|c", ReasonName, ""},
		{"bad\xffutf:1|c", ReasonName, ""},
		{"x:1|q", ReasonType, ""},
		{"x:1|", ReasonType, ""},
		{"x:abc|c", ReasonValue, ""},
		{"x:nan|c", ReasonValue, ""},
		{"x:|s", ReasonValue, ""},
		{"x:1|c|@2", ReasonRate, ""},
		{"x:1|c|@0", ReasonRate, ""},
		{"x:1|c|@x", ReasonRate, ""},
		{"x:1|c|junk", ReasonFields, ""},
		{"x:1|c|", ReasonFields, ""},
		{"x:1|c:2", ReasonFields, ""},
	} {
		p, r := Parse([]byte(tc.line), LevelStatsd)
		if r != tc.want || (r == ReasonOK && (string(p.Name) != tc.name || !p.Canonical)) {
			t.Errorf("ParseStatsd(%q) = %v %q, want %v %q", tc.line, r, p.Name, tc.want, tc.name)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ParseStatsd([]byte("api.latency:320|ms|@0.5|#env:prod")) }); n != 0 {
		t.Errorf("ParseStatsd allocates %v times", n)
	}
}

func FuzzParseStatsd(f *testing.F) {
	f.Add([]byte("a.b:1|c|@0.5|#x:y"))
	f.Add([]byte("m:1|c:2|ms"))
	f.Fuzz(func(t *testing.T, line []byte) {
		p, r := ParseStatsd(line)
		if r == ReasonOK && (len(p.Name) == 0 || bytes.IndexByte(p.Name, ':') >= 0 || !bytes.HasPrefix(line, p.Name)) {
			t.Fatalf("accepted %q with name %q", line, p.Name)
		}
	})
}

// TestRejectLog: the last lines of each reason, newest first, bounded per
// reason and in length.
func TestRejectLog(t *testing.T) {
	l := NewRejectLog(3)
	for i := range 5 {
		l.Add("bad_value", "10.0.0.1", []byte(fmt.Sprintf("line.%d x 1", i)))
	}
	l.Add("too_long", "", bytes.Repeat([]byte("a"), 1000))
	got := l.Recent()
	var lines []string
	for _, r := range got["bad_value"] {
		lines = append(lines, r.Line)
	}
	if want := []string{"line.4 x 1", "line.3 x 1", "line.2 x 1"}; !slices.Equal(lines, want) {
		t.Fatalf("bad_value kept %v, want %v", lines, want)
	}
	if r := got["too_long"]; len(r) != 1 || len(r[0].Line) != RejectLineMax || r[0].Client != "" {
		t.Fatalf("too_long kept %+v", r)
	}
}

// The one-pass path takes the ordinary line and leaves everything unusual
// to the full rules, which still accept what carbon accepts.
func TestPlainLine(t *testing.T) {
	for line, want := range map[string]bool{
		"servers.a.cpu 12.5 1700000000": true, "a -1 2": true, "a 0.25 0": true, "a 01 002": true,
		"a 1. 2": false, "a .5 2": false, "a +1 2": false, "a 1e5 2": false, "a 1 2.5": false, "a 1 -2": false,
		"a  1 2": false, " a 1 2": false, "a 1 2 ": false, "a 1": false, "café 1 2": false, "a\x7f 1 2": false,
		"a\t1 2": false, "a nan 2": false, "": false, "a 1 2 3": false,
	} {
		if _, ok := plainLine([]byte(line)); ok != want {
			t.Errorf("plainLine(%q) = %v", line, ok)
		}
		_, r := Parse([]byte(line), LevelCarbon)
		if want && r != ReasonOK {
			t.Errorf("Parse(%q) = %v", line, r)
		}
	}
	for _, line := range []string{"a 1. 2", "a .5 2", "a +1 2", "a 1e5 2", "a 1 2.5", "a  1 2", "café 1 2", "a\t1 2"} {
		if _, r := Parse([]byte(line), LevelCarbon); r != ReasonOK {
			t.Errorf("the full rules refuse %q: %v", line, r)
		}
	}
}

// The SWAR masks agree with the byte-wise tests: the first byte they flag
// is the first byte out of range (and printable8 says whether there is
// one), for every byte value at every position among in-range and
// out-of-range neighbours, and for random words.
func TestSWARMasks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mask  func(uint64) uint64
		in    func(byte) bool
		fills []byte
	}{
		{"unprintable8", unprintable8, func(c byte) bool { return c > ' ' && c < 0x7f }, []byte{'!', 'a', '~', 0xff, 0x00, 0x7f, ' ', 0x80}},
		{"nondigit8", nondigit8, func(c byte) bool { return c >= '0' && c <= '9' }, []byte{'0', '9', '5', '/', ':', 0xff, 0x00, 0xb9, 0xba}},
	} {
		check := func(b []byte) {
			first := 8
			for i, c := range b {
				if !tc.in(c) {
					first = i
					break
				}
			}
			got := 8
			if m := tc.mask(binary.LittleEndian.Uint64(b)); m != 0 {
				got = bits.TrailingZeros64(m) >> 3
			}
			if got != first {
				t.Fatalf("%s(%q): first out of range at %d, want %d", tc.name, b, got, first)
			}
			if tc.name == "unprintable8" && printable8(binary.LittleEndian.Uint64(b)) != (first == 8) {
				t.Fatalf("printable8(%q) = %v", b, first != 8)
			}
		}
		for _, fill := range tc.fills {
			for pos := range 8 {
				for v := range 256 {
					b := bytes.Repeat([]byte{fill}, 8)
					b[pos] = byte(v)
					check(b)
				}
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for range 1_000_000 {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], rng.Uint64())
			for i := range b {
				if rng.IntN(4) > 0 {
					b[i] = tc.fills[rng.IntN(3)] // mostly in range
				}
			}
			check(b[:])
		}
	}
}

// BenchmarkSplitterRealistic is the traffic-shapes input: names of 40–120
// bytes, two-decimal values, one read buffer after another.
func BenchmarkSplitterRealistic(b *testing.B) {
	var buf bytes.Buffer
	for i, name := range testutil.RealisticNames(20000) {
		fmt.Fprintf(&buf, "%s %.2f 1700000000\n", name, float64(i%9973)/7)
	}
	benchSplit(b, buf.Bytes(), 500)
}

// printableRun (sixteen bytes at a time in assembly on amd64) finds the
// first byte outside 0x21–0x7e at every length and position, and the
// assembly agrees with the Go the other architectures use.
func TestPrintableRun(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 100 {
		for range 2000 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(0x21 + rng.IntN(0x5e))
			}
			want := n
			if n > 0 && rng.IntN(4) > 0 {
				want = rng.IntN(n)
				b[want] = []byte{0x00, ' ', '\n', 0x7f, 0x80, 0xff, 0x20, 0x1f}[rng.IntN(8)]
				for i := want + 1; i < n; i++ { // and maybe more after it
					if rng.IntN(8) == 0 {
						b[i] = byte(rng.Uint32())
					}
				}
			}
			if got := printableRun(b); got != want {
				t.Fatalf("printableRun(%q) = %d, want %d", b, got, want)
			}
		}
	}
}

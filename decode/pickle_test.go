package decode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polymur/polymur/batch"
)

// frame wraps a pickle in carbon's 4-byte big-endian length.
func frame(p []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

func decodeAll(t *testing.T, stream []byte, max int) (string, *PickleReader, error) {
	t.Helper()
	pr := NewPickleReader(bytes.NewReader(stream), max)
	out, err := io.ReadAll(pr)
	return string(out), pr, err
}

// Pickles made by Python 3's pickle.dumps in every protocol (testdata/gen.py
// made them) decode to the same lines.
func TestPickleProtocols(t *testing.T) {
	want := "a.b.c 1.5 1700000000\nx.y 42 1700000001\nuni.été -3.25 1700000002\nbig 1180591620717411300000 1700000003\nneg -7 1700000004\n"
	for p := range 6 {
		b, err := os.ReadFile(filepath.Join("testdata", "points_p"+string(rune('0'+p))+".pickle"))
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := decodeAll(t, frame(b), 0)
		if err != nil || got != want {
			t.Errorf("protocol %d: %q, %v\nwant %q", p, got, err, want)
		}
	}
}

func TestPickleFrames(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p2 := read("points_p2.pickle")
	for _, tc := range []struct {
		name   string
		stream []byte
		max    int
		want   string // lines decoded before the error
		reason string // Error.Reason, "" for none
		err    error
		bad    uint64
	}{
		{name: "two frames", stream: append(frame(read("lists.pickle")), frame(read("lists.pickle"))...), want: strings.Repeat("m.one 1 1700000000\nm.two 2.5 1700000000\n", 2)},
		{name: "empty stream", stream: nil},
		{name: "bad points skipped", stream: frame(read("badpoints.pickle")), want: "ok 1 1700000000\nok2 2.5 1700000001\n", bad: 4},
		{name: "REDUCE refused", stream: frame(read("reduce.pickle")), reason: ReasonForbidden},
		{name: "dict refused", stream: frame(read("dict.pickle")), reason: ReasonForbidden},
		{name: "GLOBAL refused", stream: frame([]byte("cos\nsystem\n(S'true'\ntR.")), reason: ReasonForbidden},
		{name: "too large", stream: frame(p2), max: 100, reason: ReasonFrameTooLarge},
		{name: "huge length", stream: []byte{0xff, 0xff, 0xff, 0xff, 0x80}, reason: ReasonFrameTooLarge},
		{name: "truncated frame", stream: frame(p2)[:50], err: io.ErrUnexpectedEOF},
		{name: "truncated header", stream: []byte{0, 0}, err: io.ErrUnexpectedEOF},
		{name: "truncated pickle", stream: frame(p2[:len(p2)-10]), reason: ReasonMalformed},
		{name: "no STOP", stream: frame([]byte("]")), reason: ReasonMalformed},
		{name: "unknown opcode", stream: frame([]byte{0xff, '.'}), reason: ReasonMalformed},
		{name: "not a list", stream: frame([]byte("I5\n.")), reason: ReasonNotPoints},
		{name: "stack underflow", stream: frame([]byte{0x86, '.'}), reason: ReasonMalformed},
		{name: "append to a tuple", stream: frame([]byte(")Na.")), reason: ReasonMalformed},
		{name: "memo miss", stream: frame([]byte("h\x05.")), reason: ReasonMalformed},
		{name: "string past the end", stream: frame([]byte("X\xff\xff\x00\x00ab.")), reason: ReasonMalformed},
		{name: "plaintext into the pickle port", stream: []byte("a.b.c 1 1700000000\n"), reason: ReasonFrameTooLarge},
		{name: "protocol 0 strings", stream: frame([]byte("(lp0\n(S'p.q'\np1\n(I10\nF2.5\ntp2\ntp3\na.")), want: "p.q 2.5 10\n"},
		{name: "nested lists in points", stream: frame([]byte("(l(l(lI1\naaa.")), bad: 1},
	} {
		got, pr, err := decodeAll(t, tc.stream, tc.max)
		var de *Error
		switch {
		case tc.reason != "":
			if !errors.As(err, &de) || de.Reason != tc.reason {
				t.Errorf("%s: err %v, want reason %s", tc.name, err, tc.reason)
			}
		case tc.err != nil:
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		}
		if got != tc.want || pr.BadPoint != tc.bad {
			t.Errorf("%s: %q (bad %d), want %q (bad %d)", tc.name, got, pr.BadPoint, tc.want, tc.bad)
		}
	}
}

// AppendPickle's frames decode back to the lines they came from.
func TestPickleRoundTrip(t *testing.T) {
	b := batch.Get()
	defer b.Release()
	var want strings.Builder
	for i := range 1234 {
		name := "svc.host" + string(rune('a'+i%26)) + ".m"
		line := name + " " + []string{"1", "2.5", "-3e-05", "100000"}[i%4] + " 17000000" + string(rune('0'+i%10)) + "0\n"
		b.Append([]byte(line), len(name))
		want.WriteString(line)
	}
	b.Append([]byte("odd.ts 1 1700000000.5\n"), 6)
	want.WriteString("odd.ts 1 1700000000.5\n")
	b.Append([]byte("bad.value x 1\n"), 9)
	out, ends, skipped := AppendPickle(nil, b, 0, b.Len(), nil)
	if skipped != 1 || len(ends) != 3 || ends[0].Line != 500 || ends[2].Line != b.Len() || ends[2].Byte != len(out) {
		t.Fatalf("skipped %d, frame ends %v", skipped, ends)
	}
	got, _, err := decodeAll(t, out, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got != strings.ReplaceAll(want.String(), "-3e-05", "-0.00003") {
		t.Fatalf("round trip differs:\n%.300q\n%.300q", got, want.String())
	}
}

// FuzzPickle: any stream decodes, fails with an error or ends — never a
// panic or a hang — and what it yields is whole lines.
func FuzzPickle(f *testing.F) {
	for _, name := range []string{"points_p0.pickle", "points_p2.pickle", "points_p4.pickle", "lists.pickle", "reduce.pickle", "badpoints.pickle"} {
		b, _ := os.ReadFile(filepath.Join("testdata", name))
		f.Add(frame(b))
	}
	f.Add([]byte{0, 0, 0, 3, '(', 'l', '.'})
	f.Fuzz(func(t *testing.T, stream []byte) {
		pr := NewPickleReader(bytes.NewReader(stream), 1<<16)
		out, _ := io.ReadAll(pr)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			t.Fatalf("a partial line: %q", out)
		}
	})
}

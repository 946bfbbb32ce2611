package decode

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"

	"github.com/polymur/polymur/batch"
)

// MaxPicklePoints is the most points one pickle frame carries, carbon's
// MAX_DATAPOINTS_PER_MESSAGE.
const MaxPicklePoints = 500

// Frame is where one frame of AppendPickle ends: the index of the line
// after its last, and its end in the output; Skipped lines of it were left
// out.
type Frame struct{ Line, Byte, Skipped int }

// AppendPickle appends to dst carbon pickle frames (protocol 2, what
// carbon-relay sends to carbon-cache's port 2004) for lines [from, to) of b,
// at most MaxPicklePoints a frame, and records where each frame ends in
// frames. A line whose value or timestamp is not a number (it passed
// validation, so only at -validation none) is left out and counted in
// skipped.
func AppendPickle(dst []byte, b *batch.Batch, from, to int, frames []Frame) (out []byte, _ []Frame, skipped int) {
	for i := from; i < to; {
		start := len(dst)
		dst = append(dst, 0, 0, 0, 0, 0x80, 2, ']', '(')
		n, left := 0, skipped
		for ; i < to && n < MaxPicklePoints; i++ {
			var ok bool
			if dst, ok = appendPicklePoint(dst, b.Name(i), b.Line(i)); ok {
				n++
			} else {
				skipped++
			}
		}
		dst = append(dst, 'e', '.')
		binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
		frames = append(frames, Frame{Line: i, Byte: len(dst), Skipped: skipped - left})
	}
	return dst, frames, skipped
}

// appendPicklePoint appends (path, (timestamp, value)) and a pickle frame's
// worth of opcodes for it.
func appendPicklePoint(dst, name, line []byte) ([]byte, bool) {
	rest := bytes.TrimRight(line[len(name):], "\n")
	rest = bytes.TrimLeft(rest, " ")
	vs, ts, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return dst, false
	}
	val, err := strconv.ParseFloat(string(vs), 64)
	if err != nil {
		return dst, false
	}
	dst = append(dst, 'X')
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(name)))
	dst = append(dst, name...)
	if t, err := strconv.ParseInt(string(bytes.TrimSpace(ts)), 10, 64); err == nil && t >= math.MinInt32 && t <= math.MaxInt32 {
		dst = append(dst, 'J')
		dst = binary.LittleEndian.AppendUint32(dst, uint32(int32(t)))
	} else if f, err := strconv.ParseFloat(string(bytes.TrimSpace(ts)), 64); err == nil {
		dst = append(dst, 'G')
		dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
	} else {
		return dst[:len(dst)-5-len(name)], false
	}
	dst = append(dst, 'G')
	dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(val))
	return append(dst, 0x86, 0x86), true
}

package output

import (
	"bytes"
	"fmt"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Encodings are the batch body encodings the proxy can send: gzip (what
// every gateway takes, the original one too) and zstd (polymur-gateway of
// this version; a fraction of gzip's cost to decompress).
var Encodings = []string{"gzip", "zstd"}

// CheckEncoding refuses an encoding the proxy cannot send.
func CheckEncoding(e string) error {
	for _, k := range Encodings {
		if e == k {
			return nil
		}
	}
	return fmt.Errorf("unknown encoding %q (want gzip or zstd)", e)
}

// encoder compresses batch bodies, one worker's own.
type encoder struct {
	buf  bytes.Buffer // gzip's output
	zbuf []byte       // zstd's
	gz   *gzip.Writer
	zs   *zstd.Encoder
}

func newEncoder(encoding string, gzipLevel int) *encoder {
	e := &encoder{}
	if encoding == "zstd" {
		// One goroutine, a 1 MiB window: a batch is a few hundred KiB, and
		// the gateway bounds the window it accepts.
		e.zs, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
		return e
	}
	e.gz, _ = gzip.NewWriterLevel(&e.buf, gzipLevel)
	return e
}

// encode is p compressed; valid until the next call.
func (e *encoder) encode(p []byte) []byte {
	if e.zs != nil {
		e.zbuf = e.zs.EncodeAll(p, e.zbuf[:0])
		return e.zbuf
	}
	e.buf.Reset()
	e.gz.Reset(&e.buf)
	e.gz.Write(p)
	e.gz.Close()
	return e.buf.Bytes()
}

package listener

import (
	"bytes"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// zstdMaxWindow is the largest zstd window the gateway decodes with: what
// one stream may make it hold besides the lines. The proxy uses 1 MiB.
const zstdMaxWindow = 8 << 20

// zstdDecoders are reused: a decoder's tables cost more to make than a
// batch costs to decode.
var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderLowmem(true))
	if err != nil {
		panic(err) // only for invalid options
	}
	return d
}}

// decompressor reads body's lines: gzip (also the original proxy's) or
// zstd. done returns what it holds.
func decompressor(encoding string, body io.Reader) (r io.Reader, done func(), err error) {
	if encoding != "zstd" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	}
	// An empty body is an error, as it is for gzip (zstd reads it as no
	// frames), and so is one that is not zstd at all.
	var magic [4]byte
	if n, err := io.ReadFull(body, magic[:]); err != nil {
		if n == 0 {
			return nil, nil, io.EOF
		}
		return nil, nil, io.ErrUnexpectedEOF
	}
	if magic != [4]byte{0x28, 0xb5, 0x2f, 0xfd} {
		return nil, nil, zstd.ErrMagicMismatch
	}
	d := zstdDecoders.Get().(*zstd.Decoder)
	if err := d.Reset(io.MultiReader(bytes.NewReader(magic[:]), body)); err != nil {
		d.Reset(nil)
		zstdDecoders.Put(d)
		return nil, nil, err
	}
	return d, func() { d.Reset(nil); zstdDecoders.Put(d) }, nil
}

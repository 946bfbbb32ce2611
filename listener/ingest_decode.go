package listener

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/polymur/polymur/batch"
)

type sizes struct{ in, out int64 }

// decode reads the whole gzip or zstd body into batches of at most ChunkLines lines
// and about chunkBytes bytes, each holding its share of the buffered-bytes
// budget until it is released downstream. On any failure nothing is kept
// and the status says why (503 when the budget has no room within
// QueueWait of waiting; reading a slow upload does not count as waiting).
func (h *Ingest) decode(ctx context.Context, w http.ResponseWriter, r *http.Request, name, encoding string, pace func(int64)) ([]*batch.Batch, *batch.Counts, sizes, int, string) {
	body := &countReader{r: http.MaxBytesReader(w, r.Body, h.cfg.MaxBody), pace: pace}
	var bs []*batch.Batch
	fail := func(err error) ([]*batch.Batch, *batch.Counts, sizes, int, string) {
		for _, b := range bs {
			b.Release()
		}
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, nil, sizes{}, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes\n", h.cfg.MaxBody)
		case errors.Is(err, errTooBig):
			return nil, nil, sizes{}, http.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body larger than %d bytes\n", h.cfg.MaxDecoded)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, nil, sizes{}, http.StatusRequestTimeout, fmt.Sprintf("upload slower than %d bytes/s; cut\n", h.cfg.MinRate)
		case errors.Is(err, errOverBudget):
			return nil, nil, sizes{}, http.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body larger than the gateway buffers (%d bytes); send smaller batches\n", h.cfg.MaxBuffered)
		case errors.Is(err, errNoRoom):
			h.busy.Add(1)
			return nil, nil, sizes{}, http.StatusServiceUnavailable, "gateway buffers full, retry\n"
		case errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded):
			return nil, nil, sizes{}, http.StatusRequestEntityTooLarge, fmt.Sprintf("zstd window larger than %d bytes\n", zstdMaxWindow)
		case errors.Is(err, io.EOF) && body.n == 0:
			return nil, nil, sizes{}, http.StatusBadRequest, "empty body: want " + encoding + " of newline-terminated lines\n"
		case errors.Is(err, gzip.ErrHeader) || errors.Is(err, zstd.ErrMagicMismatch):
			return nil, nil, sizes{}, http.StatusBadRequest, "body is not " + encoding + "\n"
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			return nil, nil, sizes{}, http.StatusBadRequest, "truncated " + encoding + " body\n"
		}
		return nil, nil, sizes{}, http.StatusBadRequest, "malformed " + encoding + " body: " + err.Error() + "\n"
	}
	zr, done, err := decompressor(encoding, body)
	if err != nil {
		return fail(err)
	}
	defer done()
	sp := batch.NewSplitter(h.cfg.Level, h.cfg.MaxLine)
	sp.SetNormalizeTags(h.cfg.TagNormalize)
	defer sp.Release()
	sp.OnReject = onReject(h.cfg.Rejects, h.log, "key "+name+" from "+ClientLabel(r))
	if h.cfg.KeyPrefix {
		sp.SetPrefix(name + ".")
	}
	decoded := &capReader{r: zr, n: h.cfg.MaxDecoded}
	var out, total int64
	b := batch.Get()
	multi := false
	var waited time.Duration // waiting for room, summed over the chunks: at most QueueWait
	defer func() {
		if multi {
			<-h.multi
		}
	}()
	// keep admits a full chunk against the budget (waiting up to ctx). A
	// request past its first chunk first takes the multi-chunk token: two
	// large requests each holding part of the budget while waiting for the
	// rest would block each other until both time out.
	keep := func() error {
		n := int64(len(b.Buf))
		if n == 0 {
			return nil
		}
		if total += n; total > h.cfg.MaxBuffered {
			return errOverBudget
		}
		if len(bs) > 0 && !multi {
			select {
			case h.multi <- struct{}{}:
			default:
				start := time.Now()
				wait := time.NewTimer(h.cfg.QueueWait - waited)
				select {
				case h.multi <- struct{}{}:
					wait.Stop()
					waited += time.Since(start)
				case <-wait.C:
					return errNoRoom
				case <-ctx.Done():
					wait.Stop()
					return errNoRoom
				}
			}
			multi = true
		}
		if !h.budget.TryAcquire(n) {
			start := time.Now()
			wctx, cancel := context.WithTimeout(ctx, h.cfg.QueueWait-waited)
			err := h.budget.Acquire(wctx, n)
			cancel()
			waited += time.Since(start)
			if err != nil {
				return errNoRoom
			}
		}
		h.held.Add(n)
		b.Done = func() { h.held.Add(-n); h.budget.Release(n) }
		bs = append(bs, b)
		b = batch.Get()
		return nil
	}
	for {
		n, err := sp.Fill(decoded)
		out += int64(n)
		for {
			// A few lines at a time, so a chunk ends near chunkBytes even
			// when lines are long.
			more := sp.Next(b, min(h.cfg.ChunkLines, b.Len()+64))
			if b.Len() >= h.cfg.ChunkLines || len(b.Buf) >= chunkBytes {
				if kerr := keep(); kerr != nil {
					b.Release()
					return fail(kerr)
				}
				continue
			}
			if !more {
				break
			}
		}
		if errors.Is(err, io.EOF) {
			sp.Final(b)
			break
		}
		if err != nil {
			b.Release()
			return fail(err)
		}
	}
	if kerr := keep(); kerr != nil {
		b.Release()
		return fail(kerr)
	}
	b.Release()
	counts := sp.Counts
	return bs, &counts, sizes{in: body.n, out: out}, http.StatusOK, ""
}

var (
	errOverBudget = errors.New("request larger than the buffered-bytes bound")
	errNoRoom     = errors.New("no room in the buffered-bytes bound")
)

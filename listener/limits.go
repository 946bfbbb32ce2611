package listener

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// enter takes one of name's in-flight slots (false: its share is used up).
// A key may go past its share only while that leaves a share's worth of
// slots for the other keys: alone it can use most of the gateway, but it
// can never starve another key.
func (h *Ingest) enter(name string) bool {
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	if n := h.perKey[name]; n >= h.cfg.MaxInFlightPerKey && (len(h.perKey) > 1 || n >= h.cfg.MaxInFlight-h.cfg.MaxInFlightPerKey) {
		h.keyRefused[name]++
		return false
	}
	h.perKey[name]++
	return true
}

func (h *Ingest) leave(name string) {
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	if h.perKey[name]--; h.perKey[name] <= 0 {
		delete(h.perKey, name)
	}
}

// minRate makes the body reads of r keep a minimum pace: the read deadline
// starts 5 s out and moves MinRate bytes per second as data arrives (a
// slowloris upload holds its slot no longer than that).
func (h *Ingest) minRate(w http.ResponseWriter) func(read int64) {
	rc := http.NewResponseController(w)
	start := time.Now()
	rc.SetReadDeadline(start.Add(5 * time.Second))
	return func(read int64) {
		rc.SetReadDeadline(start.Add(5*time.Second + time.Duration(read*int64(time.Second)/h.cfg.MinRate)))
	}
}

var errTooBig = errors.New("decompressed body too large")

// capReader fails once more than n bytes were read.
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n < 0 {
		return 0, errTooBig
	}
	if int64(len(p)) > c.n+1 {
		p = p[:c.n+1]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if c.n < 0 {
		return n, errTooBig
	}
	return n, err
}

// countReader counts bytes read and tells pace (when set).
type countReader struct {
	r    io.Reader
	n    int64
	pace func(read int64)
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.pace != nil && n > 0 {
		c.pace(c.n)
	}
	return n, err
}

// Buffered returns the bytes of the budget in use and the bound.
func (h *Ingest) Buffered() (int64, int64) { return h.held.Load(), h.cfg.MaxBuffered }

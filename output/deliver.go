package output

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/polymur/polymur/batch"
)

// worker compresses and posts batches, retrying each until it is accepted
// or the hard stop comes.
func (o *Output) worker(ctx context.Context, id int) {
	enc := newEncoder(o.cfg.Encoding, o.cfg.GzipLevel)
	for b := range o.posts {
		o.deliver(ctx, id, b, enc.encode(b.Buf), enc)
		b.Release()
	}
}

func (o *Output) deliver(ctx context.Context, id int, b *batch.Batch, body []byte, enc *encoder) {
	attempt := 0
	for {
		start := time.Now()
		code, msg, err := o.post(ctx, o.ingest, body)
		if err == nil && code == http.StatusOK {
			if attempt > 0 {
				o.log.Info("gateway accepted batch after retries", "worker", id, "n", b.Len(), "attempts", attempt+1)
			}
			o.failing.Store(false)
			o.sent.Add(uint64(b.Len()))
			o.batches.Add(1)
			o.rawBytes.Add(uint64(len(b.Buf)))
			o.gzBytes.Add(uint64(len(body)))
			if obs := o.cfg.ObservePost; obs != nil {
				obs(time.Since(start))
			}
			return
		}
		if ctx.Err() != nil || (o.sp != nil && o.isDraining() && (err != nil || code != http.StatusOK)) {
			// At the hard stop, or shutting down with a spool while the
			// gateway fails: keep it on disk now instead of retrying until
			// the drain deadline.
			o.log.Error("batch not delivered before shutdown", "worker", id, "n", b.Len(), "spooled", o.sp != nil)
			o.keep(b, DropShutdown)
			return
		}
		attempt++
		wait := o.backoff(attempt)
		switch {
		case err != nil:
			o.failing.Store(true)
			if attempt == 1 || attempt%10 == 0 {
				o.log.Warn("gateway unreachable; batch kept, retrying", "worker", id, "err", err, "attempt", attempt, "retry_in", wait.Round(time.Millisecond))
			}
		case code >= 300 && code < 400:
			o.failing.Store(true)
			if attempt == 1 || attempt%10 == 0 {
				o.log.Error("gateway answered a redirect; batch kept, retrying", "worker", id, "status", code, "reason", msg, "attempt", attempt)
			}
		case code == http.StatusUnauthorized:
			o.failing.Store(true)
			wait = o.cfg.AuthRetry
			o.log.Error("gateway refused the API key (401); batch kept, retrying slowly — check -api-key", "worker", id, "retry_in", wait)
		case code == http.StatusRequestEntityTooLarge && b.Len() > 1:
			// Too big for this gateway: send it in halves.
			o.log.Warn("gateway says batch too large; splitting", "worker", id, "n", b.Len())
			for _, half := range batch.Split(b, (b.Len()+1)/2) {
				o.deliver(ctx, id, half, bytes.Clone(enc.encode(half.Buf)), enc)
				half.Release()
			}
			return
		case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
			o.drop(DropRejected, b.Len())
			o.log.Error("gateway rejected batch; dropped", "worker", id, "status", code, "reason", msg, "n", b.Len())
			return
		default:
			o.failing.Store(code != http.StatusServiceUnavailable)
			if attempt == 1 || attempt%10 == 0 {
				o.log.Warn("gateway answered an error; batch kept, retrying", "worker", id, "status", code, "reason", msg, "attempt", attempt)
			}
		}
		o.retries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		case <-o.draining:
			if o.sp == nil { // without a spool, retrying is all there is
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			} else {
				t.Stop()
			}
		}
	}
}

func (o *Output) backoff(attempt int) time.Duration {
	d := o.cfg.RetryMin
	for i := 1; i < attempt && d < o.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, o.cfg.RetryMax)
	return d/2 + time.Duration(rand.Int64N(int64(d)/2+1)) // jitter in [d/2, d]
}

// post sends one request and returns the status and a short reason.
func (o *Output) post(ctx context.Context, url string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Polymur-Key", o.cfg.APIKey)
	if len(body) > 0 {
		req.Header.Set("Content-Encoding", o.cfg.Encoding)
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, "redirect to " + strconv.Quote(resp.Header.Get("Location")) + " not followed (check -gateway)", nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	return resp.StatusCode, strings.TrimSpace(string(msg)), nil
}

// pingLoop checks the gateway and the key at start, retrying until it
// answers; sending does not wait for it.
func (o *Output) pingLoop(ctx context.Context) {
	o.log.Info("pinging gateway", "gateway", o.cfg.Gateway)
	for attempt := 1; ; attempt++ {
		code, msg, err := o.post(ctx, o.pingU, nil)
		switch {
		case err == nil && code == http.StatusOK:
			o.log.Info("connection to gateway successful", "gateway", o.cfg.Gateway)
			return
		case ctx.Err() != nil:
			return
		case err != nil:
			o.log.Warn("gateway not reachable yet; accepting metrics and retrying", "gateway", o.cfg.Gateway, "err", err, "attempt", attempt)
		case code == http.StatusUnauthorized:
			o.log.Error("gateway refused the API key (401); check -api-key", "gateway", o.cfg.Gateway)
		default:
			o.log.Warn("gateway ping failed", "status", code, "reason", msg)
		}
		t := time.NewTimer(min(o.backoff(attempt), 30*time.Second))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// clientTLS adds -cert's CA to the system roots (the original replaced them)
// and loads an optional client certificate.
func clientTLS(cfg Config) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("-cert: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cert %s: no PEM certificate in it", cfg.CAFile)
		}
		c.RootCAs = roots
	}
	if cfg.ClientCert != "" || cfg.ClientKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCert, cfg.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

package listener

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Certs serves a TLS certificate that can be replaced while running: read
// again on Reload (the gateway's SIGHUP) and when the files change (Watch).
// A reload that fails keeps the certificate in force. Safe for concurrent
// use.
type Certs struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
	stamp             atomic.Pointer[string] // the files' sizes and times when last read
	log               *slog.Logger
}

// NewCerts reads the pair once (a bad pair fails at start).
func NewCerts(certFile, keyFile string, log *slog.Logger) (*Certs, error) {
	c := &Certs{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Certs) fileStamp() string {
	var s string
	for _, f := range []string{c.certFile, c.keyFile} {
		if st, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d:%d;", st.Size(), st.ModTime().UnixNano())
		}
	}
	return s
}

// Reload reads the files again.
func (c *Certs) Reload() error {
	stamp := c.fileStamp()
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	c.cur.Store(&cert)
	c.stamp.Store(&stamp)
	return nil
}

// Get is tls.Config.GetCertificate.
func (c *Certs) Get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// Watch reloads the pair whenever the files change, checking every
// interval, until ctx ends.
func (c *Certs) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s := c.fileStamp(); s != *c.stamp.Load() {
			c.ReloadAndLog("the files changed")
		}
	}
}

// ReloadAndLog reloads and logs the outcome; why says what asked for it.
func (c *Certs) ReloadAndLog(why string) {
	if err := c.Reload(); err != nil {
		c.log.Error("TLS certificate not reloaded; the previous one stays in force", "why", why, "err", err)
		return
	}
	c.log.Info("TLS certificate reloaded", "why", why, "cert", c.certFile)
}

// ServerTLS is the gateway's TLS configuration: TLS 1.2 with AEAD suites
// only (TLS 1.3's are all AEAD), HTTP/2, certificates from c.
func ServerTLS(c *Certs) *tls.Config {
	return &tls.Config{GetCertificate: c.Get, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		}}
}

package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polymur/polymur/internal/testutil"
)

// startCarbonCRelay runs Debian's carbon-c-relay daemon on conf (trusting
// ca for its TLS links) and waits for its log, not by connecting: a
// connect-and-close probe can crash carbon-c-relay 3.7.3.
func startCarbonCRelay(t *testing.T, conf, ca string) *testutil.Proc {
	t.Helper()
	bin := testutil.CarbonCRelay(t)
	dir := t.TempDir()
	path, logFile := filepath.Join(dir, "relay.conf"), filepath.Join(dir, "relay.log")
	os.WriteFile(path, []byte(conf), 0o600)
	p := testutil.StartProc(t, bin, nil, "-f", path, "-l", logFile, "-C", ca)
	testutil.WaitFor(t, "carbon-c-relay started", limit, func() bool {
		b, _ := os.ReadFile(logFile)
		if p.Exited() {
			t.Fatalf("carbon-c-relay exited:\n%s\n%s", b, p.Logs)
		}
		return strings.Contains(string(b), "startup sequence complete")
	})
	t.Cleanup(func() { p.Stop(t) })
	return p
}

func tlsLines(tag string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "tls.%s.m%d %d 1700000000\n", tag, i, i)
	}
	return b.String()
}

// TLS both ways with the real carbon-c-relay (Debian's, built with ssl):
// carbon-c-relay → polymur's -tls-listen-addr, and polymur → a
// carbon-c-relay listening with transport plain ssl, certificates made in
// the test and verified strictly on both sides.
func TestTLSWithCarbonCRelay(t *testing.T) {
	cert := testutil.NewTLSFiles(t)
	pem := filepath.Join(t.TempDir(), "both.pem") // carbon-c-relay wants the certificate and key in one file
	c, _ := os.ReadFile(cert.CertFile)
	k, _ := os.ReadFile(cert.KeyFile)
	os.WriteFile(pem, append(c, k...), 0o600)

	t.Run("carbon-c-relay to polymur", func(t *testing.T) {
		sink := testutil.NewSink(t)
		d := start(t, "-tls-listen-addr", "127.0.0.1:0", "-tls-cert", cert.CertFile, "-tls-key", cert.KeyFile, "-destinations", sink.Addr())
		in := testutil.FreeAddr(t)
		startCarbonCRelay(t, fmt.Sprintf("cluster p forward %s transport plain ssl;\nlisten type linemode %s proto tcp;\nmatch * send to p stop;\n", d.Addrs["tls"], in), cert.CertFile)
		testutil.SendTCP(t, in, []byte(tlsLines("in", 500)))
		if !sink.WaitCount(500, limit) {
			t.Fatalf("%d of 500 lines arrived over carbon-c-relay's TLS link", sink.Count())
		}
	})
	t.Run("polymur to carbon-c-relay", func(t *testing.T) {
		sink := testutil.NewSink(t)
		tlsPort := testutil.FreeAddr(t)
		startCarbonCRelay(t, fmt.Sprintf("cluster s forward %s;\nlisten type linemode transport plain ssl %s %s proto tcp;\nmatch * send to s stop;\n", sink.Addr(), pem, tlsPort), cert.CertFile)
		conf := filepath.Join(t.TempDir(), "p.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf("cluster c forward %s transport plain ssl;\nmatch * send to c;\n", tlsPort)), 0o600)
		d := start(t, "-config", conf, "-destination-ca", cert.CertFile)
		d.Send(t, "listen", tlsLines("out", 500))
		if !sink.WaitCount(500, limit) {
			t.Fatalf("%d of 500 lines arrived through carbon-c-relay's TLS listener; %s", sink.Count(), d.Ask(t, "api", "stats"))
		}
	})
	t.Run("a server certificate that does not verify", func(t *testing.T) {
		other := testutil.NewTLSFiles(t) // not the CA polymur trusts
		sink := testutil.NewSink(t)
		d1 := start(t, "-tls-listen-addr", "127.0.0.1:0", "-tls-cert", other.CertFile, "-tls-key", other.KeyFile, "-destinations", sink.Addr())
		d2 := start(t, "-destinations", d1.Addrs["tls"], "-destination-tls", "-destination-ca", cert.CertFile, "-drain-timeout", "100ms")
		d2.Send(t, "listen", tlsLines("bad", 10))
		testutil.WaitFor(t, "the failed verification reported", limit, func() bool {
			return strings.Contains(d2.Ask(t, "api", "stats"), "certificate")
		})
		if sink.Count() != 0 {
			t.Fatal("lines went to a server whose certificate did not verify")
		}
	})
}

// mTLS on -tls-listen-addr: a client without a certificate, or with one
// from another CA, is refused and counted; polymur with -destination-cert
// (and a -config server with transport plain mtls) gets through.
func TestMutualTLS(t *testing.T) {
	ca := testutil.NewTLSFiles(t)
	sink := testutil.NewSink(t)
	d := start(t, "-tls-listen-addr", "127.0.0.1:0", "-tls-cert", ca.CertFile, "-tls-key", ca.KeyFile, "-tls-client-ca", ca.CertFile, "-destinations", sink.Addr())
	roots := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(ca.CertFile)
	roots.AppendCertsFromPEM(pemBytes)
	stranger := testutil.NewTLSFiles(t)
	strangerPair, _ := tls.LoadX509KeyPair(stranger.CertFile, stranger.KeyFile)
	for _, certs := range [][]tls.Certificate{nil, {strangerPair}} {
		c, err := tls.Dial("tcp", d.Addrs["tls"], &tls.Config{RootCAs: roots, Certificates: certs})
		if err == nil {
			c.Write([]byte("mtls.refused 1 1700000000\n"))
			buf := make([]byte, 1)
			_, err = c.Read(buf) // TLS 1.3: the refusal arrives after the handshake
			c.Close()
		}
		if err == nil {
			t.Fatal("a client without a trusted certificate was served")
		}
	}
	testutil.WaitFor(t, "refusals counted", limit, func() bool {
		return testutil.JSONInt(d.Ask(t, "api", "stats"), "tls_handshake_failed") == 2
	})
	// polymur as the mTLS client, by flags and by -config.
	p1 := start(t, "-destinations", d.Addrs["tls"], "-destination-tls", "-destination-ca", ca.CertFile, "-destination-cert", ca.CertFile, "-destination-key", ca.KeyFile)
	p1.Send(t, "listen", tlsLines("flags", 100))
	conf := filepath.Join(t.TempDir(), "m.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("cluster m forward %s transport plain mtls %s %s;\nmatch * send to m;\n", d.Addrs["tls"], ca.CertFile, ca.KeyFile)), 0o600)
	p2 := start(t, "-config", conf, "-destination-ca", ca.CertFile)
	p2.Send(t, "listen", tlsLines("config", 100))
	if !sink.WaitCount(200, limit) {
		t.Fatalf("%d of 200 lines over mTLS", sink.Count())
	}
	if sink.Count() != 200 || strings.Contains(strings.Join(sink.Lines(), "\n"), "refused") {
		t.Fatalf("%d lines: %q", sink.Count(), sink.Lines())
	}
}

// Compressed links, polymur to polymur: by flags (-destination-transport
// into -gzip-listen-addr, -lz4-…, -snappy-…) and by -config (transport lz4
// ssl: compressed inside TLS), every line arrives once.
func TestCompressedLinks(t *testing.T) {
	for _, tr := range []string{"gzip", "lz4", "snappy"} {
		t.Run(tr, func(t *testing.T) {
			sink := testutil.NewSink(t)
			b := start(t, "-"+tr+"-listen-addr", "127.0.0.1:0", "-destinations", sink.Addr())
			a := start(t, "-destinations", b.Addrs[tr], "-destination-transport", tr)
			for k := range 5 { // several writes on one connection: one stream, many flushes
				a.Send(t, "listen", tlsLines(fmt.Sprintf("%s%d", tr, k), 2000))
				if !sink.WaitCount(2000*(k+1), limit) {
					t.Fatalf("%d of %d lines over %s", sink.Count(), 2000*(k+1), tr)
				}
			}
			if st := a.Ask(t, "api", "stats"); testutil.JSONInt(st, "reconnects") != 0 {
				t.Fatalf("the %s link reconnected: %s", tr, st)
			}
		})
	}
	t.Run("lz4 inside TLS by -config", func(t *testing.T) {
		cert := testutil.NewTLSFiles(t)
		sink := testutil.NewSink(t)
		b := start(t, "-tls-listen-addr", "127.0.0.1:0", "-tls-transport", "lz4", "-tls-cert", cert.CertFile, "-tls-key", cert.KeyFile, "-destinations", sink.Addr())
		conf := filepath.Join(t.TempDir(), "z.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf("cluster z forward %s transport lz4 ssl;\nmatch * send to z;\n", b.Addrs["tls"])), 0o600)
		a := start(t, "-config", conf, "-destination-ca", cert.CertFile)
		a.Send(t, "listen", tlsLines("lz4conf", 3000))
		if !sink.WaitCount(3000, limit) {
			t.Fatalf("%d of 3000 lines over lz4 in TLS by -config", sink.Count())
		}
	})
}

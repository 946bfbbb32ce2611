package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func startBin(bin, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stderr = os.Stderr
	return cmd, cmd.Start()
}

func stopBin(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// pipelineRun measures polymur-proxy → polymur-gateway (dev mode) → sink.
func pipelineRun(bin string, lines int, useTLS bool, compression string, timeout time.Duration) (string, error) {
	s, err := newSink()
	if err != nil {
		return "", err
	}
	defer s.close()
	gw, gwAPI, px, pxAPI := freeAddr(), freeAddr(), freeAddr(), freeAddr()
	host, port, _ := net.SplitHostPort(gw)
	gwArgs := []string{"-dev-mode", "-listen-addr", host, "-api-addr", gwAPI, "-stat-addr", "", "-log-level", "warn", "-destinations", s.addr()}
	scheme, pxTLS := "http", []string{}
	if useTLS {
		dir, err := os.MkdirTemp("", "polymur-bench-tls")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		cert, key, err := selfSigned(dir)
		if err != nil {
			return "", err
		}
		gwArgs = append(gwArgs, "-listen-http-port", "off", "-listen-https-port", port, "-cert", cert, "-key", key)
		scheme, pxTLS = "https", []string{"-cert", cert}
	} else {
		gwArgs = append(gwArgs, "-listen-http-port", port)
	}
	g, err := startBin(bin, "polymur-gateway", gwArgs...)
	if err != nil {
		return "", err
	}
	defer stopBin(g)
	p, err := startBin(bin, "polymur-proxy", append([]string{"-gateway", scheme + "://" + gw, "-api-key", "123", "-listen-addr", px,
		"-api-addr", pxAPI, "-stat-addr", "", "-log-level", "warn", "-flush-interval", "100ms", "-compression", compression}, pxTLS...)...)
	if err != nil {
		return "", err
	}
	defer stopBin(p)
	if err := waitListening(px, 10*time.Second); err != nil {
		return "", err
	}
	if err := waitListening(gw, 10*time.Second); err != nil {
		return "", err
	}
	in := generate(lines, 1)
	pc0, _, _ := procStats(p.Process.Pid)
	gc0, _, _ := procStats(g.Process.Pid)
	start := time.Now()
	if err := in.send(px); err != nil {
		return "", err
	}
	for s.lines.Load() < int64(lines) && time.Since(start) < timeout {
		time.Sleep(2 * time.Millisecond)
	}
	wall := time.Since(start)
	pc1, prss, _ := procStats(p.Process.Pid)
	gc1, grss, _ := procStats(g.Process.Pid)
	stats := ask(pxAPI, "stats")
	raw, wire := jsonInt(stats, "raw_bytes"), jsonInt(stats, "gzip_bytes")
	got := s.lines.Load()
	label := "HTTP"
	if useTLS {
		label = "HTTPS"
	}
	ratio := 0.0
	if wire > 0 {
		ratio = float64(raw) / float64(wire)
	}
	return fmt.Sprintf("- proxy → gateway (%s, %s, dev mode) → sink: %d of %d lines (%.2f%%, checksum %s) in %v = **%.0fk lines/s**; wire %d bytes for %d raw (**1/%.1f**); CPU proxy %v + gateway %v; peak RSS proxy %.0f MiB, gateway %.0f MiB",
		label, compression, got, lines, 100*float64(got)/float64(lines), okText(s.checksum() == in.sum), wall.Round(time.Millisecond),
		float64(got)/wall.Seconds()/1000, wire, raw, ratio, (pc1 - pc0).Round(10*time.Millisecond), (gc1 - gc0).Round(10*time.Millisecond),
		float64(prss)/(1<<20), float64(grss)/(1<<20)), nil
}

func okText(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISMATCH"
}

// idleConns opens n idle client connections to polymur and reports its
// resident memory and open file descriptors.
func idleConns(bin string, n int) (string, error) {
	s, err := newSink()
	if err != nil {
		return "", err
	}
	defer s.close()
	listen, apiAddr := freeAddr(), freeAddr()
	p, err := startBin(bin, "polymur", "-listen-addr", listen, "-api-addr", apiAddr, "-stat-addr", "", "-log-level", "warn", "-destinations", s.addr())
	if err != nil {
		return "", err
	}
	defer stopBin(p)
	if err := waitListening(listen, 10*time.Second); err != nil {
		return "", err
	}
	base := vmRSS(p.Process.Pid)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			return "", fmt.Errorf("idle connection %d: %w", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(ask(apiAddr, "stats"), fmt.Sprintf(`"connections_open": %d`, n)) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	rss, fds := vmRSS(p.Process.Pid), fdCount(p.Process.Pid)
	// The relay still works with all of them open.
	for i := 0; i < len(conns); i += len(conns) / 100 {
		fmt.Fprintf(conns[i], "bench.idle.check%d 1 1700000000\n", i)
	}
	for s.lines.Load() < 100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Sprintf("- %d idle client connections to polymur: RSS %.0f MiB (%.0f MiB before them), %d open fds; 100 of them then sent a line each: %d delivered",
		n, float64(rss)/(1<<20), float64(base)/(1<<20), fds, s.lines.Load()), nil
}

// jsonInt finds `"key": <int>` in indented JSON.
func jsonInt(s, key string) int64 {
	i := strings.Index(s, `"`+key+`": `)
	if i < 0 {
		return 0
	}
	var v int64
	fmt.Sscanf(s[i+len(key)+4:], "%d", &v)
	return v
}

// selfSigned writes a loopback certificate and key into dir.
func selfSigned(dir string) (string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "polymur bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return cert, keyFile, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
}

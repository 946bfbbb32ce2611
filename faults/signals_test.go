package faults

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polymur/polymur/internal/testutil"
)

// SIGHUP (systemd's reload, logrotate, a closed terminal) used to kill all
// three daemons with exit 129 and lose what was queued. Now it is logged
// and ignored: the queued points are still delivered once the destination
// is back, and SIGTERM still drains and exits 0.
func TestSighupIsIgnored(t *testing.T) {
	s := testutil.NewSink(t)
	s.Stop()
	r := startPolymur(t, "-destinations", s.Addr(), "-outgoing-queue-cap", "100000")
	gw := startDevGateway(t, s.Addr())
	px := testutil.StartProc(t, bin("polymur-proxy"), nil, "-listen-addr", testutil.FreeAddr(t), "-stat-addr", "",
		"-gateway", "http://"+gw.addr, "-api-key", "123")
	const n = 8000
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "hup.m%d %d 1700000000\n", i, i)
	}
	testutil.SendTCP(t, r.listen, []byte(sb.String()))
	testutil.WaitFor(t, "lines queued", limit, func() bool { return r.stat("received") == n })
	for _, p := range []*testutil.Proc{r.Proc, gw.Proc, px} {
		for k := 1; k <= 3; k++ { // one at a time: pending signals coalesce
			p.Cmd.Process.Signal(syscall.SIGHUP)
			testutil.WaitFor(t, p.Name()+" logs the SIGHUP", 30*time.Second, func() bool {
				if p.Exited() {
					t.Fatalf("%s exited on SIGHUP (%v):\n%s", p.Name(), p.Cmd.ProcessState, p.Logs)
				}
				return strings.Count(p.Logs.String(), "SIGHUP received and ignored") >= k
			})
		}
	}
	s.Start()
	testutil.WaitTotal(n, limit, s)
	if s.Count() != n {
		t.Fatalf("%d of %d queued lines delivered after SIGHUP", s.Count(), n)
	}
	for _, p := range []*testutil.Proc{r.Proc, gw.Proc, px} {
		p.Stop(t)
	}
}

// A daemon whose stderr pipe lost its reader (the terminal or the log
// collector went away) keeps running: writes fail with EPIPE instead of
// SIGPIPE ending the process.
func TestBrokenStderrPipe(t *testing.T) {
	s := testutil.NewSink(t)
	listen, api := testutil.FreeAddr(t), testutil.FreeAddr(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin("polymur"), "-listen-addr", listen, "-api-addr", api, "-stat-addr", "", "-destinations", s.Addr())
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	testutil.WaitFor(t, "polymur API", limit, func() bool { return testutil.Ask(api, "ping") == "pong" })
	pr.Close()                         // nobody reads its logs any more
	cmd.Process.Signal(syscall.SIGHUP) // makes it log: the write gets EPIPE
	testutil.SendTCP(t, listen, []byte("pipe.m1 1 1700000000\n"))
	testutil.WaitTotal(1, limit, s)
	select {
	case err := <-done:
		t.Fatalf("polymur died with its stderr pipe closed: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if testutil.Ask(api, "ping") != "pong" {
		t.Fatal("polymur stopped answering")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	done <- nil
}

// SIGHUP on a gateway with a certificate re-reads it: a renewed certificate
// is served without a restart.
func TestGatewaySighupReloadsCertificate(t *testing.T) {
	s := testutil.NewSink(t)
	files := testutil.NewTLSFiles(t)
	addr, api := testutil.FreeAddr(t), testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	gw := testutil.StartProc(t, bin("polymur-gateway"), nil, "-dev-mode", "-listen-addr", "127.0.0.1", "-listen-http-port", "off",
		"-listen-https-port", port, "-cert", files.CertFile, "-key", files.KeyFile, "-api-addr", api, "-stat-addr", "", "-destinations", s.Addr())
	testutil.WaitFor(t, "gateway", limit, func() bool { return testutil.Ask(api, "ping") == "pong" })
	serial := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	next := testutil.NewTLSFiles(t)
	for _, p := range [][2]string{{next.CertFile, files.CertFile}, {next.KeyFile, files.KeyFile}} {
		b, _ := os.ReadFile(p[0])
		os.WriteFile(p[1], b, 0o600)
	}
	gw.Cmd.Process.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, "the renewed certificate served", limit, func() bool { return serial() != before })
	// The log line follows the swap: wait for it rather than race it.
	testutil.WaitFor(t, "the reload logged", limit, func() bool { return strings.Contains(gw.Logs.String(), "TLS certificate reloaded") })
	gw.Stop(t)
}

// SIGHUP on polymur with -tls-listen-addr re-reads its certificate: new
// connections get the renewed one, and a connection opened before keeps
// working — nothing is dropped.
func TestPolymurSighupReloadsCertificate(t *testing.T) {
	s := testutil.NewSink(t)
	files := testutil.NewTLSFiles(t)
	tlsAddr := testutil.FreeAddr(t)
	r := startPolymur(t, "-destinations", s.Addr(), "-tls-listen-addr", tlsAddr, "-tls-cert", files.CertFile, "-tls-key", files.KeyFile)
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := dial()
	defer old.Close()
	before := old.ConnectionState().PeerCertificates[0].SerialNumber.String()
	old.Write([]byte("tls.before 1 1700000000\n"))
	next := testutil.NewTLSFiles(t)
	for _, p := range [][2]string{{next.CertFile, files.CertFile}, {next.KeyFile, files.KeyFile}} {
		b, _ := os.ReadFile(p[0])
		os.WriteFile(p[1], b, 0o600)
	}
	r.Cmd.Process.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, "the renewed certificate served", limit, func() bool {
		c := dial()
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String() != before
	})
	old.Write([]byte("tls.after 2 1700000000\n")) // the old connection still carries lines
	if !s.WaitCount(2, limit) {
		t.Fatalf("%d of 2 lines on the connection opened before the reload", s.Count())
	}
	r.Stop(t)
}

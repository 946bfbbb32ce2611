package testutil

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ConsulVersion is the agent `make consul` builds from tools/consul.
const ConsulVersion = "1.22.7"

// ConsulBinary finds the real Consul agent: $POLYMUR_CONSUL_BIN, then the
// cache `make consul` fills, then PATH. Without one the test is skipped —
// except under CI=true, where it fails, so a green CI always means the real
// Consul tests ran.
func ConsulBinary(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("POLYMUR_CONSUL_BIN")}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".cache", "polymur", "consul-"+ConsulVersion, "consul"))
	}
	if p, err := exec.LookPath("consul"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	msg := "no Consul agent: run `make consul` (builds Consul " + ConsulVersion + " into ~/.cache/polymur) or set POLYMUR_CONSUL_BIN"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Consul is a real single-node Consul server on loopback with its data on
// disk, so that it can be stopped and started again with its keys intact.
type Consul struct {
	t       testing.TB
	bin     string
	dir     string
	ports   [4]int // http, serf-lan, serf-wan, server
	Addr    string // host:port of the HTTP API
	mu      sync.Mutex
	cmd     *exec.Cmd
	log     *bytes.Buffer
	exited  chan struct{}
	stopped bool
	// Token is the management token when ACLs are on (StartConsulACL);
	// Put, Delete and ACL use it.
	Token string
}

// StartConsul starts an agent and waits until it has a leader.
func StartConsul(t testing.TB) *Consul { t.Helper(); return startConsul(t, "") }

// StartConsulACL starts an agent with ACLs on, default deny, and Token as
// the management token.
func StartConsulACL(t testing.TB) *Consul {
	t.Helper()
	return startConsul(t, "polymur-test-management-token")
}

func startConsul(t testing.TB, token string) *Consul {
	t.Helper()
	c := &Consul{t: t, bin: ConsulBinary(t), dir: t.TempDir(), Token: token}
	// A port free a moment ago can be taken by another test before the
	// agent binds it: then it starts again on fresh ports.
	for try := 1; ; try++ {
		c.pickPorts()
		if c.start(try < 5) {
			break
		}
		os.RemoveAll(c.dir)
		os.MkdirAll(c.dir, 0o755)
	}
	t.Cleanup(c.Stop)
	return c
}

// pickPorts takes four distinct free ports (held open at once).
func (c *Consul) pickPorts() {
	var lns []net.Listener
	for i := range c.ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.t.Fatal(err)
		}
		lns = append(lns, ln)
		c.ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		ln.Close()
	}
	c.Addr = fmt.Sprintf("127.0.0.1:%d", c.ports[0])
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for daemons that must be restarted on the same address.
// It never returns an address a sink holds (a stopped sink starts again
// on its own port) or one it returned before in this test binary.
func FreeAddr(t testing.TB) string {
	for {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		if reserve(addr) {
			return addr
		}
	}
}

// handedOut holds the addresses FreeAddr returned and the sinks' ports.
var handedOut sync.Map

// reserve marks addr as taken; false when it already was.
func reserve(addr string) bool {
	_, taken := handedOut.LoadOrStore(addr, true)
	return !taken
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start (re)starts the agent on its ports and waits for a leader.
func (c *Consul) Start() { c.t.Helper(); c.start(false) }

// start starts the agent; with retryInUse, a port taken meanwhile returns
// false instead of failing the test.
func (c *Consul) start(retryInUse bool) bool {
	c.t.Helper()
	c.mu.Lock()
	args := []string{"agent", "-server", "-bootstrap-expect=1", "-data-dir", c.dir, "-node", "polymur-test",
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
		"-http-port", fmt.Sprint(c.ports[0]), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", fmt.Sprint(c.ports[1]), "-serf-wan-port", fmt.Sprint(c.ports[2]),
		"-server-port", fmt.Sprint(c.ports[3]), "-log-level", "warn", "-disable-host-node-id",
		"-hcl", `performance { raft_multiplier = 1 }`}
	if c.Token != "" {
		args = append(args, "-hcl", `acl { enabled = true
default_policy = "deny"
tokens { initial_management = "`+c.Token+`" } }`)
	}
	c.cmd = exec.Command(c.bin, args...)
	c.log = &bytes.Buffer{}
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		c.mu.Unlock()
		c.t.Fatalf("start consul: %v", err)
	}
	c.exited = make(chan struct{})
	cmd, exited := c.cmd, c.exited
	go func() { cmd.Wait(); close(exited) }()
	c.stopped = false
	c.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			if retryInUse && strings.Contains(c.log.String(), "address already in use") {
				return false
			}
			c.t.Fatalf("consul exited at start:\n%s", c.log)
		default:
		}
		if leader(c.Addr) && c.kvWorks() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("consul on %s has no leader after 60s:\n%s", c.Addr, c.log)
	return false
}

func leader(addr string) bool {
	resp, err := http.Get("http://" + addr + "/v1/status/leader")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && len(strings.Trim(string(b), "\" \n")) > 0
}

// kvWorks checks the KV store answers (the leader can need a moment).
func (c *Consul) kvWorks() bool {
	req, _ := http.NewRequest(http.MethodGet, "http://"+c.Addr+"/v1/kv/polymur-test-probe", nil)
	req.Header.Set("X-Consul-Token", c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 404 || resp.StatusCode == 200
}

// Stop stops the agent (its data stays for Start).
func (c *Consul) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.cmd == nil {
		return
	}
	c.stopped = true
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// Put writes a raw KV entry (value may be anything, even empty or binary).
func (c *Consul) Put(key string, value []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+c.Addr+"/v1/kv/"+key, bytes.NewReader(value))
	req.Header.Set("X-Consul-Token", c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		c.t.Fatalf("PUT %s: %s", key, resp.Status)
	}
}

// Delete removes a KV entry.
func (c *Consul) Delete(key string) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://"+c.Addr+"/v1/kv/"+key, nil)
	req.Header.Set("X-Consul-Token", c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
}

// ACL sends a JSON request to the ACL API with the management token and
// returns the answer's body (fatal unless 200).
func (c *Consul) ACL(method, path, body string) string {
	c.t.Helper()
	return c.API(method, "acl/"+path, body)
}

// API sends a request to /v1/PATH with the token (if any) and returns the
// answer's body (fatal unless 200): agent/service/register and the like.
func (c *Consul) API(method, path, body string) string {
	c.t.Helper()
	req, _ := http.NewRequest(method, "http://"+c.Addr+"/v1/"+path, strings.NewReader(body))
	req.Header.Set("X-Consul-Token", c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		c.t.Fatalf("%s /v1/%s: %s %s", method, path, resp.Status, b)
	}
	return string(b)
}

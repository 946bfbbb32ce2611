package testutil

import (
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"testing"
)

// DNS is a tiny DNS server on 127.0.0.1 (UDP) answering A queries from a
// table the test changes; other names get NXDOMAIN. Enough for a
// resolver pointed at it (net.Resolver with PreferGo and a Dial to Addr).
type DNS struct {
	Addr string
	mu   sync.Mutex
	a    map[string]net.IP
	conn *net.UDPConn
}

// StartDNS starts the server; Set gives names their address.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d := &DNS{Addr: c.LocalAddr().String(), a: map[string]net.IP{}, conn: c}
	go d.serve()
	t.Cleanup(func() { c.Close() })
	return d
}

// Set makes name (without the trailing dot) resolve to ip.
func (d *DNS) Set(name, ip string) {
	d.mu.Lock()
	d.a[strings.ToLower(name)+"."] = net.ParseIP(ip).To4()
	d.mu.Unlock()
}

func (d *DNS) serve() {
	buf := make([]byte, 512)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			d.conn.WriteToUDP(resp, from)
		}
	}
}

// answer builds the reply to one query (nil for what it cannot read).
func (d *DNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	// The question: labels, then type and class.
	i, name := 12, ""
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		name += strings.ToLower(string(q[i+1:i+1+l])) + "."
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	qend := i + 5
	d.mu.Lock()
	ip := d.a[name]
	d.mu.Unlock()
	resp := append([]byte(nil), q[:qend]...)
	resp[2] = 0x84 | resp[2]&0x01 // response, authoritative, RD copied
	resp[3] = 0x80                // RA, NOERROR
	binary.BigEndian.PutUint16(resp[6:], 0)
	binary.BigEndian.PutUint16(resp[8:], 0)
	binary.BigEndian.PutUint16(resp[10:], 0)
	switch {
	case ip == nil:
		resp[3] |= 3 // NXDOMAIN
	case qtype == 1: // A
		binary.BigEndian.PutUint16(resp[6:], 1)
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4)
		resp = append(resp, ip...)
	}
	return resp
}

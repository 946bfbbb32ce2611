package listener

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polymur/polymur/batch"
)

func TestUDPStatsdLines(t *testing.T) {
	var mu sync.Mutex
	var got []string
	send := func(_ context.Context, b *batch.Batch) error {
		mu.Lock()
		for i := range b.Lines {
			got = append(got, string(b.Name(i))+"="+strings.TrimSuffix(string(b.Line(i)), "\n"))
		}
		mu.Unlock()
		b.Release()
		return nil
	}
	u, err := NewUDP(UDPConfig{Addr: "127.0.0.1:0", Level: batch.LevelStatsd, Send: send, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	c, err := net.Dial("udp", u.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, d := range []string{
		"a.b:1|c",                        // one line, no newline
		"c.d:2|ms\ne.f:3|g\n",            // two, trailing newline
		"no.pipe:1\n:1|c\nx:1|q\n\n\r\n", // bad ones, blank ones
		"crlf:1|c\r\n",
		"\x00\xff\xfe",
		"",
	} {
		c.Write([]byte(d))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	<-done
	want := "a.b=a.b:1|c c.d=c.d:2|ms e.f=e.f:3|g crlf=crlf:1|c"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
	st := u.Stats()
	if st.Packets != 6 && st.Packets != 5 { // an empty datagram may or may not be delivered
		t.Errorf("packets %d", st.Packets)
	}
	r := st.Rejected
	if st.Accepted != 4 || r["fields"] != 2 || r["name"] != 1 || r["type"] != 1 {
		t.Errorf("accepted %d, rejected %v", st.Accepted, r)
	}
}

func TestUDPPortInUse(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := NewUDP(UDPConfig{Addr: c.LocalAddr().String(), Send: func(context.Context, *batch.Batch) error { return nil }}); err == nil {
		t.Fatal("bound a port in use")
	}
}

// A lone datagram is handed on without waiting for more traffic (it used to
// wait for 100 lines or 60 KiB: statsd increments sent seconds or minutes
// apart never arrived). Each datagram here is sent only after the previous
// one was handed on, so any rate — one a second, one a minute — is covered:
// nothing else ever arrives to push it out.
func TestUDPLoneDatagramIsHandedOn(t *testing.T) {
	got := make(chan string, 16)
	send := func(_ context.Context, b *batch.Batch) error {
		for i := range b.Lines {
			got <- string(b.Name(i))
		}
		b.Release()
		return nil
	}
	u, err := NewUDP(UDPConfig{Addr: "127.0.0.1:0", Level: batch.LevelStatsd, Send: send, Logger: quiet, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	c, err := net.Dial("udp", u.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 10 {
		// Pace: let the listener go back to its blocking read first.
		time.Sleep(60 * time.Millisecond)
		name := "lone.counter" + string(rune('a'+i))
		c.Write([]byte(name + ":1|c"))
		select {
		case n := <-got:
			if n != name {
				t.Fatalf("got %q, want %q", n, name)
			}
		case <-time.After(30 * time.Second): // only keeps a regression from hanging
			t.Fatalf("datagram %d not handed on while no other traffic came", i+1)
		}
	}
}

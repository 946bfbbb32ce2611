package dest

import (
	"context"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pipeDialer hands out net.Pipe connections whose far ends the test reads
// (or not) with serve; it counts dials.
type pipeDialer struct {
	mu    sync.Mutex
	dials int
	ends  []net.Conn
}

func (pd *pipeDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, s := net.Pipe()
	pd.mu.Lock()
	pd.dials++
	pd.ends = append(pd.ends, s)
	pd.mu.Unlock()
	return c, nil
}

func (pd *pipeDialer) closeAll() {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	for _, c := range pd.ends {
		c.Close()
	}
}

func (pd *pipeDialer) count() int {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return pd.dials
}

// A write blocked on a peer that accepts and never reads cannot hold
// shutdown past -drain-timeout: the write deadline comes in to the drain
// deadline, and the undelivered lines are counted (fake clock: synctest).
func TestShutdownMeetsDrainTimeoutWithStalledPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pd := &pipeDialer{}
		ds, _ := ParseDestinations("127.0.0.1:2003")
		p, err := New(Config{Mode: Broadcast, Destinations: ds, Dial: pd.dial, Logger: quiet,
			WriteTimeout: 30 * time.Second, DrainTimeout: 5 * time.Second, StatusInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		send(t, p, lines("stall", 500))
		time.Sleep(time.Second)
		start := time.Now()
		cancel()
		p.CloseInput()
		<-done
		if took := time.Since(start); took > 5*time.Second+500*time.Millisecond {
			t.Fatalf("shutdown took %v with -drain-timeout 5s", took)
		}
		if st := p.Stats(); st.Dropped[DropShutdown] != 500 {
			t.Fatalf("dropped %v, want 500 shutdown", st.Dropped)
		}
		pd.closeAll()
	})
}

// A peer that trickles (a byte a second) does not stretch -write-timeout:
// the write that it cannot take in time ends the connection after
// -write-timeout, and the lines are written again on the next one.
func TestTrickleDoesNotStretchWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pd := &pipeDialer{}
		ds, _ := ParseDestinations("127.0.0.1:2003")
		p, err := New(Config{Mode: Broadcast, Destinations: ds, Dial: pd.dial, Logger: quiet,
			WriteTimeout: 10 * time.Second, ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second, StatusInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		var wg sync.WaitGroup
		stopTrickle := make(chan struct{})
		wg.Go(func() {
			for {
				pd.mu.Lock()
				var c net.Conn
				if len(pd.ends) > 0 {
					c = pd.ends[0]
				}
				pd.mu.Unlock()
				select {
				case <-stopTrickle:
					return
				case <-time.After(time.Second):
				}
				if c != nil {
					var b [1]byte
					c.Read(b[:])
				}
			}
		})
		start := time.Now()
		send(t, p, lines("trickle", 500))
		for pd.count() < 2 && time.Since(start) < time.Minute {
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		if pd.count() < 2 || took > 12*time.Second {
			t.Fatalf("reconnected after %v (dials %d), want about -write-timeout 10s", took, pd.count())
		}
		close(stopTrickle)
		wg.Wait()
		cancel()
		p.CloseInput()
		pd.closeAll()
		<-done
	})
}

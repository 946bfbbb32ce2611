//go:build unix

package listener

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// trickler reads a slow connection on the window's ticks instead of on
// every packet. Go's poller wakes a thread for each packet that arrives on
// a connection it watches, even when nobody waits to read it; with the
// socket's receive low-water mark raised the kernel signals nothing until
// much is queued, and the connection reads what arrived at each tick with
// a non-blocking read. When a tick finds nothing, the mark goes back to
// one byte and the connection waits in an ordinary read.
type trickler struct {
	rc syscall.RawConn
	on bool // the mark is raised

	p      []byte // the read in progress, for readFn (made once: a
	n      int    // closure per read would be an allocation per read)
	err    error
	readFn func(fd uintptr) bool
}

// lowWater is the mark while trickling; the kernel caps it at half the
// receive buffer.
const lowWater = 1 << 20

func newTrickler(c net.Conn) *trickler {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	t := &trickler{rc: rc}
	t.readFn = t.readFD
	return t
}

// set raises or lowers the mark.
func (t *trickler) set(on bool) {
	if t.on == on {
		return
	}
	v := 1
	if on {
		v = lowWater
	}
	t.rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, v) })
	t.on = on
}

// Read is one non-blocking read: errWouldBlock when nothing is there.
func (t *trickler) Read(p []byte) (int, error) {
	t.p = p
	cerr := t.rc.Read(t.readFn)
	n, err := t.n, t.err
	t.p, t.err = nil, nil
	if cerr != nil {
		return 0, cerr
	}
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readFD is one non-blocking read of the socket fd into t.p.
func (t *trickler) readFD(fd uintptr) bool {
	t.n, t.err = rawRead(fd, t.p)
	return true
}

// rawRead is read(2) without telling the scheduler: the socket is
// non-blocking, so the call is brief, and a read announced as a syscall
// lets the runtime's monitor hand this goroutine's P to another thread
// when it takes over 20 µs, a thread wake-up for nothing (at ordinary
// rates those hand-offs were most of the relay's context switches).
func rawRead(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

//go:build unix

package dest

import (
	"net"
	"syscall"
	"unsafe"
)

// iovMax is how many buffers one writev(2) takes here (IOV_MAX is 1024 on
// the systems polymur runs on).
const iovMax = 1024

// rawScratch is a writer's state for raw system calls on its connection,
// kept between them: the connection's RawConn (asked for once per
// connection), the iovecs, and the call in progress for writeFD and peekFD,
// method values made once (a closure per call would be an allocation per
// write).
type rawScratch struct {
	iov  []syscall.Iovec
	conn net.Conn
	rc   syscall.RawConn // conn's; nil: not a plain socket

	bufs    [][]byte // the write in progress
	done    int      // bytes of bufs[0] already written
	n       int64
	err     error
	writeFn func(fd uintptr) bool

	peek   [1]byte // the peek in progress
	closed bool
	peekFn func(fd uintptr)
}

// rawConn is conn's RawConn, or nil when conn is not a plain socket.
func (s *rawScratch) rawConn(conn net.Conn) syscall.RawConn {
	if s.conn != conn {
		s.conn, s.rc = conn, nil
		if sc, ok := conn.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				s.rc = rc
			}
		}
	}
	return s.rc
}

// rawWritev writes bufs to conn, a socket, with writev(2) issued as raw
// system calls, waiting in Go's poller while the socket is full (and so
// honouring the write deadline). The socket is non-blocking, so each call
// is brief; announced as a system call it would wake the runtime's monitor
// thread, which sleeps while the relay is idle, on every write: at
// ordinary rates a thread wake-up per write, which in a virtual machine
// costs more than the write. ok is false when conn is not a plain socket
// (TLS): then the caller writes the ordinary way.
func rawWritev(conn net.Conn, bufs [][]byte, s *rawScratch) (n int64, ok bool, err error) {
	rc := s.rawConn(conn)
	if rc == nil {
		return 0, false, nil
	}
	if s.writeFn == nil {
		s.writeFn = s.writeFD
	}
	s.bufs, s.done, s.n, s.err = bufs, 0, 0, nil
	werr := rc.Write(s.writeFn)
	n, err = s.n, s.err
	s.bufs, s.iov = nil, s.iov[:0]
	if err == nil {
		err = werr
	}
	return n, true, err
}

// writeFD is one rawWritev on the socket fd: false when it is full.
func (s *rawScratch) writeFD(fd uintptr) bool {
	for len(s.bufs) > 0 {
		iov := s.iov[:0]
		for i, b := range s.bufs {
			if i == iovMax {
				break
			}
			if i == 0 {
				b = b[s.done:]
			}
			if len(b) == 0 {
				continue
			}
			v := syscall.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			iov = append(iov, v)
		}
		s.iov = iov
		if len(iov) == 0 {
			s.bufs = nil
			break
		}
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // full: wait for room
		default:
			s.err = e
			return true
		}
		w := int(r)
		s.n += int64(w)
		for w > 0 && len(s.bufs) > 0 {
			if rest := len(s.bufs[0]) - s.done; w >= rest {
				w -= rest
				s.bufs, s.done = s.bufs[1:], 0
			} else {
				s.done += w
				w = 0
			}
		}
		for len(s.bufs) > 0 && len(s.bufs[0]) == s.done {
			s.bufs, s.done = s.bufs[1:], 0
		}
	}
	return true
}

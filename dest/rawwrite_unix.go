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

// rawScratch is a writer's iovec buffer, kept between writes.
type rawScratch struct{ iov []syscall.Iovec }

// rawWritev writes bufs to conn, a socket, with writev(2) issued as raw
// system calls, waiting in Go's poller while the socket is full (and so
// honouring the write deadline). The socket is non-blocking, so each call
// is brief; announced as a system call it would wake the runtime's monitor
// thread, which sleeps while the relay is idle, on every write: at
// ordinary rates a thread wake-up per write, which in a virtual machine
// costs more than the write. ok is false when conn is not a plain socket
// (TLS): then the caller writes the ordinary way.
func rawWritev(conn net.Conn, bufs [][]byte, s *rawScratch) (n int64, ok bool, err error) {
	sc, isSock := conn.(syscall.Conn)
	if !isSock {
		return 0, false, nil
	}
	rc, cerr := sc.SyscallConn()
	if cerr != nil {
		return 0, false, nil
	}
	iov := s.iov
	done := 0 // bytes of bufs[0] already written
	werr := rc.Write(func(fd uintptr) bool {
		for len(bufs) > 0 {
			iov = iov[:0]
			for i, b := range bufs {
				if i == iovMax {
					break
				}
				if i == 0 {
					b = b[done:]
				}
				if len(b) == 0 {
					continue
				}
				v := syscall.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				iov = append(iov, v)
			}
			if len(iov) == 0 {
				bufs = nil
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
				err = e
				return true
			}
			w := int(r)
			n += int64(w)
			for w > 0 && len(bufs) > 0 {
				if rest := len(bufs[0]) - done; w >= rest {
					w -= rest
					bufs, done = bufs[1:], 0
				} else {
					done += w
					w = 0
				}
			}
			for len(bufs) > 0 && len(bufs[0]) == done {
				bufs, done = bufs[1:], 0
			}
		}
		return true
	})
	s.iov = iov[:0]
	if err == nil {
		err = werr
	}
	return n, true, err
}

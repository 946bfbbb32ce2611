//go:build unix

package dest

import (
	"net"
	"syscall"
)

// peerClosed reports whether the peer of an idle connection has already
// closed it (a FIN or RST is waiting), without consuming data. Writing into
// such a socket would succeed locally and be lost, so the writer checks
// before its first write after being idle. s is the writer's raw-call state
// (its connection's RawConn, and the peek's).
func peerClosed(conn net.Conn, s *rawScratch) bool {
	rc := s.rawConn(conn)
	if rc == nil {
		return false
	}
	if s.peekFn == nil {
		s.peekFn = s.peekFD
	}
	s.closed = false
	// Control, not Read: the read watchdog holds the fd's read lock.
	rerr := rc.Control(s.peekFn)
	return s.closed || rerr != nil
}

// peekFD peeks a byte of the socket fd: closed when the peer has gone.
func (s *rawScratch) peekFD(fd uintptr) {
	n, err := peekByte(fd, &s.peek[0])
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
	case err != 0:
		s.closed = true // ECONNRESET and friends
	case n == 0:
		s.closed = true // orderly shutdown
	}
}

//go:build linux

package batch

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// kernelTimer is a one-shot timerfd in Go's poller. Waiting for it parks
// only the waiting goroutine, and the runtime then sleeps in the poller
// without a timeout of its own: the runtime's timers sleep in whole
// milliseconds (a 2 ms tick costs two wake-ups, the first too early) and
// keep its monitor thread waking with them, and in a virtual machine each
// wake-up of a thread costs tens of microseconds.
type kernelTimer struct {
	f  *os.File
	rc syscall.RawConn
	// The call in progress, for the method values made once (a closure
	// per tick would be an allocation per tick): arm's setting and error,
	// wait's expiry count.
	its    itimerspec
	e      syscall.Errno
	n      [8]byte
	setFn  func(fd uintptr)
	readFn func(fd uintptr) bool
}

type itimerspec struct{ interval, value syscall.Timespec }

func newKernelTimer() *kernelTimer {
	fd, _, e := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, 1 /* CLOCK_MONOTONIC */, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		return nil
	}
	f := os.NewFile(fd, "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	k := &kernelTimer{f: f, rc: rc}
	k.setFn, k.readFn = k.set, k.read
	return k
}

// arm sets the timer to expire once, d from now. Its caller holds the
// window's lock.
func (k *kernelTimer) arm(d time.Duration) bool {
	k.its = itimerspec{value: syscall.NsecToTimespec(int64(d))}
	k.e = 0
	k.rc.Control(k.setFn)
	return k.e == 0
}

func (k *kernelTimer) set(fd uintptr) {
	_, _, k.e = syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&k.its)), 0, 0, 0)
}

// wait returns when the armed timer has expired. One goroutine waits at a
// time (the one arm's caller starts).
func (k *kernelTimer) wait() { k.rc.Read(k.readFn) }

func (k *kernelTimer) read(fd uintptr) bool {
	_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&k.n[0])), 8)
	return e != syscall.EAGAIN
}

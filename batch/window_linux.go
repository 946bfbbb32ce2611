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
	return &kernelTimer{f: f, rc: rc}
}

// arm sets the timer to expire once, d from now.
func (k *kernelTimer) arm(d time.Duration) bool {
	its := itimerspec{value: syscall.NsecToTimespec(int64(d))}
	var e syscall.Errno
	k.rc.Control(func(fd uintptr) {
		_, _, e = syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&its)), 0, 0, 0)
	})
	return e == 0
}

// wait returns when the armed timer has expired.
func (k *kernelTimer) wait() {
	var n [8]byte
	k.rc.Read(func(fd uintptr) bool {
		_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&n[0])), 8)
		return e != syscall.EAGAIN
	})
}

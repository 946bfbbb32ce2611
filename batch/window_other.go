//go:build !linux

package batch

import "time"

// kernelTimer is Linux's timerfd; elsewhere windows use the runtime's timers.
type kernelTimer struct{}

func newKernelTimer() *kernelTimer            { return nil }
func (k *kernelTimer) arm(time.Duration) bool { return false }
func (k *kernelTimer) wait()                  {}

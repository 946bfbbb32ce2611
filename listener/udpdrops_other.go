//go:build !linux

package listener

// KernelDrops is not known on this system.
func (u *UDP) KernelDrops() uint64 { return 0 }

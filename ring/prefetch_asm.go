//go:build amd64 || arm64

package ring

// prefetch asks the CPU to start loading the cache line at addr without
// waiting for it (PREFETCHT0 / PRFM PLDL1KEEP): unlike a load, it holds
// nothing up, so a batch's worth of misses are in flight at once.
//
//go:noescape
func prefetch(addr uintptr)

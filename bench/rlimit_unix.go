//go:build unix

package main

import "syscall"

// raiseFileLimit gives every relay the same open-file limit (as a unit's
// LimitNOFILE gives them): the hard limit. Go raises only its own soft
// limit and hands children the original (1024 here), which a C relay with
// 2,000 clients runs into.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

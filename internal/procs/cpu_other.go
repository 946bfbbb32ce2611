//go:build !unix

package procs

import "time"

// processCPU is nil where the process's CPU time is not read: no governor.
var processCPU func() time.Duration

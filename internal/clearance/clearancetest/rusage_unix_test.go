//go:build unix

package clearancetest_test

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time of this process, so benchmarks
// can report CPU per request, a figure that, unlike wall-clock throughput,
// holds up when other jobs share the machine.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

//go:build !unix

package clearancetest_test

import "time"

// processCPU is unavailable here; benchmarks then report 0 CPU per request.
func processCPU() time.Duration { return 0 }

// Package sysmon keeps the Go runtime's monitor thread (sysmon) out of
// the deep sleep it takes whenever every P is idle.
//
// A node with GOMAXPROCS 1 that serves requests in bursts, as a replica
// does with the batches its coordinator sends, goes idle between bursts
// thousands of times a second. Each time, sysmon parks on a futex, and the
// first system call after the burst arrives (the read of the burst) wakes
// it: a futex wake, a thread to schedule, and then, as the runtime bets
// that it will soon have a P to take back from a blocking call, a 20 µs
// nanosleep loop for the next millisecond. On the replicas of a 3-node
// cluster under redis-benchmark SET, perf put 14% of their CPU in sysmon
// (golang/go#18236 asks for a knob over its tick; there is none).
//
// The runtime skips the deep sleep while a scheduler trace is on
// (GODEBUG=schedtrace=X prints a line every X milliseconds). With the
// largest period, about 24.8 days, sysmon never sleeps deeply, its tick
// stretches to 10 ms as usual when there is nothing to take back, and the
// trace prints at most one line per period, and one when a node crashes
// with a fatal error. GODEBUG is read once, when the process starts, so
// Exec starts the binary again, in place, with it set.
package sysmon

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// Setting is the GODEBUG setting Env adds: a scheduler trace every
// 2147483647 ms (the most GODEBUG takes: an int32).
const Setting = "schedtrace=2147483647"

// Env returns environ with Setting added to GODEBUG, and true; or environ
// unchanged, and false, when GODEBUG already sets schedtrace: the user's
// setting stands (GODEBUG=schedtrace=0 keeps Go's default).
func Env(environ []string) ([]string, bool) {
	for i, kv := range environ {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			continue
		}
		// The runtime reads the first GODEBUG in the environment.
		for _, field := range strings.Split(v, ",") {
			if k, _, _ := strings.Cut(field, "="); k == "schedtrace" {
				return environ, false
			}
		}
		out := append([]string(nil), environ...)
		if v == "" {
			out[i] = "GODEBUG=" + Setting
		} else {
			out[i] = "GODEBUG=" + v + "," + Setting
		}
		return out, true
	}
	return append(append([]string(nil), environ...), "GODEBUG="+Setting), true
}

// Exec replaces the process with a fresh start of the same binary, with
// the same arguments and process ID, in an environment with Setting
// added to GODEBUG. It returns only when it does not: nil when GODEBUG
// already sets schedtrace or the system is not Linux, or the error exec
// returned. It must be called before the process starts anything that a
// restart would lose (goroutines, listeners, files without close-on-exec).
func Exec() error {
	if runtime.GOOS != "linux" {
		return nil
	}
	environ, changed := Env(os.Environ())
	if !changed {
		return nil
	}
	return syscall.Exec(binary(), os.Args, environ)
}

// binary returns the file to start again: the path this binary was
// started from, so that the process keeps its name (the kernel names a
// process after the file exec is given: ps, pgrep, pkill and top show
// it), or /proc/self/exe, this very binary, when that path no longer
// holds it (a rebuild replaced or removed it meanwhile): a path could
// start another build.
func binary() string {
	const self = "/proc/self/exe"
	p, err := os.Executable()
	if err != nil {
		return self
	}
	pi, err := os.Stat(p)
	if err != nil {
		return self
	}
	si, err := os.Stat(self)
	if err != nil || !os.SameFile(pi, si) {
		return self
	}
	return p
}

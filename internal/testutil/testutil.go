// Package testutil holds what the packages' tests share.
package testutil

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// Eventually polls cond every few milliseconds until it holds, failing t
// with what if it does not within d, and returns how long it took: the
// way tests wait for the world (gossip, handoff, background repairs)
// without a bare sleep.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// Buffer collects output written from several goroutines (a process's
// stderr, a node's log) for a test to read as it grows.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

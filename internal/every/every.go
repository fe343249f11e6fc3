// Package every limits an event that can repeat as fast as the world makes
// it (a log line for a refused connection, for a failing disk) to one a
// second, counting the ones it refused.
package every

import (
	"sync/atomic"
	"time"
)

// start anchors now: readings of the monotonic clock, never 0.
var start = time.Now()

func now() int64 { return int64(time.Since(start)) + 1 }

// Second allows one event a second. The zero value is ready; it is safe
// for concurrent use.
type Second struct {
	last    atomic.Int64 // monotonic nanoseconds of the last allowed event; 0: never
	refused atomic.Int64
}

// Allow reports whether the event may happen now and, when it may, how
// many were refused since the last one allowed.
func (s *Second) Allow() (ok bool, refused int64) {
	return s.allowAt(now())
}

func (s *Second) allowAt(t int64) (bool, int64) {
	last := s.last.Load()
	if last != 0 && t-last < int64(time.Second) || !s.last.CompareAndSwap(last, t) {
		s.refused.Add(1)
		return false, 0
	}
	return true, s.refused.Swap(0)
}

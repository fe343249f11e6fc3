package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlines hands out contexts that expire a fixed time after a request
// starts, give or take slack: the requests that start within one slack
// share a context, and so one runtime timer, instead of making one each.
// A coordinator's requests bound their peer calls with them, and time
// their hedges by their Done channels.
// Under redis-benchmark GET against a cluster, context.WithTimeout's timers
// took 5% of the coordinator's CPU, most of it contention on the timer
// heaps' locks (a timer is often stopped on another P than the one that
// started it). A shared context is never cancelled early: a request that
// is done simply stops waiting, and its late calls end on their own.
type deadlines struct {
	d, slack time.Duration
	cur      atomic.Pointer[sharedDeadline]
	mu       sync.Mutex
}

type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // its timer releases it; kept for vet's sake
	made   time.Time
}

func newDeadlines(d time.Duration) *deadlines {
	return &deadlines{d: d, slack: min(10*time.Millisecond, d/10)}
}

// get returns a context whose deadline is between d and d+slack from now.
func (dl *deadlines) get() context.Context {
	// time.Since reads the monotonic clock alone (time.Now, both clocks).
	if s := dl.cur.Load(); s != nil && time.Since(s.made) < dl.slack {
		return s.ctx
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	now := time.Now()
	if s := dl.cur.Load(); s != nil && now.Sub(s.made) < dl.slack {
		return s.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), dl.d+dl.slack)
	dl.cur.Store(&sharedDeadline{ctx: ctx, cancel: cancel, made: now})
	return ctx
}

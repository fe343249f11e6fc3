package wire

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on the replies held for clients that do not read them yet
// (Redis's client output buffer, which has no bound for normal clients):
// a connection holding maxSpilledReplies, or holding over spillFloor while
// all connections together hold over spillBudget, stops reading commands
// until its client reads (back-pressure). spillFloor is about what a
// socket's buffers hold: a connection gets at least that much, as before
// there was spilling, however many others fill the budget.
const (
	maxSpilledReplies = 128 << 20
	spillBudget       = 256 << 20
	spillFloor        = 4 << 20
)

// spillWriter writes a connection's replies from a goroutine of its own
// once the socket does not take them at once (writeNow), so that the
// connection's goroutine goes on reading. A client that writes a whole
// pipeline before it reads a reply (go-redis and redis-py pipelines do)
// otherwise filled the socket both ways: the connection's goroutine
// blocked writing replies the client was not reading, while the client
// blocked writing commands the connection was not reading, until a
// timeout closed the connection and every reply was lost.
//
// It keeps the replies' order: while it holds any, every later reply goes
// through it too (idle says when the connection may write itself again).
type spillWriter struct {
	c       net.Conn
	timeout time.Duration // each write's deadline; 0: none
	limit   int           // maxSpilledReplies
	floor   int64         // spillFloor
	budget  int64         // spillBudget
	pool    *spillPool    // what every connection's spill writer holds

	mu     sync.Mutex
	cond   sync.Cond
	queue  [][]byte
	held   int   // bytes queued or being written
	err    error // the first write's failure: every later write fails
	closed bool
	done   chan struct{}
}

// spillPool is what the connections' spill writers share: the bytes they
// hold, and which of them wait for the budget (those another's writes
// free it for, not only their own).
type spillPool struct {
	total   atomic.Int64
	mu      sync.Mutex
	waiting map[*spillWriter]struct{}
}

// release counts n bytes written or dropped, and wakes the writers that
// wait for the budget once it has room.
func (p *spillPool) release(n int, budget int64) {
	if p.total.Add(-int64(n)) > budget {
		return
	}
	p.mu.Lock()
	waiting := make([]*spillWriter, 0, len(p.waiting))
	for w := range p.waiting {
		waiting = append(waiting, w)
	}
	p.mu.Unlock()
	for _, w := range waiting {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

func (p *spillPool) wait(w *spillWriter, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !on {
		delete(p.waiting, w)
		return
	}
	if p.waiting == nil {
		p.waiting = map[*spillWriter]struct{}{}
	}
	p.waiting[w] = struct{}{}
}

func newSpillWriter(c net.Conn, timeout time.Duration, pool *spillPool) *spillWriter {
	w := &spillWriter{c: c, timeout: timeout, limit: maxSpilledReplies, floor: spillFloor, budget: spillBudget, pool: pool, done: make(chan struct{})}
	w.cond.L = &w.mu
	go w.run()
	return w
}

// write queues b, which the writer owns from now on, and waits while it
// holds more than its limit, or more than its floor while every
// connection together holds more than the budget. It reports false once
// a write failed.
func (w *spillWriter) write(b []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.closed {
		return false
	}
	w.queue = append(w.queue, b)
	w.held += len(b)
	w.pool.total.Add(int64(len(b)))
	w.cond.Broadcast()
	for {
		// Woken as this connection's writer writes, and, while it waits
		// for the budget, as any connection's frees it: registered before
		// the check, so that a release after the check wakes it.
		w.pool.wait(w, true)
		if w.err != nil || w.held <= w.limit && (int64(w.held) <= w.floor || w.pool.total.Load() <= w.budget) {
			break
		}
		w.cond.Wait()
	}
	w.pool.wait(w, false)
	return w.err == nil
}

// idle reports whether the writer holds nothing: the connection may
// write its replies itself again, in order.
func (w *spillWriter) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held == 0 && w.err == nil
}

// close waits until every reply held is written (each within its
// deadline) or a write failed, and stops the goroutine. It reports
// whether everything was written.
func (w *spillWriter) close() bool {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err == nil
}

func (w *spillWriter) run() {
	defer close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.queue) == 0 && !w.closed {
			w.cond.Wait()
		}
		if len(w.queue) == 0 || w.err != nil {
			return // closed, and nothing left to write
		}
		b := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.mu.Unlock()
		var deadline time.Time
		if w.timeout > 0 {
			deadline = time.Now().Add(w.timeout)
		}
		w.c.SetWriteDeadline(deadline)
		_, err := w.c.Write(b)
		if err == nil {
			// The connection's goroutine writes itself once this one
			// is idle, without a deadline (writeNow does not wait).
			w.c.SetWriteDeadline(time.Time{})
		}
		w.mu.Lock()
		released := len(b)
		w.held -= len(b)
		if err != nil {
			// The client stopped reading for the write timeout, or is
			// gone: the connection closes, which also ends its
			// goroutine's read.
			released += w.held
			w.err, w.queue, w.held = err, nil, 0
			w.c.Close()
		}
		w.cond.Broadcast()
		w.mu.Unlock() // release locks other writers
		w.pool.release(released, w.budget)
		w.mu.Lock()
	}
}

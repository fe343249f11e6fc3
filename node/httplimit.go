package node

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// httpLimit is a listener that serves at most max connections at once, as
// netutil.LimitListener does, except that when it is full a new
// connection makes the longest-idle keep-alive connection close instead
// of waiting for a slot (as nginx reuses its keep-alive connections when
// out of worker connections). With LimitListener, 1024 idle keep-alive
// connections held every slot for the server's IdleTimeout (two minutes):
// /health and /metrics went unanswered. Only when no connection is idle
// does the new one wait, for a slot or an idle connection. (It is accepted
// from the kernel first, so one file more than max may be open.) The
// server's ConnState must call state.
type httpLimit struct {
	net.Listener
	slots chan struct{}

	mu       sync.Mutex
	idle     map[net.Conn]time.Time // since when each idle connection has been
	wentIdle chan struct{}          // capacity 1: a connection went idle

	closed    chan struct{} // closed by Close
	closeOnce sync.Once
	waiting   atomic.Bool // a connection waits for a slot (for tests)
}

func newHTTPLimit(l net.Listener, max int) *httpLimit {
	return &httpLimit{Listener: l, slots: make(chan struct{}, max), idle: map[net.Conn]time.Time{}, wentIdle: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (h *httpLimit) Accept() (net.Conn, error) {
	c, err := h.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		select {
		case h.slots <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-h.slots }}, nil
		default:
		}
		if h.closeIdlest() {
			continue // its Close frees its slot
		}
		// None idle: wait for a slot, for a connection to go idle, or
		// for Close (http.Server.Shutdown waits for Serve to return
		// before it looks at its deadline).
		h.waiting.Store(true)
		select {
		case h.slots <- struct{}{}:
			h.waiting.Store(false)
			return &limitedConn{Conn: c, release: func() { <-h.slots }}, nil
		case <-h.wentIdle:
			h.waiting.Store(false)
		case <-h.closed:
			h.waiting.Store(false)
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

// Close closes the listener and wakes an Accept waiting for a slot.
func (h *httpLimit) Close() error {
	h.closeOnce.Do(func() { close(h.closed) })
	return h.Listener.Close()
}

// closeIdlest closes the connection idle the longest, if one is, and
// reports whether it did.
func (h *httpLimit) closeIdlest() bool {
	h.mu.Lock()
	var oldest net.Conn
	var since time.Time
	for c, t := range h.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(h.idle, oldest)
	h.mu.Unlock()
	if oldest == nil {
		return false
	}
	oldest.Close()
	return true
}

// state tracks which connections are idle (http.Server.ConnState).
func (h *httpLimit) state(c net.Conn, s http.ConnState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s == http.StateIdle {
		h.idle[c] = time.Now()
		select {
		case h.wentIdle <- struct{}{}:
		default:
		}
	} else {
		delete(h.idle, c)
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

package node

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// httpLimit is a listener that serves at most max connections at once, as
// netutil.LimitListener does, except that when it is full a new
// connection makes the longest-idle keep-alive connection close instead
// of waiting for a slot (as nginx reuses its keep-alive connections when
// out of worker connections). With LimitListener, 1024 idle keep-alive
// connections held every slot for the server's IdleTimeout (two minutes):
// /health and /metrics went unanswered. Only when no connection is idle
// does Accept wait. The server's ConnState must call state.
type httpLimit struct {
	net.Listener
	slots chan struct{}

	mu   sync.Mutex
	idle map[net.Conn]time.Time // since when each idle connection has been
}

func newHTTPLimit(l net.Listener, max int) *httpLimit {
	return &httpLimit{Listener: l, slots: make(chan struct{}, max), idle: map[net.Conn]time.Time{}}
}

func (h *httpLimit) Accept() (net.Conn, error) {
	select {
	case h.slots <- struct{}{}:
	default:
		h.closeIdlest()
		h.slots <- struct{}{} // freed when that connection's Close runs, or any other's
	}
	c, err := h.Listener.Accept()
	if err != nil {
		<-h.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-h.slots }}, nil
}

// closeIdlest closes the connection idle the longest, if one is.
func (h *httpLimit) closeIdlest() {
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
	if oldest != nil {
		oldest.Close()
	}
}

// state tracks which connections are idle (http.Server.ConnState).
func (h *httpLimit) state(c net.Conn, s http.ConnState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s == http.StateIdle {
		h.idle[c] = time.Now()
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

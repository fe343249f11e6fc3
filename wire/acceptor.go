package wire

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("wire: server closed")

// acceptor runs accept loops and tracks every connection they start, so
// that a server's Close can stop them all and wait for their goroutines.
// The RESP server and the peer server share it.
type acceptor struct {
	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		closed    bool
		listeners map[net.Listener]struct{}
		conns     map[net.Conn]struct{}
		grace     *time.Timer // closes the connections left at close
	}
}

// closeGrace is how long a connection may take, once its server closes,
// to finish the command it is running and write the replies it owes.
const closeGrace = 2 * time.Second

// serve accepts on l until close, running handle in a goroutine per
// connection (which it closes when handle returns). Temporary accept errors
// are retried with backoff. It returns ErrServerClosed after close.
func (a *acceptor) serve(l net.Listener, logger *slog.Logger, handle func(net.Conn)) error {
	a.mu.Lock()
	if a.mu.closed {
		a.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	if a.mu.listeners == nil {
		a.mu.listeners = map[net.Listener]struct{}{}
		a.mu.conns = map[net.Conn]struct{}{}
	}
	a.mu.listeners[l] = struct{}{}
	a.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if a.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				logger.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !a.track(c) {
			c.Close()
			return ErrServerClosed
		}
		go func() {
			defer a.wg.Done()
			defer a.untrack(c)
			handle(c)
		}()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (a *acceptor) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.closed
}

// track registers c and counts its goroutine in wg, both under the lock
// that close takes to set closed: a connection accepted as close runs is
// either refused here or closed and waited for. (Adding to wg after the
// lock is released would let close's Wait return, or race with the Add,
// while the connection's goroutine was still to start.)
func (a *acceptor) track(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.closed {
		return false
	}
	a.mu.conns[c] = struct{}{}
	a.wg.Add(1)
	return true
}

func (a *acceptor) untrack(c net.Conn) {
	c.Close()
	a.mu.Lock()
	delete(a.mu.conns, c)
	a.mu.Unlock()
}

// close stops the listeners and ends every connection; wait then waits
// for the connections' goroutines. Both are safe to call more than once.
//
// A connection is not closed at once: its reads fail from now on (the
// read deadline is past), so one waiting for a command ends right away,
// and one running a command finishes it and writes its reply first (a
// command that took effect, CLUSTER LEAVE or a write, is answered). Those
// still there after closeGrace (a client that does not read its replies)
// are closed.
func (a *acceptor) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.closed {
		return
	}
	a.mu.closed = true
	for l := range a.mu.listeners {
		l.Close()
	}
	now := time.Now()
	for c := range a.mu.conns {
		c.SetReadDeadline(now)
	}
	a.mu.grace = time.AfterFunc(closeGrace, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		for c := range a.mu.conns {
			c.Close()
		}
	})
}

func (a *acceptor) wait() {
	a.wg.Wait()
	a.mu.Lock()
	if a.mu.grace != nil {
		a.mu.grace.Stop()
	}
	a.mu.Unlock()
}

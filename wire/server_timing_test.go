package wire

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A command followed by a blank line in the same packet ("PING\r\n\r\n",
// as `echo -e "PING\r\n" | nc` sends), or by the start of the next
// command, must be answered at once, as Redis does: the reply does not
// wait for more bytes. (Found in review: it waited for the idle timeout.)
func TestReplyNotHeldByATrailingBlankLine(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{})
	for _, sent := range []string{"PING\r\n\r\n", "PING\r\nGE"} { // a blank line; the start of the next command
		c := e.connect(t)
		c.write(sent)
		c.conn.SetReadDeadline(time.Now().Add(time.Second))
		var b [64]byte
		n, err := c.conn.Read(b[:])
		if err != nil || string(b[:n]) != "+PONG\r\n" {
			t.Fatalf("after %q: got %q, %v; want +PONG at once", sent, b[:n], err)
		}
	}
}

// A client that keeps sending commands must not be closed for being idle,
// even when each of its writes ends in the middle of a command (a bulk
// load such as redis-cli --pipe writes in chunks that do not follow
// command boundaries).
func TestStreamingClientIsNotIdle(t *testing.T) {
	t.Parallel()
	const idle = 500 * time.Millisecond
	e := srvStart(t, ServerConfig{IdleTimeout: idle})
	c := e.connect(t)
	cmd := "SET key " + strings.Repeat("v", 20) + "\r\n"
	half := len(cmd) / 2
	deadline := time.Now().Add(4 * idle)
	sent := 0
	// First write: a whole command and the first half of the next; then
	// every 20ms the rest of that command and the first half of another.
	write := func(s string) {
		t.Helper()
		if _, err := c.conn.Write([]byte(s)); err != nil {
			var last Value
			for {
				v, rerr := c.readReply()
				if rerr != nil {
					break
				}
				last = v
			}
			t.Fatalf("after %d commands sent 20ms apart over %v: write: %v; the server's last reply: %s", sent, time.Since(deadline.Add(-4*idle)), err, last)
		}
	}
	write(cmd + cmd[:half])
	sent++
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		write(cmd[half:] + cmd[:half])
		sent++
	}
	write(cmd[half:])
	for i := 0; i < sent; i++ {
		v, err := c.readReply()
		if err != nil {
			t.Fatalf("reply %d of %d: %v", i, sent, err)
		}
		if v.String() != `+"OK"` {
			t.Fatalf("reply %d of %d: got %s while the client was sending a command every 20ms", i, sent, v)
		}
	}
}

// slowSyncBackend defers each pipelined Put's wait, which takes syncTime
// (a slow fsync, or a cluster write quorum).
type slowSyncBackend struct {
	*fakeBackend
	syncTime time.Duration
}

func (b *slowSyncBackend) Put(ctx context.Context, key, value []byte, opts WriteOptions) error {
	if err := b.fakeBackend.Put(ctx, key, value, opts); err != nil {
		return err
	}
	if g := SyncGroupFrom(ctx); g != nil {
		g.Defer(func() error { time.Sleep(b.syncTime); return nil })
	} else {
		time.Sleep(b.syncTime)
	}
	return nil
}

// The idle timeout counts from when the client's replies were sent, not
// from before the pipeline's deferred waits ran: a client that answers its
// replies at once is not idle, however long the writes took to be stored.
func TestIdleTimeoutCountsFromTheReply(t *testing.T) {
	t.Parallel()
	e := srvStart(t, ServerConfig{
		Backend:     &slowSyncBackend{fakeBackend: newFakeBackend(), syncTime: 400 * time.Millisecond},
		IdleTimeout: 300 * time.Millisecond,
		Metrics:     NewMetrics(prometheus.NewRegistry()), // as the node runs it
	})
	c := e.connect(t)
	c.write("SET a 1\r\nSET b 2\r\n")
	for range 2 {
		if got := c.read().String(); got != `+"OK"` {
			t.Fatalf("got %s, want +OK", got)
		}
	}
	// At once: the client has not been idle for a moment.
	c.check(`+"PONG"`, "PING")
}

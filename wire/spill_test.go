package wire

import (
	"io"
	"net"
	"testing"
	"testing/synctest"
)

// TestSpillWriterHoldsBackAClientOverItsBounds: a connection whose
// client does not read may hold replies up to its limit, and, while all
// connections together hold over the budget, only up to the floor; past
// them its goroutine waits (and reads no more commands) until the client
// reads. Every byte arrives, in order.
func TestSpillWriterHoldsBackAClientOverItsBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pool spillPool
		total := &pool.total
		start := func(limit int, floor, budget int64) (*spillWriter, net.Conn) {
			srv, cli := net.Pipe() // a write waits until the other end reads
			w := newSpillWriter(srv, 0, &pool)
			w.limit, w.floor, w.budget = limit, floor, budget
			t.Cleanup(func() { cli.Close(); w.close() })
			return w, cli
		}
		write := func(w *spillWriter, b []byte) chan bool {
			done := make(chan bool, 1)
			go func() { done <- w.write(b) }()
			return done
		}
		blocked := func(done chan bool) bool {
			synctest.Wait()
			select {
			case <-done:
				return false
			default:
				return true
			}
		}
		read := func(c net.Conn, n int) []byte {
			b := make([]byte, n)
			if _, err := io.ReadFull(c, b); err != nil {
				t.Fatal(err)
			}
			return b
		}

		// Under its limit: queued, and the write returns at once.
		a, aClient := start(100, 10, 1000)
		if blocked(write(a, []byte("0123456789"))) {
			t.Fatal("a write under the limit waited")
		}
		// Over its limit: it waits until the client reads.
		done := write(a, make([]byte, 100))
		if !blocked(done) {
			t.Fatal("a write over the connection's limit did not wait")
		}
		if got := string(read(aClient, 10)); got != "0123456789" {
			t.Fatalf("read %q first", got)
		}
		read(aClient, 100)
		if ok := <-done; !ok {
			t.Fatal("write failed")
		}

		// Over the floor while the connections together hold over the
		// budget: it waits, though under its own limit.
		b, bClient := start(100, 10, 30)
		first := write(b, make([]byte, 20)) // 20 held: under the budget
		if blocked(first) {
			t.Fatal("a write under the budget waited")
		}
		c, cClient := start(100, 10, 30)
		second := write(c, make([]byte, 20)) // 40 held in all, 20 by c: over budget and floor
		if !blocked(second) {
			t.Fatal("a write over the budget and the floor did not wait")
		}
		read(bClient, 20) // b's client reads: 20 held in all, under the budget
		read(cClient, 20)
		if ok := <-second; !ok {
			t.Fatal("write failed")
		}
		if n := total.Load(); n != 0 {
			t.Fatalf("%d bytes counted as held once every client read them", n)
		}
	})
}

// TestSpillWriterWaitingForTheBudgetGoesOnWhenOthersFreeIt: a connection
// held back only because others filled the budget goes on once they free
// it, although its own client does not read (it is still writing the
// pipeline this connection stopped reading): waking it only on its own
// writes was the deadlock spilling removes (a review's finding).
func TestSpillWriterWaitingForTheBudgetGoesOnWhenOthersFreeIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pool spillPool
		start := func() (*spillWriter, net.Conn) {
			srv, cli := net.Pipe()
			w := newSpillWriter(srv, 0, &pool)
			w.limit, w.floor, w.budget = 100, 10, 30
			t.Cleanup(func() { cli.Close(); w.close() })
			return w, cli
		}
		b, bClient := start()
		if !b.write(make([]byte, 25)) {
			t.Fatal("write failed")
		}
		c, _ := start() // its client does not read
		done := make(chan bool, 1)
		go func() { done <- c.write(make([]byte, 20)) }() // 45 held: over the budget, c over its floor
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("c did not wait while over the budget")
		default:
		}
		if _, err := io.ReadFull(bClient, make([]byte, 25)); err != nil { // b's client reads everything
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case ok := <-done:
			if !ok {
				t.Fatal("write failed")
			}
		default:
			t.Fatalf("the budget is free again (%d of 30 held), but c still waits", pool.total.Load())
		}
	})
}

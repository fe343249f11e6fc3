package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
)

// syncLog records, in order, what a deferring backend and the server's
// connection did.
type syncLog struct {
	mu     sync.Mutex
	events []string
}

func (l *syncLog) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *syncLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// deferringBackend is a fake whose Put, given a SyncGroup, hands it the
// wait for the write's "fsync" as a single node does; failKey's wait fails.
type deferringBackend struct {
	*fakeBackend
	log     *syncLog
	failKey string
}

func (b *deferringBackend) Put(ctx context.Context, key, value []byte, opts WriteOptions) error {
	if err := b.fakeBackend.Put(ctx, key, value, opts); err != nil {
		return err
	}
	k := string(key)
	g := SyncGroupFrom(ctx)
	if g == nil {
		b.log.add("put " + k + " synced")
		return nil
	}
	b.log.add("put " + k + " deferred")
	g.Defer(func() error {
		b.log.add("wait " + k)
		if k == b.failKey {
			return errors.New("fsync failed")
		}
		return nil
	})
	return nil
}

// loggingListener logs every write the server makes to a connection.
type loggingListener struct {
	net.Listener
	log *syncLog
}

func (l loggingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return loggingConn{c, l.log}, nil
}

type loggingConn struct {
	net.Conn
	log *syncLog
}

func (c loggingConn) Write(b []byte) (int, error) {
	c.log.add("reply")
	return c.Conn.Write(b)
}

func startDeferring(t *testing.T, failKey string) (*srvEnv, *syncLog) {
	return startDeferringWith(t, failKey, ServerConfig{})
}

func startDeferringWith(t *testing.T, failKey string, cfg ServerConfig) (*srvEnv, *syncLog) {
	t.Helper()
	log := &syncLog{}
	be := &deferringBackend{fakeBackend: newFakeBackend(), log: log, failKey: failKey}
	cfg.Backend = be
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &srvEnv{srv: srv, addr: l.Addr().String(), done: make(chan struct{}), be: be.fakeBackend}
	go func() {
		e.serveErr = srv.Serve(loggingListener{l, log})
		close(e.done)
	}()
	t.Cleanup(func() {
		srv.Close()
		e.wait(t)
	})
	return e, log
}

// TestPipelinedWritesShareTheirSync: the writes of a pipeline hand their
// durability wait to the server instead of blocking, and the server sends
// no reply before every one of those waits returned. The last command of
// a pipeline, and a command sent alone, wait for themselves.
func TestPipelinedWritesShareTheirSync(t *testing.T) {
	t.Parallel()
	e, log := startDeferring(t, "")
	c := e.connect(t) // its PING reply is the first "reply"
	c.write("SET a 1\r\nSET b 2\r\nGET a\r\nSET c 3\r\n")
	for _, want := range []string{`+"OK"`, `+"OK"`, `$"1"`, `+"OK"`} {
		if got := c.read().String(); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	c.check(`+"OK"`, "SET", "d", "4")
	want := []string{
		"reply",                            // PING
		"put a deferred", "put b deferred", // more commands were buffered
		"put c synced",              // the pipeline's last command
		"wait a", "wait b", "reply", // one write for the four replies, after the waits
		"put d synced", "reply", // alone
	}
	if got := log.get(); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
}

// TestPipelinedWriteThatFailsToSyncGetsTheError: when a deferred write is
// not stored, its reply becomes the error (an OK would claim a write the
// disk or the quorum does not hold); the other replies of the pipeline,
// before and after it, are unchanged, and the connection goes on.
func TestPipelinedWriteThatFailsToSyncGetsTheError(t *testing.T) {
	t.Parallel()
	e, log := startDeferring(t, "bad")
	c := e.connect(t)
	c.write("SET a 1\r\nSET bad 1\r\nECHO after\r\nSET ok 2\r\nPING\r\n")
	for _, want := range []string{`+"OK"`, `-"ERR fsync failed"`, `$"after"`, `+"OK"`, `+"PONG"`} {
		if got := c.read().String(); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	got := log.get()
	if !slices.Contains(got, "wait bad") || !slices.Contains(got, "wait ok") {
		t.Fatalf("not every deferred wait was called: %q", got)
	}
	c.check(`$"2"`, "GET", "ok")
}

// TestSyncGroupSettle: waits run in order, a command's reply is replaced
// by the first error among its waits, and the group ends empty.
func TestSyncGroupSettle(t *testing.T) {
	t.Parallel()
	var g SyncGroup
	var order []string
	wait := func(name string, err error) func() error {
		return func() error { order = append(order, name); return err }
	}
	var out []byte
	reply := func(r string, waits ...func() error) {
		first, start := g.Pending(), len(out)
		for _, w := range waits {
			g.Defer(w)
		}
		out = append(out, r...)
		g.replied(first, start, len(out))
	}
	reply("+OK\r\n", wait("a", nil))
	reply(":2\r\n", wait("b1", nil), wait("b2", errors.New("second copy lost")), wait("b3", errors.New("third")))
	reply("$1\r\nx\r\n") // a read: nothing deferred
	reply("+OK\r\n", wait("d", errors.New("disk full")))
	reply("+OK\r\n", wait("e", nil))
	if g.Pending() != 6 {
		t.Fatalf("pending %d, want 6", g.Pending())
	}
	got := string(g.settle(out))
	want := "+OK\r\n-ERR second copy lost\r\n$1\r\nx\r\n-ERR disk full\r\n+OK\r\n"
	if got != want {
		t.Fatalf("settled replies %q, want %q", got, want)
	}
	if !slices.Equal(order, []string{"a", "b1", "b2", "b3", "d", "e"}) || g.Pending() != 0 {
		t.Fatalf("order %v, pending %d", order, g.Pending())
	}
	if string(g.settle([]byte("+OK\r\n"))) != "+OK\r\n" {
		t.Fatal("an empty group changed the replies")
	}
	if SyncGroupFrom(context.Background()) != nil || SyncGroupFrom(WithSyncGroup(context.Background(), &g)) != &g {
		t.Fatal("SyncGroupFrom does not return the group WithSyncGroup stored")
	}
}

// inFlight replays log: the most writes waiting for their fsync at once,
// and how many never waited.
func inFlight(log *syncLog) (most, pending int) {
	for _, ev := range log.get() {
		switch {
		case strings.HasSuffix(ev, " deferred"):
			pending++
			most = max(most, pending)
		case strings.HasPrefix(ev, "wait "):
			pending--
		}
	}
	return most, pending
}

// TestDeferredSyncsAreBounded: a long pipeline of writes leaves at most
// maxDeferredSyncs fsync waits to the connection before it waits for them
// and sends the replies so far.
func TestDeferredSyncsAreBounded(t *testing.T) {
	t.Parallel()
	e, log := startDeferring(t, "")
	c := e.connect(t)
	const n = 3*maxDeferredSyncs + 10
	var batch []byte
	for i := range n {
		batch = fmt.Appendf(batch, "SET k%d v\r\n", i)
	}
	c.write(string(append(batch, "PING\r\n"...)))
	for i := range n {
		if got := c.read().String(); got != `+"OK"` {
			t.Fatalf("reply %d: %s", i, got)
		}
	}
	c.check(`+"PONG"`, "PING")
	most, pending := inFlight(log)
	if most != maxDeferredSyncs || pending != 0 {
		t.Fatalf("at most %d writes waited for their fsync at once (want %d), %d never waited", most, maxDeferredSyncs, pending)
	}
}

// TestDeferredWritesAreBoundedAcrossConnections: many clients pipelining
// at once leave at most about MaxDeferredWrites writes in flight together
// (each connection waits for its own before reading more once the
// server is at the bound). Without it, 200 clients pipelining 100 SETs
// each queued 20,000 writes in a cluster node, whose peer queues then
// timed them out: quorum errors with every node up.
func TestDeferredWritesAreBoundedAcrossConnections(t *testing.T) {
	t.Parallel()
	const bound, conns, each = 8, 6, 60
	e, log := startDeferringWith(t, "", ServerConfig{MaxDeferredWrites: bound})
	var wg sync.WaitGroup
	for i := range conns {
		c := e.connect(t)
		var batch []byte
		for j := range each {
			batch = fmt.Appendf(batch, "SET c%dk%d v\r\n", i, j)
		}
		wg.Go(func() {
			c.write(string(batch))
			for j := range each {
				if got := c.read().String(); got != `+"OK"` {
					t.Errorf("connection %d, reply %d: %s", i, j, got)
					return
				}
			}
		})
	}
	wg.Wait()
	most, pending := inFlight(log)
	// A connection checks the bound before each command: a few may pass
	// it together, one write each.
	if most > bound+conns || pending != 0 {
		t.Fatalf("at most %d writes in flight at once over %d connections (want at most %d), %d never waited", most, conns, bound+conns, pending)
	}
	if most < bound {
		t.Fatalf("at most %d writes in flight: the pipelines did not overlap (the test proves nothing)", most)
	}
}

// TestPipelineCutByAProtocolErrorStillSyncsItsWrites: a pipeline whose
// tail is malformed gets the replies of the writes before it, each after
// its wait, then the protocol error, and the connection closes.
func TestPipelineCutByAProtocolErrorStillSyncsItsWrites(t *testing.T) {
	t.Parallel()
	e, log := startDeferring(t, "")
	c := e.connect(t)
	c.write("SET a 1\r\nSET b 2\r\n*1\r\n$-5\r\n")
	for _, want := range []string{`+"OK"`, `+"OK"`} {
		if got := c.read().String(); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	if v := c.read(); v.Kind != Error || !strings.Contains(string(v.Str), "Protocol error") {
		t.Fatalf("got %s, want the protocol error", v)
	}
	c.expectClosed()
	got := log.get()
	want := []string{"reply", "put a deferred", "put b deferred", "wait a", "wait b", "reply"}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
}

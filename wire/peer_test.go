package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/rpc"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
)

// startPeer serves handler on a free port, running the inline methods on
// the connections' readers, and stops it with the test.
func startPeer(t testing.TB, handler PeerHandler, inline ...string) (*PeerServer, string) {
	t.Helper()
	s := NewPeerServer(handler, Limits{}, nil)
	s.Inline(inline...)
	return s, servePeer(t, s)
}

// servePeer serves s on a free port until the test ends, and returns the
// address.
func servePeer(t testing.TB, s *PeerServer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l.Addr().String()
}

// callFunc makes one call and waits for its outcome: PeerClient.Call, or
// PeerClient.Go waited for, which must behave alike.
type callFunc func(c *PeerClient, ctx context.Context, method string, args ...[]byte) ([][]byte, error)

// eachCaller runs test with Call and with Go; with Go, it also checks
// at the end that every call's done ran exactly once.
func eachCaller(t *testing.T, test func(t *testing.T, call callFunc)) {
	t.Run("Call", func(t *testing.T) { test(t, (*PeerClient).Call) })
	t.Run("Go", func(t *testing.T) { testGoCaller(t, test, (*PeerClient).Go) })
	// A lazy call alone leaves at the connection's next sweep (5ms); in
	// everything else it must behave as the others.
	t.Run("GoLazy", func(t *testing.T) { testGoCaller(t, test, (*PeerClient).GoLazy) })
}

// testGoCaller runs test with calls that start (Go or GoLazy) and are
// waited for, and checks that each call's done ran exactly once.
func testGoCaller(t *testing.T, test func(t *testing.T, call callFunc), start func(c *PeerClient, ctx context.Context, method string, args [][]byte, done func([][]byte, error))) {
	var mu sync.Mutex
	var dones []*atomic.Int32
	t.Cleanup(func() { // after the test's own cleanups have closed its clients
		for i, n := range dones {
			if got := n.Load(); got != 1 {
				t.Errorf("call %d: done ran %d times, want once", i, got)
			}
		}
	})
	test(t, func(c *PeerClient, ctx context.Context, method string, args ...[]byte) ([][]byte, error) {
		n := new(atomic.Int32)
		mu.Lock()
		dones = append(dones, n)
		mu.Unlock()
		type outcome struct {
			res [][]byte
			err error
		}
		ch := make(chan outcome, 2)
		start(c, ctx, method, args, func(res [][]byte, err error) {
			n.Add(1)
			ch <- outcome{res, err}
		})
		o := <-ch
		return o.res, o.err
	})
}

func echo(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
	switch method {
	case "echo":
		return args, nil
	case "fail":
		return nil, errors.New("no such key")
	case "sleep":
		d, _ := time.ParseDuration(string(args[0]))
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		return [][]byte{[]byte("slept")}, nil
	}
	return nil, fmt.Errorf("unknown method %q", method)
}

func TestPeerCallsAndErrors(t *testing.T) { eachCaller(t, testPeerCallsAndErrors) }

func testPeerCallsAndErrors(t *testing.T, call callFunc) {
	_, addr := startPeer(t, echo)
	c := NewPeerClient(addr, PeerClientConfig{})
	defer c.Close()
	ctx := context.Background()
	res, err := call(c, ctx, "echo", []byte("a"), []byte(""), []byte("c\r\n$-1\r\n"))
	if err != nil || len(res) != 3 || string(res[0]) != "a" || len(res[1]) != 0 || string(res[2]) != "c\r\n$-1\r\n" {
		t.Fatalf("echo = %q, %v", res, err)
	}
	if res, err := call(c, ctx, "echo"); err != nil || len(res) != 0 {
		t.Fatalf("echo of nothing = %q, %v", res, err)
	}
	var pe *PeerError
	if _, err := call(c, ctx, "fail"); !errors.As(err, &pe) || pe.Msg != "no such key" {
		t.Fatalf("fail: %v", err)
	}
}

// TestPeerPipelinesConcurrentCalls makes many concurrent calls on one
// client, with a slow call among them that must not hold up the rest.
func TestPeerPipelinesConcurrentCalls(t *testing.T) {
	eachCaller(t, func(t *testing.T, call callFunc) {
		t.Run("workers", func(t *testing.T) { testPeerPipelinesConcurrentCalls(t, call) })
		t.Run("inline", func(t *testing.T) { testPeerPipelinesConcurrentCalls(t, call, "echo") })
	})
}

func testPeerPipelinesConcurrentCalls(t *testing.T, call callFunc, inline ...string) {
	release := make(chan struct{})
	handler := func(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
		if method == "block" { // runs on a worker: it is not inline
			<-release
			return nil, nil
		}
		return echo(ctx, method, args)
	}
	_, addr := startPeer(t, handler, inline...)
	c := NewPeerClient(addr, PeerClientConfig{CallTimeout: 10 * time.Second})
	defer c.Close()
	slow := make(chan error, 1)
	go func() {
		_, err := call(c, context.Background(), "block")
		slow <- err
	}()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				want := fmt.Sprintf("w%d-%d", w, i)
				res, err := call(c, context.Background(), "echo", []byte(want))
				if err != nil || len(res) != 1 || string(res[0]) != want {
					t.Errorf("call %s = %q, %v", want, res, err)
					return
				}
			}
		}()
	}
	wg.Wait() // would time out if the blocked call held up the others
	select {
	case err := <-slow:
		t.Fatalf("the blocked call returned (%v) before it was released", err)
	default:
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

func TestPeerCallDeadlines(t *testing.T) { eachCaller(t, testPeerCallDeadlines) }

func testPeerCallDeadlines(t *testing.T, call callFunc) {
	_, addr := startPeer(t, echo)
	c := NewPeerClient(addr, PeerClientConfig{CallTimeout: 100 * time.Millisecond})
	defer c.Close()
	start := time.Now()
	_, err := call(c, context.Background(), "sleep", []byte("5s"))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Fatalf("a call past CallTimeout: %v after %v", err, time.Since(start))
	}
	// The connection is still good for the next call, and the late reply
	// is dropped rather than given to it.
	if res, err := call(c, context.Background(), "echo", []byte("next")); err != nil || string(res[0]) != "next" {
		t.Fatalf("after a timeout: %q, %v", res, err)
	}
	// A peer that accepts but never answers (a black hole) fails the call
	// by its deadline too.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	hole := NewPeerClient(l.Addr().String(), PeerClientConfig{CallTimeout: 100 * time.Millisecond})
	defer hole.Close()
	if _, err := call(hole, context.Background(), "echo"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("black hole: %v", err)
	}
	// A call whose context is cancelled ends with it.
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		_, err := call(hole, ctx, "echo")
		ended <- err
	}()
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call to a black hole: %v", err)
	}
}

func TestPeerReconnectsAfterServerRestart(t *testing.T) {
	s, addr := startPeer(t, echo)
	c := NewPeerClient(addr, PeerClientConfig{})
	defer c.Close()
	if _, err := c.Call(context.Background(), "echo"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Calls fail fast, not by their deadline, once the peer is gone.
	start := time.Now()
	for {
		_, err := c.Call(context.Background(), "echo")
		if errors.Is(err, ErrPeerUnavailable) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("calls to a closed peer still answer: %v", err)
		}
	}
	// A new server on the same address: the client dials again.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s not free again: %v", addr, err)
	}
	s2 := NewPeerServer(echo, Limits{}, nil)
	go s2.Serve(l)
	defer s2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := c.Call(context.Background(), "echo", []byte("back"))
		if err == nil && string(res[0]) == "back" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPeerServerRejectsGarbageAndKeepsServing(t *testing.T) {
	_, addr := startPeer(t, echo)
	for _, bad := range []string{"GET x\r\n", "*4\r\n$3\r\nRPC\r\n$1\r\n9\r\n$1\r\n1\r\n$4\r\necho\r\n", "*1\r\n$99999999999\r\n", "\x00\xff\r\n"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte(bad))
		var b [64]byte
		if n, err := conn.Read(b[:]); err == nil {
			t.Fatalf("%q answered %q instead of closing", bad, b[:n])
		}
		conn.Close()
	}
	c := NewPeerClient(addr, PeerClientConfig{})
	defer c.Close()
	if _, err := c.Call(context.Background(), "echo"); err != nil {
		t.Fatalf("after garbage from others: %v", err)
	}
}

func TestPeerClientRejectsMalformedReplies(t *testing.T) {
	for _, reply := range []string{"+OK\r\n", "*1\r\n:1\r\n", "*2\r\n$1\r\nx\r\n+OK\r\n", "*2\r\n:1\r\n:5\r\n", "-ERR\r\n"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			var b [256]byte
			conn.Read(b[:])
			conn.Write([]byte(reply))
			conn.Read(b[:])
		}()
		c := NewPeerClient(l.Addr().String(), PeerClientConfig{CallTimeout: 2 * time.Second})
		_, err = c.Call(context.Background(), "echo")
		if !errors.Is(err, ErrPeerUnavailable) {
			t.Errorf("reply %q: err = %v, want ErrPeerUnavailable", reply, err)
		}
		c.Close()
		l.Close()
	}
}

// BenchmarkPeerCall measures round trips through PeerClient on one
// connection with many concurrent callers; BenchmarkNetRPCCall does the
// same with the standard library's net/rpc, the baseline.
func BenchmarkPeerCall(b *testing.B) {
	for _, bc := range []struct {
		name   string
		inline []string
		async  bool
	}{{"Call/worker", nil, false}, {"Call/inline", []string{"echo"}, false}, {"Go/inline", []string{"echo"}, true}} {
		b.Run(bc.name, func(b *testing.B) {
			_, addr := startPeer(b, echo, bc.inline...)
			c := NewPeerClient(addr, PeerClientConfig{})
			defer c.Close()
			arg := bytes.Repeat([]byte("x"), 16)
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				done := make(chan error, 1)
				for pb.Next() {
					var err error
					if bc.async {
						c.Go(context.Background(), "echo", [][]byte{arg}, func(_ [][]byte, err error) { done <- err })
						err = <-done
					} else {
						_, err = c.Call(context.Background(), "echo", arg)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

type rpcEcho struct{}

func (rpcEcho) Echo(args [][]byte, reply *[][]byte) error { *reply = args; return nil }

func BenchmarkNetRPCCall(b *testing.B) {
	srv := rpc.NewServer()
	if err := srv.RegisterName("E", rpcEcho{}); err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go srv.Accept(l)
	c, err := rpc.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	arg := [][]byte{bytes.Repeat([]byte("x"), 16)}
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var reply [][]byte
			if err := c.Call("E.Echo", arg, &reply); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPeerCallSizes measures calls the size of a coordinator's: a
// replica copy of redis-benchmark's SET (its key and an object holding a
// 3-byte value) and one holding a 1 KiB value, answered with no results.
func BenchmarkPeerCallSizes(b *testing.B) {
	_, addr := startPeer(b, func(context.Context, string, [][]byte) ([][]byte, error) { return nil, nil })
	c := NewPeerClient(addr, PeerClientConfig{})
	defer c.Close()
	key := []byte("key:000000012345")
	for _, size := range []int{40, 1024} {
		obj := bytes.Repeat([]byte("o"), size)
		b.Run(fmt.Sprint("object-", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Call(context.Background(), "merge", key, obj); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestPeerErrorsSayWhetherTheRequestLeft: a call that could not be sent
// (nothing listens, the client is closed) wraps ErrNotSent, so a caller
// may send it elsewhere; a call whose connection breaks while the peer
// holds it does not, since the peer may have applied it.
func TestPeerErrorsSayWhetherTheRequestLeft(t *testing.T) {
	eachCaller(t, testPeerErrorsSayWhetherTheRequestLeft)
}

func testPeerErrorsSayWhetherTheRequestLeft(t *testing.T, call callFunc) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c := NewPeerClient(addr, PeerClientConfig{})
	if _, err := call(c, context.Background(), "echo"); !errors.Is(err, ErrNotSent) || !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("dial refused: err = %v, want ErrNotSent and ErrPeerUnavailable", err)
	}
	c.Close()
	if _, err := call(c, context.Background(), "echo"); !errors.Is(err, ErrNotSent) {
		t.Fatalf("closed client: err = %v, want ErrNotSent", err)
	}

	// A peer that takes the request and then drops the connection.
	arrived := make(chan error, 1)
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			arrived <- err
			return
		}
		_, err = NewReader(conn, Limits{}).ReadCommand()
		arrived <- err
		conn.Close()
	}()
	c = NewPeerClient(l.Addr().String(), PeerClientConfig{})
	defer c.Close()
	_, err = call(c, context.Background(), "echo", []byte("x"))
	if rerr := <-arrived; rerr != nil {
		t.Fatalf("the request did not arrive: %v", rerr)
	}
	if !errors.Is(err, ErrPeerUnavailable) || errors.Is(err, ErrNotSent) {
		t.Fatalf("connection dropped after the request arrived: err = %v, want ErrPeerUnavailable without ErrNotSent", err)
	}
}

// TestPeerInlineRepliesWaitForDeferredWrites runs calls on the
// connection's reader that defer their writes' waits: a reply must not
// leave before its wait returns, and a failed wait must become the
// call's error, or a replica would acknowledge a copy it never stored.
func TestPeerInlineRepliesWaitForDeferredWrites(t *testing.T) {
	var stored sync.Map // call argument -> true once its wait returned nil
	handler := func(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
		g := SyncGroupFrom(ctx)
		if g == nil {
			return nil, errors.New("an inline call's context carries no SyncGroup")
		}
		arg := string(args[0])
		g.Defer(func() error {
			if method == "lose" {
				return errors.New("fsync failed")
			}
			stored.Store(arg, true)
			return nil
		})
		return [][]byte{[]byte("applied " + arg)}, nil
	}
	_, addr := startPeer(t, handler, "write", "lose")
	c := NewPeerClient(addr, PeerClientConfig{CallTimeout: 10 * time.Second})
	defer c.Close()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				arg := fmt.Sprintf("w%d-%d", w, i)
				method := "write"
				if i%7 == 3 {
					method = "lose"
				}
				res, err := c.Call(context.Background(), method, []byte(arg))
				var pe *PeerError
				switch {
				case method == "lose" && (!errors.As(err, &pe) || pe.Msg != "fsync failed"):
					t.Errorf("%s %s = %q, %v; want the wait's error", method, arg, res, err)
				case method == "write" && (err != nil || len(res) != 1 || string(res[0]) != "applied "+arg):
					t.Errorf("%s %s = %q, %v", method, arg, res, err)
				case method == "write":
					if _, ok := stored.Load(arg); !ok {
						t.Errorf("%s acknowledged before its wait returned", arg)
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestPeerInlineCallsPassAWorkerCall: an inline call behind a call that
// runs on a worker and blocks is answered at once.
func TestPeerInlineCallsPassAWorkerCall(t *testing.T) {
	release := make(chan struct{})
	handler := func(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
		if method == "block" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return args, nil
	}
	_, addr := startPeer(t, handler, "echo")
	c := NewPeerClient(addr, PeerClientConfig{CallTimeout: 10 * time.Second})
	defer c.Close()
	blocked := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "block")
		blocked <- err
	}()
	for i := 0; i < 100; i++ {
		if res, err := c.Call(context.Background(), "echo", []byte("x")); err != nil || len(res) != 1 || string(res[0]) != "x" {
			t.Fatalf("echo = %q, %v", res, err)
		}
	}
	select {
	case err := <-blocked:
		t.Fatalf("the blocked call returned (%v) before it was released", err)
	default:
	}
	close(release)
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
}

// TestPeerClientObservesEachCall: Observe gets every call made with Call
// and with Go once, with its method and outcome: a reply, the peer's
// error, or the deadline of a call left unanswered (after the deadline).
func TestPeerClientObservesEachCall(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	handler := func(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
		switch method {
		case "fail":
			return nil, errors.New("no such thing")
		case "hang":
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return args, nil
	}
	_, addr := startPeer(t, handler, "echo", "fail")
	type seen struct {
		method string
		took   time.Duration
		err    error
	}
	var mu sync.Mutex
	var got []seen
	c := NewPeerClient(addr, PeerClientConfig{CallTimeout: 10 * time.Second, Observe: func(method string, took time.Duration, err error) {
		mu.Lock()
		got = append(got, seen{method, took, err})
		mu.Unlock()
	}})
	defer c.Close()
	eachCaller(t, func(t *testing.T, call callFunc) {
		mu.Lock()
		got = nil
		mu.Unlock()
		if _, err := call(c, context.Background(), "echo", []byte("x")); err != nil {
			t.Fatal(err)
		}
		var pe *PeerError
		if _, err := call(c, context.Background(), "fail"); !errors.As(err, &pe) {
			t.Fatalf("fail: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := call(c, ctx, "hang")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hang: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 3 {
			t.Fatalf("observed %+v, want the 3 calls", got)
		}
		if g := got[0]; g.method != "echo" || g.err != nil || g.took <= 0 {
			t.Errorf("echo observed as %+v", g)
		}
		if g := got[1]; g.method != "fail" || !errors.As(g.err, &pe) {
			t.Errorf("fail observed as %+v", g)
		}
		if g := got[2]; g.method != "hang" || !errors.Is(g.err, context.DeadlineExceeded) || g.took < 50*time.Millisecond {
			t.Errorf("hang observed as %+v", g)
		}
	})
}

// TestPeerServerObservesEachCall: Observe gets every call served, inline
// or on a worker, once, with its method and error, and an inline call's
// time includes the wait it deferred.
func TestPeerServerObservesEachCall(t *testing.T) {
	handler := func(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
		switch method {
		case "slow":
			SyncGroupFrom(ctx).Defer(func() error { time.Sleep(20 * time.Millisecond); return nil }) // a stand-in fsync
		case "fail":
			return nil, errors.New("no")
		}
		return args, nil
	}
	type seen struct {
		took time.Duration
		err  error
	}
	var mu sync.Mutex
	got := map[string][]seen{}
	s := NewPeerServer(handler, Limits{}, nil)
	s.Inline("slow", "fail")
	s.Observe(func(method string, took time.Duration, err error) {
		mu.Lock()
		got[method] = append(got[method], seen{took, err})
		mu.Unlock()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	c := NewPeerClient(l.Addr().String(), PeerClientConfig{CallTimeout: 10 * time.Second})
	for _, m := range []string{"slow", "fail", "work"} {
		c.Call(context.Background(), m, []byte("x"))
	}
	c.Close()
	s.Close() // waits for the connection's goroutines: every observation is in
	mu.Lock()
	defer mu.Unlock()
	if len(got["slow"]) != 1 || len(got["fail"]) != 1 || len(got["work"]) != 1 {
		t.Fatalf("observed %v, want each call once", got)
	}
	if g := got["slow"][0]; g.err != nil || g.took < 20*time.Millisecond {
		t.Errorf("slow observed as %+v: want its deferred wait's 20ms included", g)
	}
	if g := got["fail"][0]; g.err == nil {
		t.Errorf("fail observed without its error")
	}
	if g := got["work"][0]; g.err != nil || g.took <= 0 {
		t.Errorf("work (on a worker) observed as %+v", g)
	}
}

// gatedConn holds every Write until gate is closed.
type gatedConn struct {
	net.Conn
	gate <-chan struct{}
}

func (c gatedConn) Write(b []byte) (int, error) {
	<-c.gate
	return c.Conn.Write(b)
}

// gatedPeerClient returns a client of addr whose writes block until open
// is called (once; the test's cleanup calls it if the test did not).
func gatedPeerClient(t *testing.T, addr string) (c *PeerClient, open func()) {
	t.Helper()
	gate := make(chan struct{})
	var d net.Dialer
	c = NewPeerClient(addr, PeerClientConfig{CallTimeout: 30 * time.Second, Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return gatedConn{Conn: conn, gate: gate}, nil
	}})
	t.Cleanup(func() { c.Close() })
	var once sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open) // runs before the client's Close
	return c, open
}

// TestPeerClientWaitsForRoomToWrite: requests wait in the connection's
// write buffer while the writer is stuck (a peer that reads too slowly);
// past maxPeerQueued of them a caller waits for room, and one whose
// context ends first gets an error wrapping ErrNotSent (the request never
// left, so it may go elsewhere). Once the writer moves, the waiting
// caller's request goes out, and every call queued meanwhile is answered.
func TestPeerClientWaitsForRoomToWrite(t *testing.T) {
	_, addr := startPeer(t, echo, "echo")
	c, open := gatedPeerClient(t, addr)

	var answered sync.WaitGroup
	var failures atomic.Int32
	goCall := func(i int) {
		answered.Add(1)
		want := fmt.Sprint(i)
		c.Go(context.Background(), "echo", [][]byte{[]byte(want)}, func(res [][]byte, err error) {
			if err != nil || len(res) != 1 || string(res[0]) != want {
				failures.Add(1)
				t.Errorf("call %d = %q, %v", i, res, err)
			}
			answered.Done()
		})
	}
	goCall(0)
	// Wait until the writer holds the first request (stuck in Write):
	// from then on every request waits in the buffer.
	pc := func() *peerConn { c.mu.Lock(); defer c.mu.Unlock(); return c.conn }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pc.mu.Lock()
		taken := pc.queued == 0
		pc.mu.Unlock()
		if taken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never took the first request")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 1; i <= maxPeerQueued; i++ {
		goCall(i)
	}

	// The buffer is full: a call waits for room, and gives up with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := c.Call(ctx, "echo", []byte("late"))
	cancel()
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call into a full buffer: err = %v, want ErrNotSent and DeadlineExceeded", err)
	}

	// A call that waits long enough goes out once the writer moves on.
	waited := make(chan error, 1)
	go func() {
		res, err := c.Call(context.Background(), "echo", []byte("patient"))
		if err == nil && (len(res) != 1 || string(res[0]) != "patient") {
			err = fmt.Errorf("res = %q", res)
		}
		waited <- err
	}()
	select {
	case err := <-waited:
		t.Fatalf("a call into a full buffer returned before the writer moved: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	open()
	if err := <-waited; err != nil {
		t.Fatalf("the waiting call: %v", err)
	}
	answered.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d queued calls failed", n)
	}
}

// TestPeerClientQueuedSaysWhetherACallWouldShareAWrite: Queued is true
// exactly while requests wait in the buffer for a write that is due (a
// call now would leave with them), and false with no connection, once the
// writer has taken them, and after the connection failed. (Lazy calls
// alone make no write due: TestPeerLazyCallsLeaveWithTheNextCall.)
func TestPeerClientQueuedSaysWhetherACallWouldShareAWrite(t *testing.T) {
	_, addr := startPeer(t, echo, "echo")
	c, open := gatedPeerClient(t, addr)
	if c.Queued() {
		t.Fatal("Queued before any connection")
	}
	results := make(chan error, 2)
	goCall := func(arg string) {
		c.Go(context.Background(), "echo", [][]byte{[]byte(arg)}, func(res [][]byte, err error) {
			if err == nil && (len(res) != 1 || string(res[0]) != arg) {
				err = fmt.Errorf("echo %q = %q", arg, res)
			}
			results <- err
		})
	}
	waitFor := func(what string, want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for c.Queued() != want {
			if time.Now().After(deadline) {
				t.Fatalf("Queued never became %v (%s)", want, what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	goCall("first")
	waitFor("the writer takes the first request and sticks in Write", false)
	goCall("second")
	// The writer is stuck on the first write until open: the second
	// request waits in the buffer.
	if !c.Queued() {
		t.Fatal("Queued false while a request waits in the buffer")
	}
	open()
	for range 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	waitFor("both requests written and answered", false)
	c.Close()
	if c.Queued() {
		t.Fatal("Queued after Close")
	}
}

// TestPeerLazyCallsLeaveWithTheNextCall: a lazy call waits in the buffer,
// making no write due (Queued false), until a call that is not lazy goes
// to the peer, and leaves in its write: answered, in order, by the time
// that call is. Alone, it leaves at the connection's next sweep.
func TestPeerLazyCallsLeaveWithTheNextCall(t *testing.T) {
	_, addr := startPeer(t, echo, "echo") // inline: answered in order
	lazyEcho := func(c *PeerClient, answered chan<- error) {
		c.GoLazy(context.Background(), "echo", [][]byte{[]byte("lazy")}, func(res [][]byte, err error) {
			if err == nil && (len(res) != 1 || string(res[0]) != "lazy") {
				err = fmt.Errorf("lazy echo = %q", res)
			}
			answered <- err
		})
	}
	// connected returns a client with its connection made, whose
	// connection sweeps every sweepGap.
	connected := func(sweepGap time.Duration) *PeerClient {
		c := NewPeerClient(addr, PeerClientConfig{})
		c.sweepGap = sweepGap
		t.Cleanup(func() { c.Close() })
		if _, err := c.Call(context.Background(), "echo", []byte("connect")); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := connected(time.Hour) // no sweep takes the lazy call out
	lazy := make(chan error, 1)
	lazyEcho(c, lazy)
	if c.Queued() {
		t.Fatal("Queued true with only a lazy call waiting")
	}
	res, err := c.Call(context.Background(), "echo", []byte("eager"))
	if err != nil || len(res) != 1 || string(res[0]) != "eager" {
		t.Fatalf("eager echo = %q, %v", res, err)
	}
	select {
	case err := <-lazy:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the lazy call was not answered before the call sent after it")
	}

	lazyEcho(connected(sweepEvery), lazy)
	select {
	case err := <-lazy:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lazy call alone never left")
	}

	// Lazy calls that fill the buffer leave as soon as another call needs
	// room, not at the sweep.
	c3 := connected(time.Hour)
	many := make(chan error, maxPeerQueued)
	for range maxPeerQueued {
		lazyEcho(c3, many)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c3.Call(ctx, "echo", []byte("eager")); err != nil {
		t.Fatalf("a call behind a buffer full of lazy calls: %v", err)
	}
	for range maxPeerQueued {
		if err := <-many; err != nil {
			t.Fatal(err)
		}
	}
}

// TestPeerServerClosesAConnectionThatReadsNoReplies: a rogue client that
// sends calls and never reads their replies pinned the connection's
// workers (up to maxPeerInFlight) and its writer for ever; a write of
// replies that cannot leave within the write timeout closes it.
func TestPeerServerClosesAConnectionThatReadsNoReplies(t *testing.T) {
	big := bytes.Repeat([]byte("r"), 256<<10)
	s := NewPeerServer(func(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
		return [][]byte{big}, nil
	}, Limits{}, nil)
	s.writeTimeout = 200 * time.Millisecond
	conn, err := net.Dial("tcp", servePeer(t, s))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	const calls = 200 // 50 MiB of replies: far more than the sockets hold
	var req []byte
	for i := range calls {
		req = append(req, srvCommand("RPC", strconv.Itoa(PeerVersion), strconv.Itoa(i+1), "big")...)
	}
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing: the connection, and its calls' workers,
	// must end soon after the write timeout.
	conns := func() int {
		s.acc.mu.Lock()
		defer s.acc.mu.Unlock()
		return len(s.acc.mu.conns)
	}
	testutil.Eventually(t, 5*time.Second, "the connection whose client reads no replies closed after the write timeout", func() bool { return conns() == 0 })
}

// TestPeerServerRequiresTheClusterKey: a server with a cluster key serves
// only clients that prove they hold it; the others' calls fail (not sent)
// with an error that names the likely cause, and the key never crosses
// the connection.
func TestPeerServerRequiresTheClusterKey(t *testing.T) {
	key := ClusterKey("s3cret")
	s := NewPeerServer(echo, Limits{}, nil)
	s.RequireKey(key)
	addr := servePeer(t, s)
	call := func(key []byte) error {
		c := NewPeerClient(addr, PeerClientConfig{Key: key, DialTimeout: 300 * time.Millisecond})
		defer c.Close()
		_, err := c.Call(context.Background(), "echo", []byte("x"))
		return err
	}
	if err := call(key); err != nil {
		t.Fatalf("with the key: %v", err)
	}
	if err := call(ClusterKey("other")); !errors.Is(err, ErrNotSent) || !strings.Contains(err.Error(), "a different --cluster-key?") {
		t.Errorf("with another key: %v", err)
	}
	if err := call(nil); err == nil {
		t.Errorf("without a key: served")
	}
	// A raw client that answers nothing gets nothing but the challenge.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(srvCommand("RPC", strconv.Itoa(PeerVersion), "1", "echo", "x"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conn)
	if !bytes.HasPrefix(got, []byte(peerChallengePrefix)) || bytes.Count(got, []byte("\n")) != 1 || bytes.Contains(got, key) {
		t.Errorf("a client without the key got %q, want the challenge alone, then the connection closed", got)
	}
	// A client without the key makes the server allocate nothing it
	// declares: a bulk of 10^15 bytes, read with the peer's limits (with
	// objects unbounded, any size), crashed the process.
	huge := NewPeerServer(echo, Limits{MaxBulk: math.MaxInt, MaxRequest: math.MaxInt}, nil)
	huge.RequireKey(key)
	hc, err := net.Dial("tcp", servePeer(t, huge))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hc.Write([]byte("*2\r\n$4\r\nAUTH\r\n$1000000000000000\r\n"))
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Closed at once, with what the client sent unread (a reset).
	if got, err := io.ReadAll(hc); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || !bytes.HasPrefix(got, []byte(peerChallengePrefix)) {
		t.Errorf("a declared 10^15-byte answer: got %q, %v; want the challenge, then the connection closed", got, err)
	}
	// A server without a key: a client with one is told it asked for none.
	_, open := startPeer(t, echo)
	c := NewPeerClient(open, PeerClientConfig{Key: key, DialTimeout: 300 * time.Millisecond})
	defer c.Close()
	if _, err := c.Call(context.Background(), "echo"); !errors.Is(err, ErrNotSent) || !strings.Contains(err.Error(), "does it have --cluster-key?") {
		t.Errorf("a client with a key, a server without: %v", err)
	}
}

// TestATimeoutWhileThePeerAnswersIsBusyNotDown: a call that runs out of
// time while the peer answers other calls on the connection wraps
// ErrPeerBusy (this node's backlog, or one slow call: the peer is up, and
// a circuit breaker must not open on it); one that runs out of time with
// the peer silent does not.
func TestATimeoutWhileThePeerAnswersIsBusyNotDown(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	_, addr := startPeer(t, func(ctx context.Context, method string, args [][]byte) ([][]byte, error) {
		if method == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil, nil
	})
	c := NewPeerClient(addr, PeerClientConfig{})
	defer c.Close()
	if _, err := c.Call(context.Background(), "echo"); err != nil {
		t.Fatal(err)
	}
	for _, caller := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Call", func(ctx context.Context) error { _, err := c.Call(ctx, "slow"); return err }},
		{"Go", func(ctx context.Context) error {
			done := make(chan error, 1)
			c.Go(ctx, "slow", nil, func(_ [][]byte, err error) { done <- err })
			return <-done
		}},
	} {
		// Silent: nothing else answered while it waited.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := caller.call(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPeerBusy) {
			t.Errorf("%s timed out with the peer silent: %v, want a deadline without ErrPeerBusy", caller.name, err)
		}
		// Answering: other calls come back while it waits.
		ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Call(context.Background(), "echo")
			}
		})
		err = caller.call(ctx)
		cancel()
		close(stop)
		wg.Wait()
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrPeerBusy) {
			t.Errorf("%s timed out while the peer answered others: %v, want a deadline wrapping ErrPeerBusy", caller.name, err)
		}
	}
}

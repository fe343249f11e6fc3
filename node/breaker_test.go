package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/internal/testutil"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

func TestBreakerStateMachine(t *testing.T) {
	cfg := BreakerConfig{Failures: 3, Cooldown: time.Second, MaxCooldown: 3 * time.Second}.withDefaults()
	now := time.Unix(1000, 0)
	var b breaker
	mustAllow := func(want, wantProbe bool) {
		t.Helper()
		ok, probe := b.allow(now, cfg)
		if ok != want || probe != wantProbe {
			t.Fatalf("at %v in %v: allow = %v, probe = %v; want %v, %v", now.Unix(), b.state, ok, probe, want, wantProbe)
		}
	}
	// Two failures and a success: still closed, the count starts over.
	b.report(false, now, cfg)
	b.report(false, now, cfg)
	b.report(true, now, cfg)
	b.report(false, now, cfg)
	b.report(false, now, cfg)
	mustAllow(true, false)
	// The third in a row opens it for the cooldown.
	b.report(false, now, cfg)
	mustAllow(false, false)
	now = now.Add(999 * time.Millisecond)
	mustAllow(false, false)
	// Cooldown over: one probe, and nothing else until it reports.
	now = now.Add(time.Millisecond)
	mustAllow(false, true)
	mustAllow(false, false)
	// A failed probe doubles the cooldown, up to the maximum.
	b.report(false, now, cfg)
	now = now.Add(1999 * time.Millisecond)
	mustAllow(false, false)
	now = now.Add(time.Millisecond)
	mustAllow(false, true)
	b.report(false, now, cfg)
	now = now.Add(3 * time.Second)
	mustAllow(false, true)
	b.report(false, now, cfg)
	now = now.Add(3 * time.Second) // capped at 3s, not 8s
	mustAllow(false, true)
	// A late failure of a call sent before it opened does not extend it.
	b.report(true, now, cfg)
	mustAllow(true, false)
	if b.opened != 4 {
		t.Errorf("opened %d times, want 4", b.opened)
	}
}

// scriptedTransport answers calls from a function, counting them.
type scriptedTransport struct {
	mu    sync.Mutex
	calls map[string]int
	fn    func(ctx context.Context, to, method string) error
}

func (s *scriptedTransport) Call(ctx context.Context, to, method string, args ...[]byte) ([][]byte, error) {
	s.mu.Lock()
	s.calls[to+" "+method]++
	s.mu.Unlock()
	return nil, s.fn(ctx, to, method)
}

func (s *scriptedTransport) count(k string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[k]
}

// TestBreakersFailFastAndProbeInTheBackground runs with Call, and with Go
// (which a coordinator's copies and reads use): both count alike.
func TestBreakersFailFastAndProbeInTheBackground(t *testing.T) {
	t.Run("Call", func(t *testing.T) {
		testBreakersFailFast(t, func(bs *breakers, ctx context.Context, to, method string) error {
			_, err := bs.Call(ctx, to, method)
			return err
		})
	})
	t.Run("Go", func(t *testing.T) {
		testBreakersFailFast(t, func(bs *breakers, ctx context.Context, to, method string) error {
			ch := make(chan error, 1)
			bs.Go(ctx, to, method, nil, func(_ [][]byte, err error) { ch <- err })
			return <-ch
		})
	})
}

func testBreakersFailFast(t *testing.T, call func(bs *breakers, ctx context.Context, to, method string) error) {
	var mu sync.Mutex
	peerUp := false
	tr := &scriptedTransport{calls: map[string]int{}, fn: func(ctx context.Context, to, method string) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case to == "app":
			return &wire.PeerError{Msg: "WRONGTYPE"}
		case !peerUp:
			return wire.ErrPeerUnavailable
		}
		return nil
	}}
	var clockMu sync.Mutex
	now := time.Unix(0, 0)
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }
	bs := newBreakers(tr, BreakerConfig{Failures: 2, Cooldown: time.Second}, clock)
	ctx := context.Background()

	// Errors the peer's handler returns are answers: never open.
	for i := 0; i < 5; i++ {
		call(bs, ctx, "app", "get")
	}
	if !bs.Allows("app") {
		t.Fatalf("application errors opened the breaker")
	}
	// A call its caller abandoned counts for nothing.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	bs.record(canceled, "down", context.Canceled)
	bs.record(canceled, "down", context.Canceled)
	if !bs.Allows("down") {
		t.Fatalf("abandoned calls opened the breaker")
	}
	// Two real failures open it; calls then fail at once without going out.
	call(bs, ctx, "down", "get")
	call(bs, ctx, "down", "get")
	err := call(bs, ctx, "down", "get")
	if !errors.Is(err, wire.ErrPeerUnavailable) || !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("call through an open breaker: %v", err)
	}
	if n := tr.count("down get"); n != 2 {
		t.Fatalf("%d calls reached the peer, want 2 (the third refused)", n)
	}
	// After the cooldown the breaker pings by itself; the peer is up now.
	mu.Lock()
	peerUp = true
	mu.Unlock()
	advance(time.Second)
	if bs.Allows("down") {
		t.Fatalf("allowed before the probe answered")
	}
	testutil.Eventually(t, 5*time.Second, "the breaker to close after a good probe", func() bool { return bs.Allows("down") })
	if n := tr.count("down ping"); n != 1 {
		t.Errorf("%d probes, want 1", n)
	}
	if n := tr.count("down get"); n != 2 {
		t.Errorf("a client call was used as the probe: %d gets reached the peer", n)
	}
}

// TestIdleBreakersAreProbed: with no traffic at all, a peer whose breaker
// opened is probed once its cooldown is over (by the handoff loop), so it
// shows reachable again once it is back; it stayed "open" in INFO for
// ever on an idle cluster.
func TestIdleBreakersAreProbed(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Breaker = BreakerConfig{Failures: 1, Cooldown: 50 * time.Millisecond, MaxCooldown: 50 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond}
		cfg.Handoff.Interval = 20 * time.Millisecond
	})
	n1 := tc.nodes["n1"]
	tc.net.Partition([]string{"n1", "n2"}, []string{"n3"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	n1.tr.Call(ctx, "n3", "ping") // times out: the breaker opens
	cancel()
	state := func() string {
		for _, p := range n1.Stats().Peers {
			if p.Name == "n3" {
				return fmt.Sprint(p.Breaker, " ", p.Reachable)
			}
		}
		return "none"
	}
	if got := state(); got == "closed true" {
		t.Fatalf("n3 after a timed-out call: %s, want the breaker open", got)
	}
	tc.net.Heal()
	testutil.Eventually(t, 5*time.Second, "n3 reachable again with no traffic", func() bool { return state() == "closed true" })
}

func TestGossipRecoveryClosesTheBreaker(t *testing.T) {
	tr := &scriptedTransport{calls: map[string]int{}, fn: func(ctx context.Context, to, method string) error {
		return wire.ErrPeerUnavailable
	}}
	now := time.Unix(0, 0)
	bs := newBreakers(tr, BreakerConfig{Failures: 1, Cooldown: time.Hour}, func() time.Time { return now })
	c := &Coordinator{cfg: CoordinatorConfig{Self: "n1"}, tr: bs}
	c.down.Store(&map[string]bool{})
	c.handoff.kick = make(chan struct{}, 1)
	bs.Call(context.Background(), "n2", "get")
	if c.reachable("n2") {
		t.Fatal("n2 reachable with its breaker open")
	}
	c.SetDown([]string{"n2"})
	c.SetDown([]string{"n3"}) // gossip: n2 is back
	if !c.reachable("n2") {
		t.Fatal("n2 still unreachable after gossip saw it come back")
	}
	if c.reachable("n3") {
		t.Fatal("n3 reachable while gossip reports it failed")
	}
}

// TestBreakersCountFailuresInARow: a success between failures starts the
// count again, and only Failures failures in a row open the breaker. The
// calls to a peer whose breaker is clean skip the lock and the clock; this
// checks that the skipping never hides a failure nor a reset, and that a
// clean breaker's calls do not read the clock.
func TestBreakersCountFailuresInARow(t *testing.T) {
	var fail atomic.Bool
	tr := &scriptedTransport{calls: map[string]int{}, fn: func(context.Context, string, string) error {
		if fail.Load() {
			return wire.ErrPeerUnavailable
		}
		return nil
	}}
	var clockReads atomic.Int64
	clock := func() time.Time { clockReads.Add(1); return time.Unix(0, 0) }
	bs := newBreakers(tr, BreakerConfig{Failures: 3, Cooldown: time.Hour}, clock)
	ctx := context.Background()
	call := func(failing bool) error {
		fail.Store(failing)
		_, err := bs.Call(ctx, "p", "get")
		return err
	}
	for range 10 {
		if err := call(false); err != nil {
			t.Fatal(err)
		}
	}
	if n := clockReads.Load(); n > 1 {
		t.Errorf("10 successful calls read the clock %d times; a clean breaker needs it at most once (when it is made)", n)
	}
	// fail, fail, succeed, fail, fail: never three in a row.
	for i, failing := range []bool{true, true, false, true, true} {
		call(failing)
		if !bs.Allows("p") {
			t.Fatalf("call %d: the breaker opened after fewer than 3 failures in a row", i)
		}
	}
	if err := call(true); !errors.Is(err, wire.ErrPeerUnavailable) || errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("third failure in a row: %v, want the peer's own failure", err)
	}
	if bs.Allows("p") {
		t.Fatal("three failures in a row left the breaker closed")
	}
	if err := call(false); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("call through the open breaker: %v", err)
	}
	if got := bs.states(); len(got) != 1 || got[0].State != "open" || got[0].Opened != 1 {
		t.Fatalf("states() = %+v, want p open, opened once", got)
	}
	// Gossip sees the peer back: clean again, and the fast path serves it.
	bs.reset("p")
	before := clockReads.Load()
	if err := call(false); err != nil {
		t.Fatalf("after reset: %v", err)
	}
	if n := clockReads.Load() - before; n != 0 {
		t.Errorf("a call after reset read the clock %d times, want 0", n)
	}
}

// TestBreakersIgnoreCallsTimedOutBehindTheirOwnBacklog: a call that ran out
// of time while the peer kept answering others (wire.ErrPeerBusy: this
// node's own backlog) says nothing about the peer, however many in a row.
func TestBreakersIgnoreCallsTimedOutBehindTheirOwnBacklog(t *testing.T) {
	busy := fmt.Errorf("wire: peer p: put: %w: %w", context.DeadlineExceeded, wire.ErrPeerBusy)
	var failWith atomic.Pointer[error]
	failWith.Store(&busy)
	tr := &scriptedTransport{calls: map[string]int{}, fn: func(context.Context, string, string) error {
		return *failWith.Load()
	}}
	bs := newBreakers(tr, BreakerConfig{Failures: 3, Cooldown: time.Hour}, func() time.Time { return time.Unix(0, 0) })
	for range 20 {
		bs.Call(context.Background(), "p", "put")
	}
	if !bs.Allows("p") {
		t.Fatal("calls that timed out while the peer was answering opened its breaker")
	}
	// The same deadline without the peer answering is a failure.
	silent := fmt.Errorf("wire: peer p: put: %w", context.DeadlineExceeded)
	failWith.Store(&silent)
	for range 3 {
		bs.Call(context.Background(), "p", "put")
	}
	if bs.Allows("p") {
		t.Fatal("three calls timed out with the peer silent left the breaker closed")
	}
}

// TestABusyProbeClosesTheBreaker: the half-open probe timing out while the
// peer answered other calls (queued behind its backlog) reports the peer
// up. Skipped like other busy calls, it left the breaker half-open for
// good: every call refused, no other probe sent, and gossip's reset skips
// half-open breakers (a review's finding on the first version).
func TestABusyProbeClosesTheBreaker(t *testing.T) {
	var busy atomic.Bool
	tr := &scriptedTransport{calls: map[string]int{}, fn: func(ctx context.Context, to, method string) error {
		if busy.Load() {
			return fmt.Errorf("wire: peer p: %s: %w: %w", method, context.DeadlineExceeded, wire.ErrPeerBusy)
		}
		return fmt.Errorf("wire: peer p: %s: %w", method, context.DeadlineExceeded) // silent
	}}
	now := time.Unix(0, 0)
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	bs := newBreakers(tr, BreakerConfig{Failures: 1, Cooldown: time.Second, MaxCooldown: time.Second}, func() time.Time { return *clock.Load() })
	bs.Call(context.Background(), "p", "put") // silent: opens
	if bs.Allows("p") {
		t.Fatal("a silent timeout did not open the breaker")
	}
	busy.Store(true)
	later := now.Add(2 * time.Second)
	clock.Store(&later)
	bs.Allows("p") // due: sends the probe, which comes back busy
	bs.probes.Wait()
	if tr.count("p ping") != 1 {
		t.Fatalf("%d probes sent, want 1", tr.count("p ping"))
	}
	if got := bs.states(); len(got) != 1 || got[0].State != "closed" {
		t.Fatalf("after a busy probe: %+v, want closed", got)
	}
}

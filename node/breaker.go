package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rumor-kv/rumor/wire"
)

// A circuit breaker per peer keeps requests from waiting out the timeout
// of a peer that keeps failing. It is closed (calls go through) until
// BreakerConfig.Failures calls in a row fail; then it is open and calls
// fail at once with wire.ErrPeerUnavailable, so a write picks a stand-in
// and a read asks another replica without delay. When the cooldown ends
// it is half-open: one probe (a "ping" peer call, sent by the breaker
// itself, never a client's request) decides whether it closes again or
// opens for twice as long, up to MaxCooldown.
//
// What counts as a failure: a call that timed out or could not reach the
// peer. An error the peer's handler returned is an answer (the peer is
// up), and a call the caller abandoned (its context canceled, as a read
// does with the replicas it no longer needs) counts for nothing.

// BreakerState is the state of one peer's breaker.
type BreakerState int

// The breaker states.
const (
	BreakerClosed BreakerState = iota
	BreakerOpen
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", int(s))
}

// BreakerConfig tunes the breakers. Zero fields mean their defaults.
type BreakerConfig struct {
	// Failures in a row that open the breaker. Default 3.
	Failures int
	// Cooldown is how long it stays open the first time. Default 1s.
	Cooldown time.Duration
	// MaxCooldown bounds the doubling of Cooldown. Default 5s.
	MaxCooldown time.Duration
	// ProbeTimeout bounds the half-open probe. Default 1s.
	ProbeTimeout time.Duration
}

func (c BreakerConfig) withDefaults() BreakerConfig {
	if c.Failures <= 0 {
		c.Failures = 3
	}
	if c.Cooldown <= 0 {
		c.Cooldown = time.Second
	}
	if c.MaxCooldown < c.Cooldown {
		c.MaxCooldown = max(5*time.Second, c.Cooldown)
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = time.Second
	}
	return c
}

// breaker is one peer's breaker: a pure state machine, time passed in.
type breaker struct {
	state    BreakerState
	failures int           // in a row, while closed
	until    time.Time     // end of the open period
	cooldown time.Duration // of the current (or next) open period
	opened   uint64        // times it opened

	// clean mirrors state == BreakerClosed && failures == 0, kept by the
	// breakers under their lock after every change. A call to a clean
	// breaker's peer goes out, and its success changes nothing, so both
	// are decided without the lock or the clock: the common case, paid
	// twice per peer call.
	clean atomic.Bool
}

// settle updates clean after a change of state or failures.
func (b *breaker) settle() { b.clean.Store(b.state == BreakerClosed && b.failures == 0) }

// allow reports whether a call may go out now, and whether the caller
// should send the half-open probe (the breaker is then half-open and
// refuses other calls until report).
func (b *breaker) allow(now time.Time, cfg BreakerConfig) (ok, probe bool) {
	switch b.state {
	case BreakerClosed:
		return true, false
	case BreakerOpen:
		if now.Before(b.until) {
			return false, false
		}
		b.state = BreakerHalfOpen
		return false, true
	}
	return false, false // half-open: the probe is out
}

// report records a call's outcome.
func (b *breaker) report(ok bool, now time.Time, cfg BreakerConfig) {
	if ok {
		b.state, b.failures, b.cooldown = BreakerClosed, 0, 0
		return
	}
	switch b.state {
	case BreakerClosed:
		if b.failures++; b.failures < cfg.Failures {
			return
		}
		b.cooldown = cfg.Cooldown
	case BreakerHalfOpen:
		b.cooldown = min(2*b.cooldown, cfg.MaxCooldown)
	case BreakerOpen:
		return // a call that went out before it opened
	}
	b.state, b.until, b.failures = BreakerOpen, now.Add(b.cooldown), 0
	b.opened++
}

// ErrBreakerOpen is wrapped (with wire.ErrPeerUnavailable) by calls that a
// peer's open breaker refused.
var ErrBreakerOpen = errors.New("node: circuit breaker open")

// breakers wraps a Transport with a breaker per peer.
type breakers struct {
	next  Transport
	cfg   BreakerConfig
	clock func() time.Time

	mu sync.Mutex
	// peers is copied on write, under mu, so that the fast paths read it
	// without the lock; a peer's breaker, once made, stays.
	peers  atomic.Pointer[map[string]*breaker]
	closed bool           // no more probes
	probes sync.WaitGroup // probes in flight
}

func newBreakers(next Transport, cfg BreakerConfig, clock func() time.Time) *breakers {
	t := &breakers{next: next, cfg: cfg.withDefaults(), clock: clock}
	t.peers.Store(&map[string]*breaker{})
	return t
}

// lookup returns to's breaker, or nil if it has none yet.
func (t *breakers) lookup(to string) *breaker { return (*t.peers.Load())[to] }

// get returns to's breaker, made if need be; the caller holds mu.
func (t *breakers) get(to string) *breaker {
	if b := t.lookup(to); b != nil {
		return b
	}
	old := *t.peers.Load()
	m := make(map[string]*breaker, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	b := &breaker{}
	b.settle()
	m[to] = b
	t.peers.Store(&m)
	return b
}

// Allows reports whether a call to peer would go out now, for choosing
// copies without trying them. Like a call, it starts the half-open probe
// when one is due, so a peer that nobody calls any more is still probed.
func (t *breakers) Allows(to string) bool {
	b := t.lookup(to)
	if b == nil || b.clean.Load() {
		return true
	}
	t.mu.Lock()
	ok, probe := b.allow(t.clock(), t.cfg)
	b.settle()
	t.mu.Unlock()
	if probe {
		t.startProbe(to)
	}
	return ok
}

// probeDue starts the half-open probe of every member whose cooldown is
// over. Calls and copy choices start it too, but on a cluster with no
// traffic none come, and an open breaker would then show the peer
// unreachable for ever, though it is back.
func (t *breakers) probeDue(member func(string) bool) {
	for name, b := range *t.peers.Load() {
		if !b.clean.Load() && member(name) { // not a member any more (left, reaped): never probed
			t.Allows(name)
		}
	}
}

// forget drops the breakers of peers gone for good.
func (t *breakers) forget(names []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.peers.Load()
	if !slices.ContainsFunc(names, func(n string) bool { return old[n] != nil }) {
		return
	}
	m := maps.Clone(old)
	for _, n := range names {
		delete(m, n)
	}
	t.peers.Store(&m)
}

// reset closes to's breaker: gossip has just seen the peer come back, so
// it gets calls again at once instead of after its cooldown (a peer that
// still fails opens it again within Failures calls).
func (t *breakers) reset(to string) {
	t.mu.Lock()
	if b := t.lookup(to); b != nil && b.state != BreakerHalfOpen {
		b.state, b.failures, b.cooldown = BreakerClosed, 0, 0
		b.settle()
	}
	t.mu.Unlock()
}

// close stops probing and waits for the probes in flight.
func (t *breakers) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.probes.Wait()
}

// admit reports whether a call to to may go out (nil), or the error of
// its open breaker; it starts the half-open probe when one is due.
func (t *breakers) admit(to string) error {
	if b := t.lookup(to); b != nil && b.clean.Load() {
		return nil
	}
	t.mu.Lock()
	b := t.get(to)
	ok, probe := b.allow(t.clock(), t.cfg)
	b.settle()
	t.mu.Unlock()
	if probe {
		t.startProbe(to)
	}
	if !ok {
		return fmt.Errorf("%w: %w: %w to %s", wire.ErrPeerUnavailable, wire.ErrNotSent, ErrBreakerOpen, to)
	}
	return nil
}

func (t *breakers) Call(ctx context.Context, to, method string, args ...[]byte) ([][]byte, error) {
	if err := t.admit(to); err != nil {
		return nil, err
	}
	res, err := t.next.Call(ctx, to, method, args...)
	t.record(ctx, to, err)
	return res, err
}

var _ asyncTransport = (*breakers)(nil)

// Go is Call that reports to done instead of returning (see
// wire.PeerClient.Go): without a goroutine when the transport behind can
// start calls itself (asyncTransport), in one otherwise.
func (t *breakers) Go(ctx context.Context, to, method string, args [][]byte, done func([][]byte, error)) {
	t.goCall(ctx, to, method, args, done, false)
}

var _ lazyTransport = (*breakers)(nil)

// GoLazy is Go for a call that can wait to leave with the next call to
// to (see wire.PeerClient.GoLazy), when the transport behind can hold it
// (lazyTransport); otherwise it is Go.
func (t *breakers) GoLazy(ctx context.Context, to, method string, args [][]byte, done func([][]byte, error)) {
	t.goCall(ctx, to, method, args, done, true)
}

func (t *breakers) goCall(ctx context.Context, to, method string, args [][]byte, done func([][]byte, error), lazy bool) {
	if err := t.admit(to); err != nil {
		done(nil, err)
		return
	}
	recorded := func(res [][]byte, err error) {
		t.record(ctx, to, err)
		done(res, err)
	}
	if lazy {
		if l, ok := t.next.(lazyTransport); ok {
			l.GoLazy(ctx, to, method, args, recorded)
			return
		}
	}
	if a, ok := t.next.(asyncTransport); ok {
		a.Go(ctx, to, method, args, recorded)
		return
	}
	go func() { recorded(t.next.Call(ctx, to, method, args...)) }()
}

// Queued reports whether calls to to are waiting to be written, when the
// transport behind can tell (queuedTransport); false otherwise.
func (t *breakers) Queued(to string) bool {
	q, ok := t.next.(queuedTransport)
	return ok && q.Queued(to)
}

// startProbe pings to in the background; its outcome closes or reopens
// to's breaker (which allow has made half-open).
func (t *breakers) startProbe(to string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.probes.Add(1)
	go func() {
		defer t.probes.Done()
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.ProbeTimeout)
		defer cancel()
		_, err := t.next.Call(ctx, to, "ping")
		if errors.Is(err, wire.ErrPeerBusy) {
			// Queued behind a backlog the peer was working through:
			// it answered other calls meanwhile, so it is up. (record
			// skips busy calls; a probe's outcome must be reported, or
			// the breaker stays half-open, refusing every call and
			// sending no other probe.)
			err = nil
		}
		t.record(ctx, to, err)
	}()
}

// record reports a call's outcome to to's breaker, unless the caller gave
// up on it.
func (t *breakers) record(ctx context.Context, to string, err error) {
	if err != nil && (errors.Is(ctx.Err(), context.Canceled) || errors.Is(err, wire.ErrPeerBusy)) {
		// Given up on, or timed out behind this node's own backlog
		// while the peer kept answering: nothing about the peer. (A
		// review's 200 clients pipelining 100 SETs each opened every
		// breaker of a healthy cluster: writes refused, hints piling up
		// for live nodes.)
		return
	}
	ok := err == nil || isPeerError(err)
	if b := t.lookup(to); ok && b != nil && b.clean.Load() {
		return // a success leaves a clean breaker as it is
	}
	t.mu.Lock()
	b := t.get(to)
	b.report(ok, t.clock(), t.cfg)
	b.settle()
	t.mu.Unlock()
}

// isPeerError reports whether err is the peer's answer (an application
// error): the peer is up. Apart from record, so that record's successful
// calls do not pay for the variable errors.As needs on the heap.
func isPeerError(err error) bool {
	var pe *wire.PeerError
	return errors.As(err, &pe)
}

// PeerBreaker is one peer's breaker as INFO and GET /cluster show it.
type PeerBreaker struct {
	Name   string `json:"name"`
	State  string `json:"breaker"`
	Opened uint64 `json:"breaker_opened"`
}

func (t *breakers) states() []PeerBreaker {
	t.mu.Lock()
	defer t.mu.Unlock()
	peers := *t.peers.Load()
	out := make([]PeerBreaker, 0, len(peers))
	for name, b := range peers {
		s := b.state
		if s == BreakerOpen && !t.clock().Before(b.until) {
			s = BreakerHalfOpen // due for its probe
		}
		out = append(out, PeerBreaker{Name: name, State: s.String(), Opened: b.opened})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

package node

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rumor-kv/rumor/wire"
)

// MemNetwork is an in-memory Transport for many nodes in one process,
// with the faults a real network has: a node can be down (calls to it
// fail at once, as with a refused connection), links can be black-holed
// (calls hang until their deadline, as under a partition), and every call
// can be delayed. Arguments and results are copied, as a network would,
// and a handler runs under the network's context, not the caller's (whose
// values and deadline a real peer never sees).
type MemNetwork struct {
	mu       sync.Mutex
	handlers map[string]wire.PeerHandler
	blocked  map[[2]string]bool
	delay    time.Duration
	slow     map[string]time.Duration

	closed   chan struct{} // closed by Close: calls fail, waits end
	inFlight sync.WaitGroup
	ctx      context.Context // the handlers'; cancelled by Close
	cancel   context.CancelFunc
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	ctx, cancel := context.WithCancel(context.Background())
	return &MemNetwork{handlers: map[string]wire.PeerHandler{}, blocked: map[[2]string]bool{}, slow: map[string]time.Duration{},
		closed: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// Close takes the network down for good: calls fail at once, held and
// delayed ones end, and Close returns once no handler runs. Close it
// before the nodes' stores, so that a copy still in flight when a test
// ends (a straggler the quorum did not wait for) never reaches a closed
// store. Safe to call twice.
func (m *MemNetwork) Close() {
	m.mu.Lock()
	select {
	case <-m.closed:
	default:
		close(m.closed)
	}
	m.mu.Unlock()
	m.cancel()
	m.inFlight.Wait()
}

// Register connects node name, served by h.
func (m *MemNetwork) Register(name string, h wire.PeerHandler) {
	m.mu.Lock()
	m.handlers[name] = h
	m.mu.Unlock()
}

// Down disconnects node name: calls to it fail at once.
func (m *MemNetwork) Down(name string) {
	m.mu.Lock()
	delete(m.handlers, name)
	m.mu.Unlock()
}

// Partition black-holes every link between nodes of different groups.
func (m *MemNetwork) Partition(groups ...[]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					m.blocked[[2]string{a, b}] = true
				}
			}
		}
	}
}

// Heal removes every black hole.
func (m *MemNetwork) Heal() {
	m.mu.Lock()
	clear(m.blocked)
	m.mu.Unlock()
}

// SetDelay delays every call by d.
func (m *MemNetwork) SetDelay(d time.Duration) {
	m.mu.Lock()
	m.delay = d
	m.mu.Unlock()
}

// Slow delays every call to node name by d (0: no longer), on top of
// SetDelay's: a peer that is slow rather than down.
func (m *MemNetwork) Slow(name string, d time.Duration) {
	m.mu.Lock()
	m.slow[name] = d
	m.mu.Unlock()
}

// Transport returns node from's view of the network.
func (m *MemNetwork) Transport(from string) Transport { return memTransport{m, from} }

type memTransport struct {
	m    *MemNetwork
	from string
}

func (t memTransport) Call(ctx context.Context, to, method string, args ...[]byte) ([][]byte, error) {
	t.m.mu.Lock()
	select {
	case <-t.m.closed:
		t.m.mu.Unlock()
		return nil, fmt.Errorf("%w: %w: the network is closed", wire.ErrPeerUnavailable, wire.ErrNotSent)
	default:
	}
	t.m.inFlight.Add(1) // under mu, so Close cannot be waiting already
	defer t.m.inFlight.Done()
	h, up := t.m.handlers[to]
	blocked := t.m.blocked[[2]string{t.from, to}]
	delay := t.m.delay + t.m.slow[to]
	t.m.mu.Unlock()
	if blocked {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("node: call %s on %s: %w", method, to, ctx.Err())
		case <-t.m.closed:
			return nil, fmt.Errorf("%w: %w: the network is closed", wire.ErrPeerUnavailable, wire.ErrNotSent)
		}
	}
	if !up {
		return nil, fmt.Errorf("%w: %w: %s is down", wire.ErrPeerUnavailable, wire.ErrNotSent, to)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, fmt.Errorf("node: call %s on %s: %w", method, to, ctx.Err())
		case <-t.m.closed:
			return nil, fmt.Errorf("%w: %w: the network is closed", wire.ErrPeerUnavailable, wire.ErrNotSent)
		}
	}
	in := make([][]byte, len(args))
	for i, a := range args {
		in[i] = bytes.Clone(a)
	}
	res, err := h(t.m.ctx, method, in)
	if err != nil {
		return nil, &wire.PeerError{Msg: err.Error()}
	}
	out := make([][]byte, len(res))
	for i, r := range res {
		out[i] = bytes.Clone(r)
	}
	if ctx.Err() != nil { // the reply came too late for the caller
		return nil, fmt.Errorf("node: call %s on %s: %w", method, to, ctx.Err())
	}
	return out, nil
}

var _ Transport = memTransport{}

var _ lazyTransport = memTransport{}

// memLazyDelay is how long a lazy call waits before it goes out, as a
// lazy wire call may wait for company (wire.PeerClient.GoLazy).
const memLazyDelay = time.Millisecond

// GoLazy implements lazyTransport: the call is made after memLazyDelay,
// with its arguments as they were when it started (a wire call encodes
// them at once).
func (t memTransport) GoLazy(ctx context.Context, to, method string, args [][]byte, done func([][]byte, error)) {
	in := make([][]byte, len(args))
	for i, a := range args {
		in[i] = bytes.Clone(a)
	}
	time.AfterFunc(memLazyDelay, func() { done(t.Call(ctx, to, method, in...)) })
}

package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// TestEveryReplicaGetsEveryAcknowledgedWrite: nodes go down and come back
// at random, or the network splits, while writes and increments go
// through random live nodes. Once all is healed and every hint is
// delivered, every preferred replica of a key must hold every write
// acknowledged for it, with no read to repair it: each copy that did not
// reach its replica was covered by a hint, on a stand-in or on the
// coordinator. The registers are written with an empty context, so every
// value stays as a sibling and a missing one cannot hide behind a newer
// write; counters must count every acknowledged increment and no more
// than were attempted. It runs with 3 nodes (no stand-ins) and 4
// (stand-ins for one replica down at a time), with nodes going down
// (their calls fail at once) and with partitions (calls black-holed until
// their timeout).
func TestEveryReplicaGetsEveryAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		names     []string
		partition bool // faults are partitions (calls black-holed until their timeout), not nodes down
	}{
		{[]string{"n1", "n2", "n3"}, false},
		{[]string{"n1", "n2", "n3", "n4"}, false},
		{[]string{"n1", "n2", "n3"}, true},
		{[]string{"n1", "n2", "n3", "n4"}, true},
	} {
		names := tt.names
		t.Run(fmt.Sprintf("%dnodes/partitions=%v", len(names), tt.partition), func(t *testing.T) {
			t.Parallel() // the partitioned runs mostly wait out timeouts
			seed := time.Now().UnixNano()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(uint64(seed), 0))
			tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
				cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
				cfg.Timeout = 200 * time.Millisecond // a black-holed call fails at it
			})
			ctx := context.Background()
			steps := 300
			if tt.partition {
				steps = 80 // a write across a partition waits out the timeout
			}
			h := newHistory()
			down := map[string]bool{}
			for step := range steps {
				switch {
				case tt.partition && rng.IntN(8) == 0: // a new partition, or none
					tc.net.Heal()
					if rng.IntN(2) == 0 {
						p := rng.Perm(len(names))
						cut := 1 + rng.IntN(len(names)-1)
						var a, b []string
						for i, j := range p {
							if i < cut {
								a = append(a, names[j])
							} else {
								b = append(b, names[j])
							}
						}
						tc.net.Partition(a, b)
					}
				case !tt.partition && rng.IntN(10) == 0: // a node goes down or comes back
					toggle(tc, names, down, rng)
				}
				var live []string
				for _, n := range names {
					if !down[n] {
						live = append(live, n)
					}
				}
				coord := tc.nodes[live[rng.IntN(len(live))]]
				if rng.IntN(3) == 0 {
					h.incr(ctx, coord, fmt.Sprint("c", rng.IntN(12)))
				} else {
					h.put(ctx, coord, fmt.Sprint("k", rng.IntN(12)), fmt.Sprint("v", step))
				}
			}
			tc.net.Heal()
			for n := range down {
				tc.net.Register(n, tc.nodes[n].HandlePeer)
			}
			t.Logf("%d acknowledged copies checked on their replicas", h.converge(t, tc))
		})
	}
}

// TestConcurrentWritersUnderFaultsReachEveryReplica is the same check with
// four writers at once and nodes going down and coming back while they
// write, so that hints are written, delivered and rewritten concurrently
// (a delivery must not delete the hint of a newer write).
func TestConcurrentWritersUnderFaultsReachEveryReplica(t *testing.T) {
	t.Parallel()
	for _, names := range [][]string{{"n1", "n2", "n3"}, {"n1", "n2", "n3", "n4"}} {
		t.Run(fmt.Sprint(len(names), "nodes"), func(t *testing.T) {
			t.Parallel()
			seed := time.Now().UnixNano()
			t.Logf("seed %d", seed)
			tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
				cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
				cfg.Timeout = 200 * time.Millisecond
			})
			ctx := context.Background()
			h := newHistory()
			down := map[string]bool{} // owned by the fault goroutine until it ends
			stop := make(chan struct{})
			var faults, writers sync.WaitGroup
			faults.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(seed), 1))
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if rng.IntN(3) == 0 {
						toggle(tc, names, down, rng)
					}
				}
			})
			for w := range 4 {
				writers.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(seed), uint64(w+2)))
					for i := range 150 {
						h.put(ctx, tc.nodes[names[rng.IntN(len(names))]], fmt.Sprint("k", rng.IntN(8)), fmt.Sprintf("w%dv%d", w, i))
					}
				})
			}
			writers.Wait()
			close(stop)
			faults.Wait()
			for n := range down {
				tc.net.Register(n, tc.nodes[n].HandlePeer)
			}
			t.Logf("%d acknowledged copies checked on their replicas", h.converge(t, tc))
		})
	}
}

// flakyCalls fails 3% of calls before they leave (ErrNotSent) and 3% after
// the peer applied them (the reply lost), at random.
type flakyCalls struct {
	Transport
	mu  sync.Mutex
	rng *rand.Rand
}

func (f *flakyCalls) Call(ctx context.Context, to, method string, args ...[]byte) ([][]byte, error) {
	f.mu.Lock()
	r := f.rng.IntN(100)
	f.mu.Unlock()
	if r < 3 {
		return nil, fmt.Errorf("%w: %w: dropped before sending", wire.ErrPeerUnavailable, wire.ErrNotSent)
	}
	res, err := f.Transport.Call(ctx, to, method, args...)
	if r < 6 {
		return nil, fmt.Errorf("%w: reply lost", wire.ErrPeerUnavailable)
	}
	return res, err
}

// TestCountersStayExactWhenCallsFailBeforeOrAfterApplying: increments and
// register writes go through random nodes of 5 (so most are forwarded)
// while 6% of peer calls fail, half of them after the peer applied them.
// Every replica must come to count every acknowledged increment and none
// that was not attempted (an increment forwarded again after its reply
// was lost counted twice), and to hold every acknowledged write.
func TestCountersStayExactWhenCallsFailBeforeOrAfterApplying(t *testing.T) {
	t.Parallel()
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	stream := uint64(0)
	tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
		stream++
		cfg.Transport = &flakyCalls{Transport: cfg.Transport, rng: rand.New(rand.NewPCG(uint64(seed), stream))}
	})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	h := newHistory()
	for step := range 600 {
		coord := tc.nodes[names[rng.IntN(len(names))]]
		if step%3 == 2 { // a register write too: every acknowledged value must reach every replica
			h.put(ctx, coord, fmt.Sprint("r", rng.IntN(6)), fmt.Sprint("v", step))
		} else {
			h.incr(ctx, coord, fmt.Sprint("c", rng.IntN(6)))
		}
	}
	h.converge(t, tc)
	t.Logf("increments acknowledged %v of %v tried", h.acked, h.tried)
}

// history is what a random run acknowledged and attempted: register
// values (written with an empty context, so each stays a sibling) and
// counter increments, by key.
type history struct {
	mu           sync.Mutex
	values       map[string][]string
	acked, tried map[string]int64
}

func newHistory() *history {
	return &history{values: map[string][]string{}, acked: map[string]int64{}, tried: map[string]int64{}}
}

// put writes v to key through c, recording it if acknowledged.
func (h *history) put(ctx context.Context, c *Coordinator, key, v string) {
	if err := c.Put(ctx, []byte(key), []byte(v), wire.WriteOptions{HasContext: true, Context: crdt.Context{}}); err == nil {
		h.mu.Lock()
		h.values[key] = append(h.values[key], v)
		h.mu.Unlock()
	}
}

// incr increments key through c, recording the attempt and the ack.
func (h *history) incr(ctx context.Context, c *Coordinator, key string) {
	_, err := c.Incr(ctx, []byte(key), 1)
	h.mu.Lock()
	h.tried[key]++
	if err == nil {
		h.acked[key]++
	}
	h.mu.Unlock()
}

// missing returns what the replicas of tc do not hold yet ("" once every
// replica of every key holds every acknowledged value, counts between the
// acknowledged and the attempted increments, and no hint is pending), and
// how many acknowledged copies it checked.
func (h *history) missing(t *testing.T, tc *testCluster) (string, int) {
	checked := 0
	for key, values := range h.values {
		for _, r := range tc.replicasOf(key) {
			o := tc.object(t, r, key)
			for _, v := range values {
				if !slices.ContainsFunc(o.Reg.Siblings, func(s crdt.Sibling) bool { return string(s.Value) == v }) {
					return fmt.Sprintf("replica %s of %s lacks the acknowledged write %s; it holds %s", r, key, v, siblings(o)), checked
				}
				checked++
			}
		}
	}
	for key, n := range h.acked {
		for _, r := range tc.replicasOf(key) {
			if got := tc.count(t, r, key); got < n || got > h.tried[key] {
				return fmt.Sprintf("replica %s of %s counts %d; %d increments were acknowledged, %d tried", r, key, got, n, h.tried[key]), checked
			}
		}
	}
	if n := tc.hintsPending(); n > 0 {
		return fmt.Sprintf("%d hints pending", n), checked
	}
	return "", checked
}

// converge waits until h.missing reports nothing, and fails t if that does
// not happen within 20s. Copies black-holed by a partition fail only at
// their timeout, and only then leave their hint: it waits for the
// replicas, not just for the hints pending at one moment.
func (h *history) converge(t *testing.T, tc *testCluster) int {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		problem, checked := h.missing(t, tc)
		if problem == "" {
			if checked == 0 {
				t.Fatal("no write was acknowledged: the test proves nothing")
			}
			return checked
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged within 20s: %s", problem)
		}
	}
}

// toggle takes a random node down, or brings it back, keeping at most
// len(names)-2 down at once (W=2 stays reachable).
func toggle(tc *testCluster, names []string, down map[string]bool, rng *rand.Rand) {
	n := names[rng.IntN(len(names))]
	if down[n] {
		tc.net.Register(n, tc.nodes[n].HandlePeer)
		delete(down, n)
	} else if len(down) < len(names)-2 {
		tc.net.Down(n)
		down[n] = true
	}
}

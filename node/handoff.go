package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// Hinted handoff: a node that stood in for an unreachable replica holds
// the object in its store with a hint naming that replica (store hints,
// written in the same batch as the object); so does a coordinator for a
// replica that its copy could not reach and no stand-in covers (on its
// own copy; see hintLocally). A loop sends each hinted
// object to its replica once gossip reports the replica alive and its
// breaker lets calls through, merging it there ("merge": never an
// overwrite), and deletes the hint only after the replica acknowledged it
// and only if no newer hinted write for the key came in meanwhile (store's
// DeleteHint compares the hint's sequence number). A delivery that fails
// backs off, per target, exponentially with jitter; deliveries are bounded
// by HandoffConfig.Rate.
//
// The stand-in keeps its copy of the object after the handoff: it holds
// this node's own writes to the key (its actor's history, which a later
// write here must continue, not restart), and a CRDT copy that is merely
// old does no harm. Dropping copies a node does not own is the rebalancing
// issue's work.

// HandoffConfig tunes hinted handoff. Zero fields mean their defaults.
type HandoffConfig struct {
	// Interval is how often the loop looks for hints to deliver (and it
	// also runs when membership changes). Default 200ms; negative disables
	// handoff (tests that inspect hints).
	Interval time.Duration
	// Rate bounds the hints delivered per second. Default 2000.
	Rate int
	// Backoff is the first wait after a failed delivery to a target; it
	// doubles up to MaxBackoff, with jitter. Defaults 500ms and 30s.
	Backoff, MaxBackoff time.Duration
}

func (c HandoffConfig) withDefaults() HandoffConfig {
	if c.Interval == 0 {
		c.Interval = 200 * time.Millisecond
	}
	if c.Rate <= 0 {
		c.Rate = 2000
	}
	if c.Backoff <= 0 {
		c.Backoff = 500 * time.Millisecond
	}
	if c.MaxBackoff < c.Backoff {
		c.MaxBackoff = max(30*time.Second, c.Backoff)
	}
	return c
}

// handoff is the delivery loop's state; the loop goroutine owns backoff.
type handoff struct {
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	backoff   map[string]*targetBackoff
	// cursor is, per target, the last hint a pass got past: the next pass
	// goes on after it, so that a hint that keeps failing (for a target
	// gone for good, one of whose replicas is down; for any target, one
	// the target refuses) does not stop the ones after it (deliverHints).
	cursor map[string]*store.Hint
	// stuck is, per target, the hint whose call last failed after it was
	// sent (the connection broke, or the call timed out), and in how many
	// passes in a row: a hint the target's connection breaks on every
	// time (a copy past its peer limits) is passed over after
	// stuckHintPasses, so that it does not hold up the others for ever.
	stuck map[string]stuckHint

	mu      sync.Mutex
	revived map[string]bool // targets gossip saw come back: their backoff is over
}

type stuckHint struct {
	part   uint32
	key    []byte
	passes int
}

// stuckHintPasses is how many passes in a row a hint may break its call
// before the passes go on past it.
const stuckHintPasses = 3

// stuckOn records that h's call to target failed after it was sent, and
// returns in how many passes in a row it did.
func (c *Coordinator) stuckOn(target string, h store.Hint) int {
	st := c.handoff.stuck[target]
	if st.part != h.Partition || !bytes.Equal(st.key, h.Key) {
		st = stuckHint{part: h.Partition, key: h.Key}
	}
	st.passes++
	c.handoff.stuck[target] = st
	return st.passes
}

type targetBackoff struct {
	wait time.Duration
	next time.Time
}

func (c *Coordinator) startHandoff() {
	c.handoff = handoff{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		backoff: map[string]*targetBackoff{}, cursor: map[string]*store.Hint{}, stuck: map[string]stuckHint{}}
	if c.cfg.Handoff.Interval < 0 {
		close(c.handoff.done)
		return
	}
	go c.handoffLoop()
}

// revive ends the backoff of targets gossip has just seen come back, so
// their hints go at the next pass instead of after up to MaxBackoff.
func (c *Coordinator) revive(names []string) {
	c.handoff.mu.Lock()
	if c.handoff.revived == nil {
		c.handoff.revived = map[string]bool{}
	}
	for _, n := range names {
		c.handoff.revived[n] = true
	}
	c.handoff.mu.Unlock()
}

// kickHandoff makes the loop run soon (membership changed).
func (c *Coordinator) kickHandoff() {
	select {
	case c.handoff.kick <- struct{}{}:
	default:
	}
}

// Close stops hinted handoff, breaker probes and read repairs and waits
// for them. Safe to call twice. The store stays open (the node closes it,
// after this).
func (c *Coordinator) Close() {
	c.handoff.closeOnce.Do(func() {
		close(c.handoff.stop)
		<-c.handoff.done
		c.tr.close()
		for range cap(c.repairs) { // every slot: the repairs in flight are done
			c.repairs <- struct{}{}
		}
	})
}

func (c *Coordinator) handoffLoop() {
	defer close(c.handoff.done)
	t := time.NewTicker(c.cfg.Handoff.Interval)
	defer t.Stop()
	perPass := max(1, int(float64(c.cfg.Handoff.Rate)*c.cfg.Handoff.Interval.Seconds()))
	for {
		select {
		case <-c.handoff.stop:
			return
		case <-t.C:
			c.tr.probeDue(c.isMember)
		case <-c.handoff.kick:
		}
		c.handoffPass(perPass)
	}
}

// isMember reports whether name is a member of the current placement.
func (c *Coordinator) isMember(name string) bool {
	p := c.place.Load()
	if p == nil {
		return false
	}
	_, ok := slices.BinarySearch(p.Members(), name)
	return ok
}

// handoffPass delivers up to budget hints, target by target.
func (c *Coordinator) handoffPass(budget int) {
	p := c.place.Load()
	if p == nil {
		return
	}
	members := p.Members()
	c.handoff.mu.Lock()
	for n := range c.handoff.revived {
		delete(c.handoff.backoff, n)
	}
	c.handoff.revived = nil
	c.handoff.mu.Unlock()
	targets := c.cfg.Store.Hints()
	names := make([]string, 0, len(targets))
	for t, n := range targets {
		if n > 0 {
			names = append(names, t)
		}
	}
	sort.Strings(names)
	now := c.cfg.Clock()
	for _, target := range names {
		if budget <= 0 {
			return
		}
		if target == c.cfg.Self || (*c.down.Load())[target] {
			continue
		}
		retired := false
		if _, ok := slices.BinarySearch(members, target); !ok {
			if !(*c.left.Load())[target] {
				continue // a name this node does not know as a member (yet): keep its hints
			}
			retired = true // left for good: its hints go to the keys' replicas now
		}
		b := c.handoff.backoff[target]
		if b != nil && now.Before(b.next) {
			continue
		}
		n, err := c.deliverHints(target, budget, retired)
		budget -= n
		if err == nil {
			delete(c.handoff.backoff, target)
			continue
		}
		c.stats.hintDeliveryFailure.Add(1)
		c.cfg.Logger.Debug("hint delivery failed", "target", target, "err", err)
		if b == nil {
			b = &targetBackoff{}
			c.handoff.backoff[target] = b
		}
		b.wait = min(max(2*b.wait, c.cfg.Handoff.Backoff), c.cfg.Handoff.MaxBackoff)
		// Full jitter over the upper half: targets that failed together
		// do not all retry together.
		b.next = now.Add(b.wait/2 + rand.N(b.wait/2+1))
	}
}

// deliverHints sends up to limit of target's hinted objects to it and
// deletes the hints it acknowledged. For a target that left for good
// (retired), each object goes instead to the key's preferred replicas now,
// other than this node (which holds it), and its hint is deleted once all
// of them acknowledged it.
//
// A hint that fails stays. One the target refused (it answered the call
// with an error: a copy it cannot take) is passed over, as is, for a
// retired target, one a replica of whose key failed (each key has its own
// replicas: one that is down must not hold up the keys it does not
// replicate). Any other failure of a call to a target that is not retired
// (unreachable, timed out) ends the pass there: the target is likely
// down. The next pass starts after the last hint this one got past,
// wrapping around at the end; a pass reports a failure (and the target
// backs off) only if it delivered nothing.
func (c *Coordinator) deliverHints(target string, limit int, retired bool) (int, error) {
	var hints []store.Hint
	err := c.cfg.Store.ScanHints(target, c.handoff.cursor[target], limit, func(h store.Hint) error {
		h.Key = bytes.Clone(h.Key)
		hints = append(hints, h)
		return nil
	})
	if err != nil {
		return 0, err
	}
	// reached records how far the pass got: the next starts after it.
	reached := func(i int) {
		switch {
		case i == len(hints)-1 && len(hints) < limit:
			delete(c.handoff.cursor, target) // the end: the next pass starts over
		case i >= 0:
			c.handoff.cursor[target] = &hints[i]
		}
	}
	var failed error
	delivered := 0
hints:
	for i, h := range hints {
		obj, found, err := c.cfg.Store.Get(h.Partition, h.Key)
		if err != nil {
			reached(i - 1)
			return i, err
		}
		if found {
			to := []string{target}
			if retired {
				if _, to, err = c.replicas(h.Key); err != nil {
					reached(i - 1)
					return i, err
				}
			}
			enc := obj.Encode()
			for _, r := range to {
				if r == c.cfg.Self {
					continue
				}
				if retired && !c.reachable(r) {
					if failed == nil {
						failed = fmt.Errorf("node: hints for %s: replica %s is unreachable", target, r)
					}
					continue hints // no call to a replica known to be down
				}
				ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
				_, err = c.tr.Call(ctx, r, "merge", h.Key, enc)
				cancel()
				if err != nil {
					var refused *wire.PeerError
					if !retired && !errors.As(err, &refused) &&
						(errors.Is(err, wire.ErrNotSent) || errors.Is(err, wire.ErrPeerUnavailable) || c.stuckOn(target, h) < stuckHintPasses) {
						reached(i - 1)
						return i, err
					}
					if failed == nil {
						failed = err
					}
					continue hints // this hint stays
				}
			}
		}
		deleted, err := c.cfg.Store.DeleteHint(h)
		if err != nil {
			reached(i - 1)
			return i, err
		}
		if deleted {
			c.stats.hintsDelivered.Add(1)
		}
		delete(c.handoff.stuck, target)
		delivered++
	}
	reached(len(hints) - 1)
	if delivered > 0 {
		// Progress: no backoff for the target; the held-up hints are
		// retried when the passes come round to them again.
		failed = nil
	}
	return len(hints), failed
}

// PeerStatus is what this node knows of another member's reachability.
type PeerStatus struct {
	Name          string `json:"name"`
	Reachable     bool   `json:"reachable"`
	GossipDown    bool   `json:"gossip_failed"`
	Breaker       string `json:"breaker"`
	BreakerOpened uint64 `json:"breaker_opened"`
	HintsPending  int    `json:"hints_pending"`
}

// CoordinatorStats are the coordinator's counters and peers' state, for
// INFO, GET /cluster and /metrics.
type CoordinatorStats struct {
	ReadRepairs          uint64         `json:"read_repairs"`
	ReadRepairsSkipped   uint64         `json:"read_repairs_skipped"`
	HintedWrites         uint64         `json:"hinted_writes"` // copies acknowledged by stand-ins
	HintsDelivered       uint64         `json:"hints_delivered"`
	HintsDropped         uint64         `json:"hints_dropped"` // refused: hint storage full
	HintDeliveryFailures uint64         `json:"hint_delivery_failures"`
	HintsPending         map[string]int `json:"hints_pending"`
	// CopiesInFlight are copies sent to other nodes whose outcome is not
	// known yet (a failure leaves a hint): with HintsPending all zero and
	// every member alive, the replicas hold every write made so far.
	CopiesInFlight int64        `json:"copies_in_flight"`
	Peers          []PeerStatus `json:"peers"`
}

// Stats returns the coordinator's counters and its view of the peers.
func (c *Coordinator) Stats() CoordinatorStats {
	s := CoordinatorStats{
		ReadRepairs: c.stats.readRepairs.Load(), ReadRepairsSkipped: c.stats.repairsSkipped.Load(),
		HintedWrites: c.stats.hintedWrites.Load(), HintsDelivered: c.stats.hintsDelivered.Load(),
		HintsDropped: c.stats.hintsDropped.Load(), HintDeliveryFailures: c.stats.hintDeliveryFailure.Load(),
		HintsPending: c.cfg.Store.Hints(), CopiesInFlight: c.stats.copiesInFlight.Load(),
	}
	breakers := map[string]PeerBreaker{}
	for _, b := range c.tr.states() {
		breakers[b.Name] = b
	}
	down := *c.down.Load()
	if p := c.place.Load(); p != nil {
		for _, m := range p.Members() {
			if m == c.cfg.Self {
				continue
			}
			b, ok := breakers[m]
			if !ok {
				b.State = BreakerClosed.String()
			}
			s.Peers = append(s.Peers, PeerStatus{Name: m, GossipDown: down[m], Breaker: b.State, BreakerOpened: b.Opened,
				Reachable: !down[m] && b.State == BreakerClosed.String(), HintsPending: s.HintsPending[m]})
		}
	}
	return s
}

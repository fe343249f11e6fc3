package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/gossip"
	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// TestHandoffBacksOffAndIsBounded drives handoff passes by hand with a
// fake clock: a failing target is retried only after its backoff, which
// doubles; a pass delivers at most its budget; hints go only once
// acknowledged.
func TestHandoffBacksOffAndIsBounded(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir(), Partitions: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < 10; i++ {
		var o crdt.Object
		o.Reg = o.Reg.Update(1, o.Reg.Context, []byte("v"), false, 1)
		if _, err := st.MergeHinted(uint32(i), []byte(fmt.Sprint("k", i)), o, "n2"); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	up := false
	tr := &scriptedTransport{calls: map[string]int{}, fn: func(ctx context.Context, to, method string) error {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			return wire.ErrPeerUnavailable
		}
		return nil
	}}
	now := time.Unix(1000, 0)
	c, err := NewCoordinator(CoordinatorConfig{Self: "n1", Store: st, Transport: tr, Replicas: 2,
		Clock:   func() time.Time { return now },
		Breaker: BreakerConfig{Failures: 1000}, // this test is about handoff's own backoff
		Handoff: HandoffConfig{Interval: -1, Backoff: time.Second, MaxBackoff: 4 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetMembers([]string{"n1", "n2"})

	merges := func() int { return tr.count("n2 merge") }
	c.handoffPass(100)
	if merges() != 1 {
		t.Fatalf("first pass: %d deliveries tried, want 1 (stop at the first failure)", merges())
	}
	c.handoffPass(100)
	if merges() != 1 {
		t.Fatalf("a pass within the backoff tried again")
	}
	for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if got := c.handoff.backoff["n2"].wait; got != wait {
			t.Fatalf("backoff %v, want %v", got, wait)
		}
		if next := c.handoff.backoff["n2"].next.Sub(now); next < wait/2 || next > wait {
			t.Fatalf("next try in %v, want within [%v, %v] (jittered)", next, wait/2, wait)
		}
		now = now.Add(wait)
		before := merges()
		c.handoffPass(100)
		if merges() != before+1 {
			t.Fatalf("after the backoff of %v: %d tries, want one more", wait, merges()-before)
		}
	}
	if st.HintCount() != 10 {
		t.Fatalf("failed deliveries deleted hints: %d left", st.HintCount())
	}
	// Gossip seeing the target go and come back ends its backoff.
	c.handoffPass(100)
	before := merges()
	c.SetDown([]string{"n2"})
	c.SetDown(nil)
	c.handoffPass(100)
	if merges() != before+1 {
		t.Fatalf("after gossip saw n2 come back: %d tries, want one at once", merges()-before)
	}
	mu.Lock()
	up = true
	mu.Unlock()
	now = now.Add(time.Minute)
	c.handoffPass(3)
	if st.HintCount() != 7 {
		t.Fatalf("a pass with a budget of 3 left %d of 10 hints", st.HintCount())
	}
	if _, ok := c.handoff.backoff["n2"]; ok {
		t.Fatal("a successful delivery kept the backoff")
	}
	c.handoffPass(100)
	if st.HintCount() != 0 || c.Stats().HintsDelivered != 10 {
		t.Fatalf("after the last pass: %d hints left, %d delivered", st.HintCount(), c.Stats().HintsDelivered)
	}
	// A target gossip reports failed is not tried at all.
	var o crdt.Object
	o.Reg = o.Reg.Update(1, o.Reg.Context, []byte("w"), false, 2)
	st.MergeHinted(0, []byte("k0"), o, "n2")
	c.SetDown([]string{"n2"})
	before = merges()
	c.handoffPass(100)
	if merges() != before {
		t.Fatal("handoff tried a target gossip reports failed")
	}
}

// TestClassifyMembers: a failed member stays in the ring; one that left,
// or that serf reaped after it failed for the reconnect timeout, is gone
// for good (its hints go to the replicas); one leaving is out of the ring.
func TestClassifyMembers(t *testing.T) {
	ms := []gossip.Member{
		{Name: "a", Status: gossip.StatusAlive}, {Name: "b", Status: gossip.StatusSuspect},
		{Name: "c", Status: gossip.StatusFailed}, {Name: "d", Status: gossip.StatusLeaving},
		{Name: "e", Status: gossip.StatusLeft}, {Name: "f", Status: gossip.StatusReaped},
	}
	names, failed, gone := classifyMembers(ms)
	if got := fmt.Sprint(names, failed, gone); got != "[a b c] [c] [e f]" {
		t.Fatalf("members, failed, gone = %s, want [a b c] [c] [e f]", got)
	}
}

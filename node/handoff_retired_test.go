package node

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/crdt"
	"github.com/rumor-kv/rumor/ring"
	"github.com/rumor-kv/rumor/store"
)

// TestHintsForALeftMemberAreNotHeldUpByADownReplica: n1 holds hints for
// n5, which left for good, so they go to each key's replicas now. One
// replica, n4, is down: the hints for keys it is a replica of must wait,
// but the others' must not wait with them.
func TestHintsForALeftMemberAreNotHeldUpByADownReplica(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	tc := newTestCluster(t, names, 3, 2, 2)
	n1 := tc.nodes["n1"]
	// Keys in hint order (partition, then key): the first has n4 as a
	// replica, and some after it do not.
	type hk struct {
		part uint32
		key  string
	}
	var keys []hk
	for i := 0; i < 40; i++ {
		k := fmt.Sprint("h", i)
		keys = append(keys, hk{ring.Partition([]byte(k), 64), k})
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].part != keys[j].part {
			return keys[i].part < keys[j].part
		}
		return keys[i].key < keys[j].key
	})
	first := slices.IndexFunc(keys, func(k hk) bool { return slices.Contains(tc.replicasOf(k.key), "n4") })
	keys = keys[first:]
	var o crdt.Object
	o.Reg = o.Reg.Update(n1.cfg.Store.Actor(), o.Reg.Context, []byte("v"), false, 1)
	for _, k := range keys {
		if _, err := n1.cfg.Store.MergeHinted(k.part, []byte(k.key), o, "n5"); err != nil {
			t.Fatal(err)
		}
	}
	tc.net.Down("n4")
	tc.setDown([]string{"n1", "n2", "n3"}, []string{"n4"})
	for _, c := range tc.nodes {
		c.SetLeft([]string{"n5"})
	}
	var free []string // keys none of whose replicas is down
	for _, k := range keys {
		if !slices.Contains(tc.replicasOf(k.key), "n4") {
			free = append(free, k.key)
		}
	}
	if len(free) == 0 {
		t.Fatal("every key has n4 as a replica: the test proves nothing")
	}
	deadline := time.Now().Add(5 * time.Second)
	delivered := func() bool { return everyReplicaHolds(t, tc, free, "[v]") }
	for time.Now().Before(deadline) && !delivered() {
		time.Sleep(20 * time.Millisecond)
	}
	if !delivered() {
		t.Fatalf("hints for n5 (left) on n1: %d pending; %d keys whose replicas are all up were not delivered in 5s, held up by a key n4 (down) is a replica of",
			n1.cfg.Store.Hints()["n5"], len(free))
	}
}

// TestHintsForALeftMemberGoRoundHeldUpOnes: as above, with a budget of
// one hint a pass, smaller than the run of held-up hints at the front of
// the scan: each pass goes on after the last hint the one before reached,
// so the hints behind them are delivered too.
func TestHintsForALeftMemberGoRoundHeldUpOnes(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 2
		cfg.Handoff.Interval, cfg.Handoff.Rate = 10*time.Millisecond, 1 // one hint a pass
		cfg.Handoff.Backoff, cfg.Handoff.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	})
	n1 := tc.nodes["n1"]
	var held, free []string // keys with n4 (down) as a replica, and the others
	for i := 0; len(free) < 5 || len(held) < 5; i++ {
		k := fmt.Sprint("g", i)
		if slices.Contains(tc.replicasOf(k), "n4") {
			held = append(held, k)
		} else {
			free = append(free, k)
		}
	}
	var o crdt.Object
	o.Reg = o.Reg.Update(n1.cfg.Store.Actor(), o.Reg.Context, []byte("v"), false, 1)
	for _, k := range append(slices.Clone(held), free...) {
		if _, err := n1.cfg.Store.MergeHinted(ring.Partition([]byte(k), 64), []byte(k), o, "n5"); err != nil {
			t.Fatal(err)
		}
	}
	tc.net.Down("n4")
	tc.setDown([]string{"n1", "n2", "n3"}, []string{"n4"})
	for _, c := range tc.nodes {
		c.SetLeft([]string{"n5"})
	}
	delivered := func() bool { return everyReplicaHolds(t, tc, free, "[v]") }
	for deadline := time.Now().Add(10 * time.Second); !delivered(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("hints for n5 (left): %d pending after 10 s; the %d keys whose replicas are up were not all delivered", n1.cfg.Store.Hints()["n5"], len(free))
		}
	}
	if got := n1.cfg.Store.Hints()["n5"]; got != len(held) {
		t.Errorf("%d hints for n5 pending, want the %d whose keys n4 (down) replicates", got, len(held))
	}
}

// everyReplicaHolds reports whether every replica of each key holds want.
func everyReplicaHolds(t *testing.T, tc *testCluster, keys []string, want string) bool {
	t.Helper()
	for _, k := range keys {
		for _, r := range tc.replicasOf(k) {
			if tc.local(t, r, k) != want {
				return false
			}
		}
	}
	return true
}

package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// TestSlowReplicasAreNotReplacedByANonCopy: with every node up and
// reachable (no failure, no partition, every breaker closed), a write
// acknowledged by W=2 of N=3 replicas must be seen by a sloppy R=2 read.
// The two replicas that hold it are slow (far inside the timeout) and the
// third, which missed it, answers at once: the read's hedge asks the
// third, and must then wait for a replica rather than ask a fallback that
// holds no copy and count its empty answer towards R. (Found in review:
// the read returned nothing after two hedge delays.)
func TestSlowReplicasAreNotReplacedByANonCopy(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	tc := newTestClusterWith(t, names, func(_ string, cfg *CoordinatorConfig, _ *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 2 // sloppy, the default
		// No write hedge: a stand-in's hinted copy, handed off to the
		// third replica, would hide what the read does.
		cfg.WriteHedge = time.Minute
	})
	ctx := context.Background()
	k := tc.keyWhere(t, "any", func([]string) bool { return true })
	reps := tc.replicasOf(k)
	a, b, c := reps[0], reps[1], reps[2]
	var reader string
	for _, n := range names {
		if !slices.Contains(reps, n) {
			reader = n
			break
		}
	}

	// The write reaches a and b (W=2) and is acknowledged; c's copy is
	// still in flight.
	tc.net.Slow(c, 5*testTimeout)
	if err := tc.nodes[a].Put(ctx, []byte(k), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	tc.net.Slow(c, 0)
	for _, n := range []string{a, b} {
		if got := tc.local(t, n, k); got != "[v]" {
			t.Fatalf("%s holds %s after the acknowledged write", n, got)
		}
	}
	if got := tc.local(t, c, k); got != "[]" {
		t.Fatalf("%s holds %s: the test needs it to have missed the write", c, got)
	}

	tc.net.Slow(a, 300*time.Millisecond)
	tc.net.Slow(b, 300*time.Millisecond)
	o, err := tc.nodes[reader].Get(ctx, []byte(k))
	if err != nil {
		t.Fatal(err)
	}
	if got := siblings(o); got != "[v]" {
		t.Fatalf("R=2 read via %s (replicas %v, all up, %s and %s slow) = %s: it missed a write acknowledged by W=2", reader, reps, a, b, got)
	}
}

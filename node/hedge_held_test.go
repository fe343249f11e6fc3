package node

import (
	"context"
	"testing"
	"time"

	"github.com/rumor-kv/rumor/store"
	"github.com/rumor-kv/rumor/wire"
)

// hedgeCluster: N=3, W=3, a short timeout, no handoff (hints stay put
// where the write left them, for counting).
func hedgeCluster(t *testing.T, names []string) *testCluster {
	return newTestClusterWith(t, names, func(name string, cfg *CoordinatorConfig, o *store.Options) {
		cfg.Replicas, cfg.R, cfg.W = 3, 2, 3
		cfg.Timeout = 400 * time.Millisecond
		cfg.Handoff.Interval = -1
	})
}

// TestAHeldSlotIsNotHedgedAgain: once a stand-in holds a slow replica's
// copy ("held": it counts if the replica's own copy fails), the slot gets
// no more stand-ins. It did, at every later write hedge: one black-holed
// replica made a single W=3 write put a hinted copy on every spare node
// (here 5 of them) instead of one.
func TestAHeldSlotIsNotHedgedAgain(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"}
	tc := hedgeCluster(t, names)
	k := tc.keyLedBy(t, "n1")
	slow := tc.replicasOf(k)[1]
	var rest []string
	for _, n := range names {
		if n != slow {
			rest = append(rest, n)
		}
	}
	tc.net.Partition([]string{slow}, rest)
	ctx := wire.WithQuorum(context.Background(), wire.Quorum{W: 3})
	if err := tc.nodes["n1"].Put(ctx, []byte(k), []byte("v"), wire.WriteOptions{}); err != nil {
		t.Fatalf("W=3 with one replica black-holed: %v", err)
	}
	// One stand-in's hinted copy, plus the coordinator's own hint once the
	// copy to slow failed: 2. More are hinted copies nobody needed.
	if got := tc.hintsFor(slow); got > 2 {
		t.Errorf("one W=3 write with replica %s black-holed left %d hints for it on %d nodes (want at most 2: one stand-in and the coordinator's): a held slot is re-hedged on every WriteHedge", slow, got, got)
	}
}

// TestAHeldSlotLeavesSparesToFailedOnes: two replicas black-holed, the
// second spare down (not yet known). At the first hedge b gets s1
// (acknowledges: held) and c gets s2 (fails at once). The held slot b must
// not take s3 at the second hedge: c, whose stand-in failed, needs it, and
// the write succeeds once b's and c's own copies time out.
func TestAHeldSlotLeavesSparesToFailedOnes(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4", "n5", "n6"}
	tc := hedgeCluster(t, names)
	k := tc.keyLedBy(t, "n1")
	rt, err := tc.nodes["n1"].route([]byte(k))
	if err != nil {
		t.Fatal(err)
	}
	rank := rt.place.Ranking(rt.part)
	b, c, s2 := rank[1], rank[2], rank[4]
	tc.net.Partition([]string{b, c}, []string{rank[0], rank[3], rank[4], rank[5]})
	tc.net.Down(s2)
	ctx := wire.WithQuorum(context.Background(), wire.Quorum{W: 3})
	start := time.Now()
	err = tc.nodes["n1"].Put(ctx, []byte(k), []byte("v"), wire.WriteOptions{})
	if err != nil {
		t.Errorf("W=3 with %s and %s black-holed, spare %s down, spares %s and %s up: %v (after %v)", b, c, s2, rank[3], rank[5], err, time.Since(start))
	}
}
